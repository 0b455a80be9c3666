"""Per-asset features computed from a :class:`Panel`, strictly causal.

Two feature sets are built in:

- ``alpha158``: the 102 per-stock features EarnMore derives from Qlib's Alpha158
  (raw open, high, low and close; five candle shapes; 18 rolling groups over
  windows of 5, 10, 20, 30 and 60 bars; weekday, day of month and month). It
  needs open, high, low and close. Volume is not used, as in EarnMore.
- ``close``: the subset computable from close prices alone (79 features).

Every feature of an asset at bar t uses that asset's bars up to and including t.
Rolling windows count the asset's own available bars, so a ticker listed late or
missing a day starts its windows from its first bar and skips the gap instead of
turning NaN for a whole window. The computation is vectorised over the whole
panel: each rolling statistic is one pandas or numpy call on a [T, N] array.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from finrl_lab.data.panel import Panel
from finrl_lab.errors import ConfigError, DataError

WINDOWS = (5, 10, 20, 30, 60)
EPSILON = 1e-12
PRICE_LEVELS = ("open", "high", "low", "close")
CANDLE_FEATURES = ("kmid2", "kup2", "klow", "klow2", "ksft2")
CALENDAR_FEATURES = ("weekday", "day", "month")
# Rolling groups in EarnMore's configuration order.
CLOSE_GROUPS = ("roc", "ma", "std", "beta", "max", "min", "qtlu", "qtld", "rank")
HIGH_LOW_GROUPS = ("imax", "imin", "imxd")
RETURN_GROUPS = ("cntp", "cntn", "cntd", "sump", "sumn", "sumd")


def _windowed(groups: Sequence[str]) -> list[str]:
    return [f"{group}_{w}" for group in groups for w in WINDOWS]


FEATURE_SETS: dict[str, tuple[str, ...]] = {
    "alpha158": (
        *PRICE_LEVELS,
        *CANDLE_FEATURES,
        *_windowed(CLOSE_GROUPS + HIGH_LOW_GROUPS + RETURN_GROUPS),
        *CALENDAR_FEATURES,
    ),
    "close": (
        "close",
        *_windowed(CLOSE_GROUPS + RETURN_GROUPS),
        *CALENDAR_FEATURES,
    ),
}
REQUIRED_FIELDS = {
    "alpha158": ("open", "high", "low", "close"),
    "close": ("close",),
}


def feature_names(feature_set: str) -> list[str]:
    """Return the feature names of a set, in the order of the feature axis."""
    return list(_lookup_set(feature_set))


def _lookup_set(feature_set: str) -> tuple[str, ...]:
    if feature_set not in FEATURE_SETS:
        raise ConfigError(
            f"unknown feature set {feature_set!r}",
            f"choose one of: {', '.join(FEATURE_SETS)}",
        )
    return FEATURE_SETS[feature_set]


def compute_features(panel: Panel, feature_set: str) -> tuple[np.ndarray, list[str]]:
    """Compute a feature set for every asset and bar of ``panel``.

    :param panel: the market data; prices as stored (adjusted where the source
        adjusts).
    :param feature_set: ``alpha158`` (needs open, high, low, close) or ``close``.
    :returns: a float64 array of shape [T, N, F] and the F feature names. Values
        are NaN where the asset is unavailable or has too few bars for the window
        (a w-bar window needs w bars of that asset, the return-based sums w + 1).
    :raises DataError: the panel lacks a field the set needs.
    :raises ConfigError: the feature set is unknown.
    """
    names = _lookup_set(feature_set)
    for name in REQUIRED_FIELDS[feature_set]:
        if not panel.has_field(name):
            raise DataError(
                f"feature set {feature_set!r} needs the {name!r} field, which "
                f"{panel.source or 'the dataset'} lacks (it has "
                f"{', '.join(panel.fields)})",
                "use the 'close' feature set or load data with OHLC prices",
            )
    order, counts = _compression(panel.available)
    prices = {
        name: _compress(panel.field(name), order, counts)
        for name in REQUIRED_FIELDS[feature_set]
    }
    columns = _price_features(prices, names)
    packed = np.empty((len(panel), panel.n_assets, len(names)))
    calendar = _calendar(panel.timestamps)
    for i, name in enumerate(names):
        if name not in CALENDAR_FEATURES:
            packed[:, :, i] = columns[name]
    out = _expand(packed, order)
    for i, name in enumerate(names):
        if name in CALENDAR_FEATURES:
            out[:, :, i] = calendar[name][:, None]
    out[~panel.available] = np.nan
    return out, list(names)


# -- compression: each asset's available bars moved to the top of its column ------


def _compression(available: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    # A stable sort on "not available" lists each column's available rows first,
    # in time order, so rolling windows run over the asset's own bars.
    order = np.argsort(~available, axis=0, kind="stable")
    return order, available.sum(axis=0)


def _compress(data: np.ndarray, order: np.ndarray, counts: np.ndarray) -> np.ndarray:
    packed = np.take_along_axis(data, order, axis=0).astype(np.float64, copy=True)
    padding = np.arange(len(data))[:, None] >= counts[None, :]
    packed[padding] = np.nan
    return packed


def _expand(packed: np.ndarray, order: np.ndarray) -> np.ndarray:
    """Return packed [T, N, F] features at their bars' rows (the inverse of
    :func:`_compress`)."""
    out = np.empty_like(packed)
    np.put_along_axis(out, order[:, :, None], packed, axis=0)
    return out


# -- the features -----------------------------------------------------------------


def _price_features(
    prices: dict[str, np.ndarray], names: Sequence[str]
) -> dict[str, np.ndarray]:
    requested = set(names)
    close = prices["close"]
    frame = pd.DataFrame(close)
    out: dict[str, np.ndarray] = {}
    if "open" in requested:
        out["open"] = prices["open"]
        out["high"] = prices["high"]
        out["low"] = prices["low"]
    out["close"] = close
    if "kmid2" in requested:
        out.update(_candles(prices))

    for w in WINDOWS:
        rolling = frame.rolling(w, min_periods=w)
        lagged = frame.shift(w).to_numpy()
        out[f"roc_{w}"] = lagged / close
        out[f"ma_{w}"] = rolling.mean().to_numpy() / close
        out[f"std_{w}"] = rolling.std().to_numpy() / close
        out[f"beta_{w}"] = (lagged - close) / (w * close)
        out[f"max_{w}"] = rolling.max().to_numpy() / close
        out[f"min_{w}"] = rolling.min().to_numpy() / close
        out[f"qtlu_{w}"] = rolling.quantile(0.8).to_numpy() / close
        out[f"qtld_{w}"] = rolling.quantile(0.2).to_numpy() / close
        # Percentile rank of the latest close within the window (ties averaged),
        # divided by w as EarnMore does.
        out[f"rank_{w}"] = rolling.rank(pct=True).to_numpy() / w
        if "imax_5" in requested:
            imax = _rolling_argext(prices["high"], w, np.argmax)
            imin = _rolling_argext(prices["low"], w, np.argmin)
            out[f"imax_{w}"] = imax / w
            out[f"imin_{w}"] = imin / w
            out[f"imxd_{w}"] = (imax - imin) / w

    out.update(_return_counts(close))
    return out


def _candles(prices: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    o, h, low, c = (prices[name] for name in PRICE_LEVELS)
    span = h - low + EPSILON
    top = np.fmax(o, c)
    bottom = np.fmin(o, c)
    # fmax/fmin would hide a missing open; keep NaN where either price is NaN.
    top[np.isnan(o) | np.isnan(c)] = np.nan
    bottom[np.isnan(o) | np.isnan(c)] = np.nan
    return {
        "kmid2": (c - o) / span,
        "kup2": (h - top) / span,
        "klow": (bottom - low) / o,
        "klow2": (bottom - low) / span,
        "ksft2": (2 * c - h - low) / span,
    }


def _rolling_argext(data: np.ndarray, w: int, arg_func: Any) -> np.ndarray:
    """Return the 0-based position of the max (or min) in each trailing w-bar window.

    The first occurrence wins a tie, as with :func:`numpy.argmax`. NaN where the
    window is incomplete or contains a NaN. ``arg_func`` is ``np.argmax`` or
    ``np.argmin``.
    """
    out = np.full(data.shape, np.nan)
    if len(data) < w:
        return out
    finite = np.isfinite(data)
    # Maximise the values, or their negatives for the minimum; NaN never wins.
    values = np.where(finite, data if arg_func is np.argmax else -data, -np.inf)
    best = _window_argmax(values, w)
    positions = (best - np.arange(w - 1, len(data))[:, None]).astype(np.float64)
    positions += w - 1
    complete = _rolling_count(finite, w)[w - 1 :] == w
    positions[~complete] = np.nan
    out[w - 1 :] = positions
    return out


def _window_argmax(values: np.ndarray, w: int) -> np.ndarray:
    """Return the row of the first maximum of every window of w rows, [T - w + 1, N].

    A sparse table: level k stores, for each row i, the first maximum of rows
    i .. i + 2**k - 1. A window is covered by two blocks of the largest power of
    two that fits, and the left block wins ties so that the first maximum wins.
    """
    t = len(values)
    columns = np.arange(values.shape[1])[None, :]
    best = np.broadcast_to(np.arange(t)[:, None], values.shape).copy()
    size = 1
    while size * 2 <= w:
        left, right = best[: len(best) - size], best[size:]
        take_left = values[left, columns] >= values[right, columns]
        best = np.where(take_left, left, right)
        size *= 2
    starts = np.arange(t - w + 1)
    left = best[starts]
    right = best[starts + w - size]
    take_left = values[left, columns] >= values[right, columns]
    return np.where(take_left, left, right)


def _rolling_count(flags: np.ndarray, w: int) -> np.ndarray:
    csum = np.cumsum(flags, axis=0, dtype=np.int64)
    counts = csum.copy()
    counts[w:] = csum[w:] - csum[:-w]
    return counts


def _return_counts(close: np.ndarray) -> dict[str, np.ndarray]:
    previous = np.empty_like(close)
    previous[0] = np.nan
    previous[1:] = close[:-1]
    ret = close / previous - 1.0
    priced = np.isfinite(close)
    # The first bar has no return; EarnMore counts it as neither up nor down.
    up = np.where(priced, (ret > 0).astype(np.float64), np.nan)
    down = np.where(priced, (ret < 0).astype(np.float64), np.nan)
    gains = pd.DataFrame(np.where(ret < 0, 0.0, ret))
    moves = pd.DataFrame(np.abs(ret))
    out: dict[str, np.ndarray] = {}
    for w in WINDOWS:
        cntp = _rolling_flag_sum(up, w) / w
        cntn = _rolling_flag_sum(down, w) / w
        out[f"cntp_{w}"] = cntp
        out[f"cntn_{w}"] = cntn
        out[f"cntd_{w}"] = cntp - cntn
        gain_sum = gains.rolling(w, min_periods=w).sum().to_numpy()
        move_sum = moves.rolling(w, min_periods=w).sum().to_numpy()
        sump = gain_sum / (move_sum + EPSILON)
        out[f"sump_{w}"] = sump
        out[f"sumn_{w}"] = 1.0 - sump
        out[f"sumd_{w}"] = 2.0 * sump - 1.0
    return out


def _rolling_flag_sum(flags: np.ndarray, w: int) -> np.ndarray:
    """Return trailing w-row sums of 0/1 values (exact), NaN if a NaN is inside."""
    finite = np.isfinite(flags)
    sums = _rolling_count(np.where(finite, flags, 0.0) > 0, w).astype(np.float64)
    complete = _rolling_count(finite, w) == w
    complete[: w - 1] = False
    return np.where(complete, sums, np.nan)


def _calendar(timestamps: pd.DatetimeIndex) -> dict[str, np.ndarray]:
    # Calendar of the bar's UTC timestamp: Monday is 0, day and month start at 1.
    return {
        "weekday": timestamps.weekday.to_numpy(dtype=np.float64),
        "day": timestamps.day.to_numpy(dtype=np.float64),
        "month": timestamps.month.to_numpy(dtype=np.float64),
    }


# -- normalisation ----------------------------------------------------------------


@dataclass
class Normalizer:
    """Z-score scaling with statistics fitted on an explicit window of rows.

    Statistics are NaN-aware means and population standard deviations (ddof 0)
    over the fitted rows. With ``per_asset`` (the default, as EarnMore scales each
    stock on its own) they have shape [N, F]. An asset with no finite value of a
    feature in the fitted rows gets the pooled statistics of all assets over the
    same rows. Without ``per_asset`` the statistics are pooled, with shape
    [1, F]. A zero or undefined standard deviation is replaced by 1. Columns in
    ``raw_columns`` are passed through unchanged (calendar integers in EarnMore).

    :param per_asset: fit one mean and deviation per asset and feature.
    :param raw_columns: feature indexes left unscaled.
    """

    per_asset: bool = True
    raw_columns: tuple[int, ...] = ()
    mean: np.ndarray | None = field(default=None, repr=False)
    std: np.ndarray | None = field(default=None, repr=False)
    fitted_rows: tuple[int, int] | None = None

    @classmethod
    def for_features(
        cls, names: Sequence[str], *, per_asset: bool = True
    ) -> Normalizer:
        """Return a normaliser that leaves the calendar features of ``names`` raw."""
        raw = tuple(i for i, name in enumerate(names) if name in CALENDAR_FEATURES)
        return cls(per_asset=per_asset, raw_columns=raw)

    def fit(self, features: np.ndarray, rows: slice) -> Normalizer:
        """Fit on ``features[rows]`` only; ``features`` has shape [T, N, F].

        :raises ConfigError: the rows select no bar or ``features`` is not 3-D.
        """
        if features.ndim != 3:
            raise ConfigError(
                f"features must have shape [T, N, F], got {features.shape}",
                "pass the array compute_features returns",
            )
        start, stop, step = rows.indices(len(features))
        if step != 1 or stop <= start:
            raise ConfigError(
                f"invalid fit rows {rows} for {len(features)} bars",
                "pass a non-empty slice with step 1, such as the training rows",
            )
        window = np.asarray(features[start:stop], dtype=np.float64)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", category=RuntimeWarning)
            pooled_mean = np.nanmean(window, axis=(0, 1))[None, :]
            pooled_std = np.nanstd(window, axis=(0, 1))[None, :]
            if self.per_asset:
                mean = np.nanmean(window, axis=0)
                std = np.nanstd(window, axis=0)
                missing = ~np.isfinite(mean)
                mean = np.where(missing, pooled_mean, mean)
                std = np.where(missing, pooled_std, std)
            else:
                mean, std = pooled_mean, pooled_std
        mean = np.where(np.isfinite(mean), mean, 0.0)
        std = np.where(np.isfinite(std) & (std > 0), std, 1.0)
        raw = list(self.raw_columns)
        mean[:, raw] = 0.0
        std[:, raw] = 1.0
        self.mean, self.std = mean, std
        self.fitted_rows = (start, stop)
        return self

    def transform(self, features: np.ndarray) -> np.ndarray:
        """Return ``(features - mean) / std``; NaN stays NaN.

        :raises ConfigError: the normaliser is not fitted or the shapes differ.
        """
        if self.mean is None or self.std is None:
            raise ConfigError(
                "the normaliser is not fitted", "call fit() on the training rows first"
            )
        if (
            features.ndim != 3
            or features.shape[2] != self.mean.shape[1]
            or (self.mean.shape[0] != 1 and features.shape[1] != self.mean.shape[0])
        ):
            raise ConfigError(
                f"features of shape {features.shape} do not match the fitted "
                f"statistics of shape {self.mean.shape}",
                "transform the same assets and feature set that were fitted",
            )
        return (features - self.mean[None]) / self.std[None]

    def state_dict(self) -> dict[str, Any]:
        """Return the settings and statistics as plain lists, for a checkpoint."""
        return {
            "per_asset": self.per_asset,
            "raw_columns": list(self.raw_columns),
            "mean": None if self.mean is None else self.mean.tolist(),
            "std": None if self.std is None else self.std.tolist(),
            "fitted_rows": None if self.fitted_rows is None else list(self.fitted_rows),
        }

    @classmethod
    def from_state_dict(cls, state: dict[str, Any]) -> Normalizer:
        """Rebuild a normaliser saved with :meth:`state_dict`."""
        rows = state.get("fitted_rows")
        return cls(
            per_asset=bool(state["per_asset"]),
            raw_columns=tuple(int(i) for i in state["raw_columns"]),
            mean=None if state["mean"] is None else np.asarray(state["mean"], float),
            std=None if state["std"] is None else np.asarray(state["std"], float),
            fitted_rows=None if rows is None else (int(rows[0]), int(rows[1])),
        )
