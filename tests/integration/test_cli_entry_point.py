"""The installed command (``run``): the app's exit status, output delivered, exit handlers run."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from fleetplane.cli.main import _exit_status

ROOT = Path(__file__).parents[2]
RUN = "from fleetplane.cli.main import run; run()"


def _run(*args: str, prelude: str = "") -> subprocess.CompletedProcess[str]:
    # Buffered streams, as a user's shell usually has them.
    env = {k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"}
    return subprocess.run(
        [sys.executable, "-c", f"{prelude}{RUN}", *args],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        env=env,
    )


def test_the_console_script_is_run() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert project["project"]["scripts"]["fleetplane"] == "fleetplane.cli.main:run"


@pytest.mark.parametrize(("code", "status"), [(None, 0), (0, 0), (2, 2), (1, 1)])
def test_exit_status_is_what_sys_exit_gives(code: int | None, status: int) -> None:
    assert _exit_status(code) == status


def test_a_message_exit_prints_it_and_gives_1(capsys: pytest.CaptureFixture[str]) -> None:
    assert _exit_status("stopped: no fleet") == 1
    assert capsys.readouterr().err == "stopped: no fleet\n"


def test_statuses_of_a_real_process() -> None:
    assert _run("--version").returncode == 0
    missing = _run("plan", "/nonexistent/fleet")
    assert missing.returncode == 1
    assert missing.stdout == ""
    assert "no such file or directory" in missing.stderr
    assert _run().returncode == 2  # no command: click's usage error


def test_a_large_document_on_stdout_is_delivered_whole(tmp_path: Path) -> None:
    fleet = tmp_path / "fleet"
    made = _run("generate", "--sites", "60", "--workloads", "400", "--out", str(fleet))
    assert made.returncode == 0, made.stderr
    planned = _run("plan", str(fleet), "-o", "json", "--out", str(tmp_path / "plan.yaml"))
    assert planned.returncode in (0, 2), planned.stderr
    document = json.loads(planned.stdout)  # cut short, it would not parse
    assert len(document["spec"]["workloads"]) + len(document["spec"]["unplaceable"]) == 400
    assert (tmp_path / "plan.yaml").read_text().startswith("apiVersion: fleetplane/v1\n")


def test_output_still_buffered_at_the_end_is_delivered() -> None:
    # Written, not flushed (stdout to a pipe is block-buffered); the command itself prints
    # only on stderr, so nothing else flushes stdout before the process ends.
    prelude = "import sys; sys.stdout.write('buffered line\\n'); "
    done = _run("plan", "/nonexistent/fleet", prelude=prelude)
    assert done.returncode == 1
    assert done.stdout == "buffered line\n"


def test_exit_handlers_still_run(tmp_path: Path) -> None:
    marker = tmp_path / "handled"
    prelude = f"import atexit, pathlib; atexit.register(pathlib.Path({str(marker)!r}).touch); "
    assert _run("--version", prelude=prelude).returncode == 0
    assert marker.exists()


def test_a_thread_still_at_work_is_waited_for(tmp_path: Path) -> None:
    # It finishes only once the main thread has, as at any Python exit: a process ended
    # without waiting for it would never write the file.
    marker = tmp_path / "finished"
    prelude = (
        "import pathlib, threading; "
        "threading.Thread(target=lambda: (threading.main_thread().join(), "
        f"pathlib.Path({str(marker)!r}).touch())).start(); "
    )
    done = _run("plan", "/nonexistent/fleet", prelude=prelude)
    assert done.returncode == 1
    assert marker.exists()
