"""Planning does not import the libraries only other paths need.

Each costs a CLI run a noticeable part of a second before any work starts:
``scipy.signal`` alone took 0.6-0.8 s to import (scipy 1.17 rewrites every
function's docstring on import), and ``fleetplane plan`` needed it for nothing.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

EXAMPLES = Path(__file__).resolve().parents[3] / "examples"
# Reference latency grid (latency/endtoend.py's EndToEnd), simulator statistics.
NOT_FOR_PLANNING = ("scipy.signal", "scipy.stats")


def test_planning_an_example_leaves_the_heavy_scipy_modules_unimported() -> None:
    code = (
        "import sys\n"
        "from fleetplane.model.loader import load_fleet\n"
        "from fleetplane.placement import plan\n"
        f"result = plan(load_fleet({str(EXAMPLES / 'retail-edge')!r}))\n"
        "assert result.complete\n"
        "print('\\n'.join(sys.modules))\n"
    )
    loaded = subprocess.run(
        [sys.executable, "-c", code], check=True, capture_output=True, text=True
    ).stdout.split()
    heavy = sorted(
        m for m in loaded if any(m == h or m.startswith(h + ".") for h in NOT_FOR_PLANNING)
    )
    assert heavy == []
