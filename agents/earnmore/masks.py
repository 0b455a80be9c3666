"""Random customizable pools for training: masks with a truncated-normal ratio.

EarnMore draws the fraction r of stocks to hide from a normal with mean 0.7 and
standard deviation 0.1 truncated to [0.6, 0.8], and keeps a uniformly random
subset of ``int(n * (1 - r))`` of the n available stocks. Each sample gets its
own ratio and subset here (EarnMore's code drew one ratio per call).
"""

from __future__ import annotations

import numpy as np
from scipy.stats import truncnorm


def sample_mask_ratios(
    rng: np.random.Generator,
    size: int,
    mean: float = 0.7,
    std: float = 0.1,
    low: float = 0.6,
    high: float = 0.8,
) -> np.ndarray:
    """Draw ``size`` masked fractions from a normal truncated to [low, high]."""
    if std <= 0 or low == high:
        return np.full(size, np.clip(mean, low, high))
    a, b = (low - mean) / std, (high - mean) / std
    return truncnorm.rvs(a, b, loc=mean, scale=std, size=size, random_state=rng)


def sample_visible(
    rng: np.random.Generator, available: np.ndarray, ratios: np.ndarray
) -> np.ndarray:
    """Return masks [B, N] keeping ``max(1, int(k * (1 - r)))`` of each row's stocks.

    :param available: bool [B, N], stocks with a bar; only these can be kept.
    :param ratios: masked fraction per row, [B].
    """
    scores = rng.random(available.shape)
    scores[~available] = np.inf
    order = np.argsort(scores, axis=1)
    counts = available.sum(axis=1)
    keep = np.maximum(1, (counts * (1.0 - ratios)).astype(int))
    keep = np.minimum(keep, counts)
    ranks = np.empty_like(order)
    np.put_along_axis(ranks, order, np.arange(available.shape[1])[None, :], axis=1)
    return ranks < keep[:, None]
