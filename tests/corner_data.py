"""Generated images whose class only a square in the top-left corner decides: red or blue, on random noise, with a
green square of no class somewhere in another quadrant. Used by the explanation and calibration tests."""
from __future__ import annotations

import functools

import numpy as np

from logoapp.data import Dataset, split_indices

SIZE = 64            # the cnn's last block is then a 4x4 grid: the top-left quadrant is 2x2 of its cells
VOCAB = ["blue", "red"]
COLOURS = np.array([[40, 40, 230], [230, 40, 40]])
GREEN = (40, 200, 40)


def corner_images(n: int, seed: int, size: int = SIZE) -> tuple[np.ndarray, np.ndarray]:
    """(n, size, size, 3) uint8 images and their labels (alternating)."""
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 256, (n, size, size, 3), dtype=np.uint8)
    y = np.arange(n) % 2
    p, half = size // 4, size // 2
    for i in range(n):
        r, c = rng.integers(0, 3, 2)
        x[i, r:r + p, c:c + p] = np.clip(COLOURS[y[i]] + rng.integers(-20, 21, 3), 0, 255)
        q = rng.integers(1, 4)  # the distractor's quadrant: any but the top-left
        r = (q // 2) * half + rng.integers(2, half - p - 1)
        c = (q % 2) * half + rng.integers(2, half - p - 1)
        x[i, r:r + p, c:c + p] = GREEN
    return x, y


def corner_dataset(n: int = 160, seed: int = 0, flip: float = 0.0) -> Dataset:
    """A Dataset of n corner images, a quarter of them for validation; flip: share of labels made wrong at random."""
    x, y = corner_images(n, seed)
    flipped = np.random.default_rng(seed + 1).random(n) < flip
    y = np.where(flipped, 1 - y, y).astype(np.int64)
    return Dataset("corner", VOCAB, [f"corner/{VOCAB[k]}/{i}.png" for i, k in enumerate(y)], y, x,
                   split_indices(y, 0.25, seed), [(SIZE, SIZE)] * n, ["RGB"] * n)


@functools.lru_cache(maxsize=None)
def trained_cnn():
    """(dataset, model, meta): a small cnn trained once per test session on 160 corner images (a few seconds)."""
    from logoapp.train import TrainConfig, fit
    ds = corner_dataset(160, seed=0)
    done = fit(ds, TrainConfig("cnn", epochs=3, lr=5e-3, bs=16, size=SIZE, aug=False, seed=2))
    return ds, done.net, done.meta
