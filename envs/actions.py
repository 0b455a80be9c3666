"""Action interpretation: from a policy's action vector to portfolio weights.

Every mapping returns weights over ``[cash, asset_1, ..., asset_N]`` that are
non-negative, sum to 1, and are exactly 0 for assets outside the pool or without
a bar. Each can express a 100% position in one asset.
"""

from __future__ import annotations

import numpy as np

ACTION_MODES = ("simplex", "softmax", "weights")


def project_simplex(action: np.ndarray, allowed: np.ndarray) -> np.ndarray:
    """Map scores in [-1, 1] to weights proportional to their positive part.

    Cash (index 0) is always allowed. When no allowed score is positive the
    portfolio is all cash. ``[0, ..., 1, ..., 0]`` gives a 100% position.
    """
    scores = np.where(allowed, np.maximum(action, 0.0), 0.0)
    total = scores.sum(axis=-1, keepdims=True)
    cash_only = np.zeros_like(scores)
    cash_only[..., 0] = 1.0
    with np.errstate(invalid="ignore", divide="ignore"):
        weights = scores / total
    return np.where(total > 0, weights, cash_only)


def masked_softmax(
    action: np.ndarray, allowed: np.ndarray, temperature: float
) -> np.ndarray:
    """Softmax of ``action / temperature`` over allowed entries.

    With actions in [-1, 1] the largest weight ratio is ``exp(2 / temperature)``,
    so a small temperature (default 0.05: ratio e^40) expresses a concentrated
    portfolio up to float rounding; other weights are below 1e-15 then.
    """
    logits = np.where(allowed, action / temperature, -np.inf)
    logits = logits - logits.max(axis=-1, keepdims=True)
    expo = np.exp(logits)
    return expo / expo.sum(axis=-1, keepdims=True)


def normalise_weights(action: np.ndarray, allowed: np.ndarray) -> np.ndarray:
    """Treat the action as weights: zero disallowed entries, clip negatives, rescale.

    Weight put on a disallowed asset moves to cash, so a target computed for a
    stock that has no bar today is not silently spread over the other stocks.
    """
    weights = np.maximum(np.nan_to_num(action, nan=0.0), 0.0)
    dropped = np.where(allowed, 0.0, weights).sum(axis=-1)
    weights = np.where(allowed, weights, 0.0)
    weights[..., 0] += dropped
    total = weights.sum(axis=-1, keepdims=True)
    cash_only = np.zeros_like(weights)
    cash_only[..., 0] = 1.0
    with np.errstate(invalid="ignore", divide="ignore"):
        scaled = weights / total
    return np.where(total > 0, scaled, cash_only)


def action_to_weights(
    action: np.ndarray, allowed: np.ndarray, mode: str, temperature: float = 0.05
) -> np.ndarray:
    """Map an action of shape [..., N + 1] to weights with the named mode.

    :param allowed: bool [..., N + 1]; index 0 (cash) must be True.
    :param mode: ``simplex`` (positive part, normalised), ``softmax`` (masked
        softmax with ``temperature``) or ``weights`` (the action already is weights).
    """
    if mode == "simplex":
        return project_simplex(action, allowed)
    if mode == "softmax":
        return masked_softmax(action, allowed, temperature)
    if mode == "weights":
        return normalise_weights(action, allowed)
    raise ValueError(f"unknown action mode {mode!r}; use one of {ACTION_MODES}")
