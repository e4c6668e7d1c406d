"""A small numpy MLP (64 → 32 → 10) for scikit-learn's bundled 8×8 digits.

Trained at artifact-build time (``python -m fleetplane.workloads.mlp --out
model.npz``) or, when no artifact is given, at service start: the digits
table ships inside scikit-learn (``sklearn/datasets/data/digits.csv.gz``)
and is read with numpy directly, so nothing is downloaded and scikit-learn
itself is never imported (it would cost ~1 s and ~60 MB per replica).
"""

from __future__ import annotations

import argparse
import importlib.util
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

Array = NDArray[np.float64]


def digits_path() -> Path:
    spec = importlib.util.find_spec("sklearn")
    if spec is None or spec.origin is None:
        raise FileNotFoundError(
            "scikit-learn is not installed, so its bundled digits data is missing "
            "(pip install scikit-learn, or pass --model with a trained model file)"
        )
    return Path(spec.origin).parent / "datasets" / "data" / "digits.csv.gz"


def load_digits() -> tuple[Array, NDArray[np.int64]]:
    table = np.loadtxt(digits_path(), delimiter=",")
    return table[:, :-1] / 16.0, table[:, -1].astype(np.int64)


@dataclass(frozen=True)
class Mlp:
    w1: Array
    b1: Array
    w2: Array
    b2: Array

    def probabilities(self, features: Array) -> Array:
        hidden = np.maximum(features @ self.w1 + self.b1, 0.0)
        logits = hidden @ self.w2 + self.b2
        logits -= logits.max(axis=1, keepdims=True)
        exp = np.exp(logits)
        result: Array = exp / exp.sum(axis=1, keepdims=True)
        return result

    def predict(self, features: Array) -> NDArray[np.int64]:
        result: NDArray[np.int64] = np.argmax(self.probabilities(features), axis=1)
        return result

    def save(self, path: Path) -> None:
        with path.open("wb") as handle:
            np.savez(handle, w1=self.w1, b1=self.b1, w2=self.w2, b2=self.b2)

    @classmethod
    def load(cls, path: Path) -> Mlp:
        with np.load(path) as data:
            return cls(data["w1"], data["b1"], data["w2"], data["b2"])


def train(epochs: int = 15, hidden: int = 32, seed: int = 0) -> tuple[Mlp, float]:
    """Full-batch gradient descent, softmax cross-entropy; the model and held-out accuracy."""
    features, labels = load_digits()
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(labels))
    split = int(len(order) * 0.8)
    train_idx, test_idx = order[:split], order[split:]
    x, y = features[train_idx], labels[train_idx]
    onehot = np.eye(10)[y]
    w1 = rng.normal(0, 0.2, (64, hidden))
    b1 = np.zeros(hidden)
    w2 = rng.normal(0, 0.2, (hidden, 10))
    b2 = np.zeros(10)
    rate = 1.0
    for _ in range(epochs * 10):
        model = Mlp(w1, b1, w2, b2)
        hidden_out = np.maximum(x @ w1 + b1, 0.0)
        grad_logits = (model.probabilities(x) - onehot) / len(y)
        grad_w2 = hidden_out.T @ grad_logits
        grad_hidden = (grad_logits @ w2.T) * (hidden_out > 0)
        w2 = w2 - rate * grad_w2
        b2 = b2 - rate * grad_logits.sum(axis=0)
        w1 = w1 - rate * (x.T @ grad_hidden)
        b1 = b1 - rate * grad_hidden.sum(axis=0)
    model = Mlp(w1, b1, w2, b2)
    accuracy = float((model.predict(features[test_idx]) == labels[test_idx]).mean())
    return model, accuracy


def main() -> None:
    parser = argparse.ArgumentParser(description="train the digits MLP into a model artifact")
    parser.add_argument("--out", type=Path, required=True)
    arguments = parser.parse_args()
    model, accuracy = train()
    model.save(arguments.out)
    print(f"wrote {arguments.out} (held-out accuracy {accuracy:.3f})")


if __name__ == "__main__":
    main()
