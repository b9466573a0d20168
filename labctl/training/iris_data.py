"""Fisher's Iris data, shipped with labctl, and seeded stratified k-fold splits."""

from __future__ import annotations

from importlib import resources

import numpy as np

CLASSES = ("setosa", "versicolor", "virginica")
FEATURES = ("sepal length (cm)", "sepal width (cm)", "petal length (cm)", "petal width (cm)")


def load_iris() -> tuple[np.ndarray, np.ndarray]:
    """Features (150, 4) in cm and labels (150,) in 0..2, from labctl/data/iris.csv."""
    text = resources.files("labctl").joinpath("data/iris.csv").read_text()
    rows = [line.split(",") for line in text.splitlines()[2:] if line.strip()]
    x = np.array([[float(v) for v in r[:4]] for r in rows])
    y = np.array([int(r[4]) for r in rows])
    if x.shape != (150, 4) or sorted(set(y.tolist())) != [0, 1, 2]:
        raise ValueError(
            f"labctl/data/iris.csv is damaged: got {x.shape} features, "
            f"labels {sorted(set(y.tolist()))}"
        )
    return x, y


def stratified_folds(y: np.ndarray, k: int, seed: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """k (train, validation) index splits, each class spread evenly over the folds."""
    if not 2 <= k <= len(y):
        raise ValueError(f"folds must be between 2 and the {len(y)} samples, got {k}")
    smallest = int(np.bincount(y).min())
    if k > smallest:
        raise ValueError(f"{k} folds is more than the {smallest} samples of the smallest class")
    rng = np.random.default_rng(seed)
    fold_of = np.empty(len(y), dtype=int)
    for c in np.unique(y):
        idx = rng.permutation(np.flatnonzero(y == c))
        fold_of[idx] = np.arange(len(idx)) % k
    return [(np.flatnonzero(fold_of != f), np.flatnonzero(fold_of == f)) for f in range(k)]


def standardise(train: np.ndarray, *others: np.ndarray) -> list[np.ndarray]:
    """Scale every array by the training set's mean and standard deviation."""
    mean, std = train.mean(axis=0), train.std(axis=0)
    return [(a - mean) / std for a in (train, *others)]
