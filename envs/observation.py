"""Observation building: per-bar asset features and the lookback window over them.

Built-in per-bar feature sets (strictly causal: the value at bar t uses bars up
to t only; 0 where an asset has no bar):

- ``close``: log return of the close, ``log(close[t] / close[t-1])``;
- ``ohlc``: the log return plus ``log(open/close)``, ``log(high/close)`` and
  ``log(low/close)`` of bar t.

Any other name is passed to :func:`finrl_lab.data.features.compute_features`
(for example ``alpha158``) when that module is installed.
"""

from __future__ import annotations

import numpy as np

from finrl_lab.data.panel import Panel
from finrl_lab.errors import DataError

BUILTIN_FEATURE_SETS = ("close", "ohlc")


def close_log_returns(panel: Panel) -> np.ndarray:
    """Return ``log(close[t] / close[t-1])`` over carried-forward closes, [T, N]."""
    close = panel.filled_close()
    out = np.zeros_like(close)
    with np.errstate(invalid="ignore", divide="ignore"):
        out[1:] = np.log(close[1:] / close[:-1])
    return out


def bar_features(panel: Panel, feature_set: str) -> tuple[np.ndarray, list[str]]:
    """Return per-bar features [T, N, F] as float32, with their names.

    Entries where an asset has no bar or not enough history are 0 so that the
    observation stays finite; the mask in the observation distinguishes them.
    """
    if feature_set == "close":
        values = close_log_returns(panel)[:, :, None]
        names = ["log_return"]
    elif feature_set == "ohlc":
        close = panel.close
        parts = [close_log_returns(panel)]
        for name in ("open", "high", "low"):
            with np.errstate(invalid="ignore", divide="ignore"):
                parts.append(np.log(panel.field(name) / close))
        values = np.stack(parts, axis=-1)
        names = ["log_return", "log_open_close", "log_high_close", "log_low_close"]
    else:
        try:
            from finrl_lab.data.features import compute_features
        except ImportError:
            raise DataError(
                f"unknown feature set {feature_set!r}",
                f"use one of {', '.join(BUILTIN_FEATURE_SETS)}",
            ) from None
        values, names = compute_features(panel, feature_set)
    values = np.where(panel.available[:, :, None], values, 0.0)
    values = np.nan_to_num(values, nan=0.0, posinf=0.0, neginf=0.0)
    return values.astype(np.float32), list(names)


def lookback_windows(features: np.ndarray, lookback: int) -> np.ndarray:
    """Return a read-only view [T - lookback + 1, N, lookback, F] of feature windows.

    Row ``k`` of the view contains bars ``k .. k + lookback - 1``; no data is copied.
    """
    view = np.lib.stride_tricks.sliding_window_view(features, lookback, axis=0)
    return view.transpose(0, 1, 3, 2)
