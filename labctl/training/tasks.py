"""Classification tasks for the in-the-loop trainer: Iris and three seeded 2-D problems.

The 2-D tasks are nonlinear by construction: no linear classifier does better than
chance on them (each class surrounds, interleaves with or sits diagonally across the
other), while a single hidden layer of 8-16 MTJ neurons can learn them. Every task has two
balanced classes of :data:`TASK_SAMPLES` points; features are dimensionless (the trainer
standardises them per fold). Each is drawn from its own generator seeded with (task,
seed), so a seed gives the same data on every machine.

- ``rings``: two concentric rings, radii 0.5 (class 0) and 1.0 (class 1), angle uniform,
  radial Gaussian noise of rms :data:`RINGS_NOISE`.
- ``spirals``: two interleaved Archimedean spirals of :data:`SPIRAL_TURNS` turns (class 1
  is class 0 turned by 180 degrees), radius from 0.15 to 1, Gaussian noise of rms
  :data:`SPIRAL_NOISE` on each coordinate.
- ``xor``: four Gaussian clusters at (+-1, +-1) of rms :data:`XOR_NOISE` per coordinate;
  class 1 where the signs of x and y differ.
"""

from __future__ import annotations

import zlib

import numpy as np

from labctl.training.iris_data import load_iris

TASKS = ("iris", "rings", "spirals", "xor")
TASK_SAMPLES = 200  # per 2-D task, half in each class
RINGS_NOISE = 0.08
SPIRAL_TURNS = 1.0
SPIRAL_NOISE = 0.04
XOR_NOISE = 0.3


def _rng(task: str, seed: int) -> np.random.Generator:
    return np.random.default_rng([zlib.crc32(task.encode()), int(seed)])


def _labels(n: int) -> np.ndarray:
    return np.repeat(np.arange(2), n // 2)


def rings(seed: int, n: int = TASK_SAMPLES) -> tuple[np.ndarray, np.ndarray]:
    """Two concentric rings: features (n, 2), labels (n,) in 0..1."""
    rng = _rng("rings", seed)
    y = _labels(n)
    radius = np.where(y == 0, 0.5, 1.0) + RINGS_NOISE * rng.standard_normal(n)
    angle = rng.uniform(0.0, 2 * np.pi, n)
    return np.stack([radius * np.cos(angle), radius * np.sin(angle)], axis=1), y


def spirals(seed: int, n: int = TASK_SAMPLES) -> tuple[np.ndarray, np.ndarray]:
    """Two interleaved spirals: features (n, 2), labels (n,) in 0..1."""
    rng = _rng("spirals", seed)
    y = _labels(n)
    t = rng.uniform(0.0, 1.0, n)
    radius = 0.15 + 0.85 * t
    angle = 2 * np.pi * SPIRAL_TURNS * t + np.pi * y
    x = np.stack([radius * np.cos(angle), radius * np.sin(angle)], axis=1)
    return x + SPIRAL_NOISE * rng.standard_normal(x.shape), y


def xor(seed: int, n: int = TASK_SAMPLES) -> tuple[np.ndarray, np.ndarray]:
    """XOR-like clusters: features (n, 2), labels (n,) in 0..1."""
    rng = _rng("xor", seed)
    y = _labels(n)
    quadrant = rng.integers(0, 2, n)  # which of the class's two clusters
    sx = np.where(quadrant == 0, 1.0, -1.0)
    sy = np.where(y == 0, sx, -sx)  # class 0: same signs, class 1: opposite
    centres = np.stack([sx, sy], axis=1)
    return centres + XOR_NOISE * rng.standard_normal((n, 2)), y


_GENERATORS = {"rings": rings, "spirals": spirals, "xor": xor}


def check_task(task: str) -> str:
    """``task`` if known, else ValueError naming ``--task``."""
    if task not in TASKS:
        raise ValueError(f"--task must be one of {', '.join(TASKS)}, got {task!r}")
    return task


def load_task(task: str, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Features (n, features) and int labels (n,) of ``task``; Iris ignores the seed."""
    check_task(task)
    if task == "iris":
        return load_iris()
    return _GENERATORS[task](seed)


def task_shape(task: str) -> tuple[int, int, int]:
    """(input features, classes, samples of the smallest class) of ``task``."""
    check_task(task)
    if task == "iris":
        return 4, 3, 50
    return 2, 2, TASK_SAMPLES // 2
