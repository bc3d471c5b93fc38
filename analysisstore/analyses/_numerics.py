"""Small numerical helpers shared by the analyses."""
from __future__ import annotations

import numpy as np

__all__ = ["moving_average", "first_crossing"]


def moving_average(values: np.ndarray, window: int) -> np.ndarray:
    """Centred moving average; near the ends the window shrinks to the points that exist."""
    if window < 1 or window % 2 == 0:
        raise ValueError(f"smoothing window must be a positive odd integer, got {window}")
    if window == 1:
        return values.astype(float)
    kernel = np.ones(window)
    sums = np.convolve(values, kernel, mode="same")
    counts = np.convolve(np.ones_like(values, dtype=float), kernel, mode="same")
    return sums / counts


def first_crossing(x: np.ndarray, y: np.ndarray, level: float) -> float | None:
    """The first x (in the given order) where y reaches ``level``, interpolated linearly; None if never."""
    above = y >= level
    if above[0]:
        return float(x[0])
    hits = np.nonzero(above)[0]
    if hits.size == 0:
        return None
    i = int(hits[0])
    x0, x1, y0, y1 = x[i - 1], x[i], y[i - 1], y[i]
    return float(x0 + (level - y0) * (x1 - x0) / (y1 - y0))
