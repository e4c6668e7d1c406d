"""The bundled batch job: train and evaluate the digits MLP, write the results, exit.

``python -m fleetplane.workloads.batch [--epochs N] [--hidden H] [--seed S] [--out PATH]``

The counterpart of :mod:`fleetplane.workloads.inference` for the agent's
``slurm`` runtime, which runs it as a Slurm job: it trains the numpy MLP of
:mod:`fleetplane.workloads.mlp` on scikit-learn's bundled digits table for
``N`` epochs (real computation, no downloads), evaluates it on the held-out
fifth and writes a JSON result (accuracy, per-digit accuracy, confusion
matrix, run time, the Slurm job id when there is one) and the model next to
it. Knobs can also come from the environment, which is how a desired state's
``env`` reaches the job: ``FLEETPLANE_EPOCHS``, ``FLEETPLANE_HIDDEN``,
``FLEETPLANE_SEED``, ``FLEETPLANE_OUTPUT`` (default ``result.json`` in the
working directory). Files are written to a temporary name and renamed, so a
reader never sees half a result.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from fleetplane.workloads.mlp import Mlp, load_digits, train


def evaluate(model: Mlp, seed: int) -> dict[str, Any]:
    """Accuracy, per-digit accuracy and confusion matrix on the split ``train`` held out."""
    features, labels = load_digits()
    order = np.random.default_rng(seed).permutation(len(labels))
    held_out = order[int(len(order) * 0.8):]
    predicted = model.predict(features[held_out])
    truth = labels[held_out]
    confusion = np.zeros((10, 10), dtype=np.int64)
    np.add.at(confusion, (truth, predicted), 1)
    per_digit = confusion.diagonal() / np.maximum(confusion.sum(axis=1), 1)
    return {
        "samples": len(held_out),
        "accuracy": float((predicted == truth).mean()),
        "perDigitAccuracy": [round(float(value), 4) for value in per_digit],
        "confusion": confusion.tolist(),
    }


def write_atomically(path: Path, write: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.partial")
    write(partial)
    os.replace(partial, path)


def run(epochs: int, hidden: int, seed: int, out: Path) -> dict[str, Any]:
    started = time.monotonic()
    model, _ = train(epochs=epochs, hidden=hidden, seed=seed)
    result = {
        "epochs": epochs,
        "hidden": hidden,
        "seed": seed,
        **evaluate(model, seed),
        "seconds": round(time.monotonic() - started, 3),
        "slurmJobId": os.environ.get("SLURM_JOB_ID"),
        "host": os.uname().nodename,
    }
    model_path = out.with_suffix(".npz")
    write_atomically(model_path, model.save)
    result["model"] = str(model_path.resolve())
    write_atomically(out, lambda path: path.write_text(json.dumps(result, indent=1) + "\n"))
    return result


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="train and evaluate the digits MLP once")
    parser.add_argument("--epochs", type=int, default=int(os.environ.get("FLEETPLANE_EPOCHS", 15)))
    parser.add_argument("--hidden", type=int, default=int(os.environ.get("FLEETPLANE_HIDDEN", 32)))
    parser.add_argument("--seed", type=int, default=int(os.environ.get("FLEETPLANE_SEED", 0)))
    parser.add_argument("--out", type=Path,
                        default=Path(os.environ.get("FLEETPLANE_OUTPUT", "result.json")))
    arguments = parser.parse_args(argv)
    if arguments.epochs < 1 or arguments.hidden < 1:
        parser.error("--epochs and --hidden must be at least 1")
    result = run(arguments.epochs, arguments.hidden, arguments.seed, arguments.out)
    print(f"trained {result['epochs']} epochs in {result['seconds']} s: held-out accuracy "
          f"{result['accuracy']:.3f}; wrote {arguments.out}", file=sys.stdout, flush=True)


if __name__ == "__main__":
    main()
