"""CryptoTradingEnv: one asset, a target position, next-bar fills with costs.

At decision bar t the agent sees a lookback window of bar features ending at t
and its account state (position and cash as fractions of wealth). Its action in
[-1, 1] is the target position as a fraction of wealth: positive actions scale to
``long_limit``, negative ones to ``short_limit``. The order fills at bar t+1
(its open by default, or its close), buying at the price plus half the spread and
selling at the price minus half the spread, and pays a taker fee on the filled
notional. Wealth is marked at close; the reward is the log change of wealth from
close[t] to close[t+1] after costs, times ``reward_scale``.

An episode runs over one segment of rows (see :mod:`finrl_lab.envs.segmentation`).
It ends with ``truncated=True`` at the segment's last bar or after
``episode_length`` steps, and with ``terminated=True`` when wealth falls to zero
or below.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import pandas as pd
from gymnasium import spaces

from finrl_lab.data.panel import Panel
from finrl_lab.errors import ConfigError, DataError

log = logging.getLogger(__name__)

FEATURES = ("log_return", "log_range", "log_body", "log_volume_change")
FILLS = ("next_open", "next_close")
# Log of the wealth fraction kept when the account is ruined; the reward of the
# terminating step (before ``reward_scale``).
RUIN_LOG_RETURN = float(np.log(1e-4))
# Standardised features are clipped to this many standard deviations; crypto
# returns have heavy tails.
FEATURE_CLIP = 10.0
# Position and cash fractions in the observation are clipped to this magnitude.
ACCOUNT_CLIP = 100.0

_DATE_COLUMNS = ("date", "datetime", "timestamp", "time")
_VOLUME_COLUMNS = ("volume", "volumefrom")


def load_crypto_panel(
    path: str | Path, *, interval: str | None = None, ticker: str | None = None
) -> Panel:
    """Load one asset's OHLCV candles from a CSV (optionally gzip) or feather file.

    Rows may come in any order (the Bitfinex export is newest first, with some
    hours swapped); they are sorted by time. Dates without a zone are taken as UTC.
    ``VolumeFrom`` (volume in the base currency) is read as ``volume``.

    :param path: the file.
    :param interval: bar size such as ``1h``; inferred from the median spacing of
        the timestamps when None.
    :param ticker: asset name; the file's ``Symbol`` column or its stem when None.
    :raises DataError: the file is missing, has no date or close column, or contains
        duplicated timestamps.
    """
    target = Path(path).expanduser()
    if not target.is_file():
        raise DataError(
            f"crypto data file {str(path)!r} does not exist",
            "pass a CSV or feather file of OHLCV candles",
        )
    name = target.name.lower()
    if name.endswith(".feather"):
        frame = pd.read_feather(target)
    elif name.endswith((".csv", ".csv.gz")):
        frame = pd.read_csv(target)
    else:
        raise DataError(
            f"unsupported crypto data file {target.name!r}",
            "use a .csv, .csv.gz or .feather file",
        )
    frame.columns = [str(c).strip().lower() for c in frame.columns]
    date_col = next((c for c in _DATE_COLUMNS if c in frame.columns), None)
    if date_col is None or "close" not in frame.columns:
        raise DataError(
            f"{target} needs a date and a close column (columns: "
            f"{', '.join(frame.columns)})",
            "name them date (or timestamp) and close",
        )
    if ticker is None:
        if "symbol" in frame.columns and frame["symbol"].nunique() == 1:
            ticker = str(frame["symbol"].iloc[0])
        else:
            ticker = target.name.split(".")[0]
    dates = pd.to_datetime(frame[date_col], format="mixed", utc=True)
    frame = frame.assign(date=dates).sort_values("date", kind="stable")
    if frame["date"].duplicated().any():
        dup = frame.loc[frame["date"].duplicated(), "date"].iloc[0]
        raise DataError(
            f"duplicated timestamp {dup.isoformat()} in {target}",
            "keep one candle per timestamp",
        )
    volume_col = next((c for c in _VOLUME_COLUMNS if c in frame.columns), None)
    fields = [f for f in ("open", "high", "low", "close") if f in frame.columns]
    columns = [frame[f].to_numpy(np.float64) for f in fields]
    if volume_col is not None:
        fields.append("volume")
        columns.append(frame[volume_col].to_numpy(np.float64))
    values = np.stack(columns, axis=-1)[:, None, :]
    timestamps = pd.DatetimeIndex(frame["date"]).as_unit("ns")
    if interval is None:
        interval = _infer_interval(timestamps)
    return Panel(
        timestamps,
        (ticker,),
        tuple(fields),
        values,
        np.ones((len(timestamps), 1), dtype=bool),
        interval=interval,
        market="crypto",
        source=str(target),
    )


def _infer_interval(timestamps: pd.DatetimeIndex) -> str:
    if len(timestamps) < 2:
        raise DataError(
            "need at least two candles to infer the bar size",
            "pass a longer file or give the interval, e.g. 1h",
        )
    nanoseconds = np.median(np.diff(timestamps.as_unit("ns").asi8))
    seconds = int(nanoseconds // 1_000_000_000)
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def bar_features(panel: Panel, names: Sequence[str] = FEATURES) -> np.ndarray:
    """Compute per-bar features [T, F] of the panel's first asset, NaN where unknown.

    ``log_return`` = log(close[t] / close[t-1]); ``log_range`` = log(high / low);
    ``log_body`` = log(close / open); ``log_volume_change`` =
    log((volume[t] + 1) / (volume[t-1] + 1)). Every feature at t uses bars <= t.
    """
    close = panel.values[:, 0, panel.fields.index("close")]
    columns = []
    for name in names:
        if name not in FEATURES:
            raise ConfigError(
                f"unknown crypto feature {name!r}", f"use some of {', '.join(FEATURES)}"
            )
        needed = {
            "log_range": ("high", "low"),
            "log_body": ("open",),
            "log_volume_change": ("volume",),
        }.get(name, ())
        missing = [f for f in needed if f not in panel.fields]
        if missing:
            raise ConfigError(
                f"feature {name!r} needs the {', '.join(missing)} field",
                "drop it from env.features or load OHLCV data",
            )
        column = np.full(len(close), np.nan)
        if name == "log_return":
            column[1:] = np.log(close[1:] / close[:-1])
        elif name == "log_range":
            high = panel.values[:, 0, panel.fields.index("high")]
            low = panel.values[:, 0, panel.fields.index("low")]
            column = np.log(high / low)
        elif name == "log_body":
            column = np.log(close / panel.values[:, 0, panel.fields.index("open")])
        else:
            volume = np.log1p(panel.values[:, 0, panel.fields.index("volume")])
            column[1:] = np.diff(volume)
        columns.append(column)
    return np.stack(columns, axis=-1)


def default_features(panel: Panel) -> tuple[str, ...]:
    """Return the features the panel's fields allow, in :data:`FEATURES` order."""
    fields = set(panel.fields)
    names = ["log_return"]
    if {"high", "low"} <= fields:
        names.append("log_range")
    if "open" in fields:
        names.append("log_body")
    if "volume" in fields:
        names.append("log_volume_change")
    return tuple(names)


class CryptoTradingEnv(gym.Env):
    """Gymnasium environment for trading one crypto asset with a target position.

    :param panel: candles of one asset (the first ticker is traded).
    :param segments: ``(start_row, end_row)`` pairs: decisions at rows
        ``start_row .. end_row - 1``, final valuation at ``end_row``. A reset
        draws a segment with probability proportional to its length. Default: one
        segment over the whole panel.
    :param lookback: bars in the observation window, bar t included (default 32).
    :param features: feature names from :data:`FEATURES`; all that the panel's
        fields allow by default.
    :param fit_rows: rows whose feature mean and standard deviation standardise
        the features (a boolean mask [T] or row indices); the segments' rows by
        default. Pass training rows only, so that no later data leaks in.
    :param fee_bps: taker fee on the filled notional, in basis points (default 4).
    :param spread_bps: bid-ask spread, in basis points of the price, used when
        ``spread`` is None (default 2).
    :param spread: per-bar spread as a fraction of the price [T] (from data).
    :param fill: ``next_open`` (default) or ``next_close``: the price at bar t+1
        at which an order decided at t fills. ``next_open`` falls back to the
        close when the panel has no open.
    :param long_limit: largest long position as a fraction of wealth (default 1).
    :param short_limit: largest short position as a fraction of wealth (default
        1; 0 for long-only).
    :param initial_value: wealth at reset, in quote currency.
    :param reward_scale: factor applied to the per-bar log return.
    :param episode_length: steps per episode, starting at a random row of the
        drawn segment; None runs from the segment's start to its end.
    """

    metadata = {"render_modes": []}

    def __init__(
        self,
        panel: Panel,
        *,
        segments: Sequence[tuple[int, int]] | None = None,
        lookback: int = 32,
        features: Sequence[str] | None = None,
        fit_rows: np.ndarray | None = None,
        fee_bps: float = 4.0,
        spread_bps: float = 2.0,
        spread: np.ndarray | None = None,
        fill: str = "next_open",
        long_limit: float = 1.0,
        short_limit: float = 1.0,
        initial_value: float = 1.0,
        reward_scale: float = 1.0,
        episode_length: int | None = None,
    ) -> None:
        if lookback < 1:
            raise ConfigError(f"invalid lookback {lookback}", "use 1 or more bars")
        if fill not in FILLS:
            raise ConfigError(f"unknown fill {fill!r}", f"use one of {FILLS}")
        if long_limit < 0 or short_limit < 0 or long_limit + short_limit == 0:
            raise ConfigError(
                f"invalid position limits long={long_limit}, short={short_limit}",
                "use non-negative limits, at least one above 0",
            )
        if fee_bps < 0 or spread_bps < 0:
            raise ConfigError(
                f"invalid costs fee_bps={fee_bps}, spread_bps={spread_bps}",
                "use non-negative basis points",
            )
        if initial_value <= 0:
            raise ConfigError(f"invalid initial_value {initial_value}", "use > 0")
        self.panel = panel
        self.lookback = int(lookback)
        self.feature_names = tuple(features or default_features(panel))
        self.fee_rate = fee_bps * 1e-4
        self.long_limit = float(long_limit)
        self.short_limit = float(short_limit)
        self.initial_value = float(initial_value)
        self.reward_scale = float(reward_scale)
        self.episode_length = episode_length
        self.fill = fill

        rows = len(panel.timestamps)
        self.close_price = panel.values[:, 0, panel.fields.index("close")].copy()
        if fill == "next_open" and "open" in panel.fields:
            self.fill_price = panel.values[:, 0, panel.fields.index("open")].copy()
        else:
            self.fill_price = self.close_price
        if spread is None:
            self.spread = np.full(rows, spread_bps * 1e-4)
        else:
            self.spread = np.asarray(spread, dtype=np.float64)
            if self.spread.shape != (rows,) or np.any(~(self.spread >= 0)):
                raise ConfigError(
                    f"spread must be {rows} non-negative fractions, one per bar",
                    "pass one spread per row of the panel",
                )
        self.segments = self._check_segments(segments, rows)

        raw = bar_features(panel, self.feature_names)
        if fit_rows is None:
            mask = np.zeros(rows, dtype=bool)
            for start, end in self.segments:
                mask[start - self.lookback + 1 : end + 1] = True
            fit_rows = mask
        fitted = raw[fit_rows]
        self.feature_mean = np.nanmean(fitted, axis=0)
        std = np.nanstd(fitted, axis=0)
        self.feature_std = np.where(std > 0, std, 1.0)
        scaled = (raw - self.feature_mean) / self.feature_std
        scaled = np.clip(np.nan_to_num(scaled, nan=0.0), -FEATURE_CLIP, FEATURE_CLIP)
        self.features = scaled.astype(np.float32)

        n_features = len(self.feature_names)
        self.observation_space = spaces.Dict(
            {
                "features": spaces.Box(
                    -FEATURE_CLIP, FEATURE_CLIP, (self.lookback, n_features), np.float32
                ),
                "account": spaces.Box(-ACCOUNT_CLIP, ACCOUNT_CLIP, (2,), np.float32),
            }
        )
        self.action_space = spaces.Box(-1.0, 1.0, (1,), np.float32)

        self._segment = 0
        self._row = self.segments[0][0]
        self._end = self.segments[0][1]
        self._cash = self.initial_value
        self._units = 0.0
        self._value = self.initial_value

    def _check_segments(
        self, segments: Sequence[tuple[int, int]] | None, rows: int
    ) -> list[tuple[int, int]]:
        first = self.lookback  # the first log return needs one bar before it
        if segments is None:
            segments = [(first, rows - 1)]
        checked = []
        for start, end in segments:
            start = max(int(start), first)
            end = int(end)
            if end > rows - 1:
                raise ConfigError(
                    f"segment ends at row {end} but the data has {rows} rows",
                    "end segments at the last row or earlier",
                )
            if end > start:
                checked.append((start, end))
        if not checked:
            raise ConfigError(
                f"no segment has a decision row after the {first}-bar lookback",
                "use longer segments or a shorter lookback",
            )
        return checked

    # -- state ----------------------------------------------------------------

    @property
    def row(self) -> int:
        """The current decision row."""
        return self._row

    @property
    def value(self) -> float:
        """Current wealth marked at the close of the current row."""
        return self._value

    def position_fraction(self) -> float:
        """Current position value as a signed fraction of wealth."""
        return self._units * self.close_price[self._row] / self._value

    def target_position(self, action: np.ndarray) -> float:
        """Map an action in [-1, 1] to a target position fraction of wealth.

        A non-finite action is read as its nearest bound (NaN as 0, flat).
        """
        raw = np.asarray(action, dtype=np.float64).reshape(-1)[0]
        a = float(np.clip(np.nan_to_num(raw, nan=0.0, posinf=1.0, neginf=-1.0), -1, 1))
        return a * (self.long_limit if a >= 0 else self.short_limit)

    def _observation(self) -> dict[str, np.ndarray]:
        t = self._row
        position = self._units * self.close_price[t] / self._value
        return {
            "features": self.features[t - self.lookback + 1 : t + 1].copy(),
            "account": np.clip(
                np.array([position, self._cash / self._value], np.float32),
                -ACCOUNT_CLIP,
                ACCOUNT_CLIP,
            ),
        }

    def _info(self, **extra: Any) -> dict[str, Any]:
        return {
            "value": self._value,
            "position": self._units * self.close_price[self._row] / self._value,
            "row": self._row,
            "segment": self._segment,
            **extra,
        }

    # -- gymnasium API --------------------------------------------------------

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        """Start an episode flat (all cash) in a drawn or given segment.

        ``options``: ``segment`` (index into ``segments``) and ``start_row``
        (a row inside that segment) fix where the episode starts.
        """
        super().reset(seed=seed)
        options = options or {}
        if "segment" in options:
            index = int(options["segment"])
        else:
            lengths = np.array([end - start for start, end in self.segments], float)
            index = int(self.np_random.choice(len(lengths), p=lengths / lengths.sum()))
        start, end = self.segments[index]
        if "start_row" in options:
            row = int(options["start_row"])
            if not start <= row < end:
                raise ConfigError(
                    f"start_row {row} is outside segment {index} [{start}, {end})",
                    "pick a row inside the segment",
                )
        elif self.episode_length is not None:
            last_start = max(start, end - self.episode_length)
            row = int(self.np_random.integers(start, last_start + 1))
        else:
            row = start
        if self.episode_length is not None:
            end = min(end, row + self.episode_length)
        self._segment, self._row, self._end = index, row, end
        self._cash, self._units, self._value = (
            self.initial_value,
            0.0,
            self.initial_value,
        )
        return self._observation(), self._info()

    def step(
        self, action: np.ndarray
    ) -> tuple[dict[str, np.ndarray], float, bool, bool, dict[str, Any]]:
        """Fill the target position at bar t+1 and mark wealth at close[t+1]."""
        target = self.target_position(action)
        t = self._row
        price = self.fill_price[t + 1]
        wealth_at_fill = self._cash + self._units * price
        target_units = target * wealth_at_fill / price if wealth_at_fill > 0 else 0.0
        traded = target_units - self._units
        half_spread = 0.5 * self.spread[t + 1]
        fill = price * (1.0 + half_spread * np.sign(traded))
        fee = self.fee_rate * abs(traded) * fill
        cost = abs(traded) * price * half_spread + fee
        self._cash -= traded * fill + fee
        self._units = target_units
        self._row = t + 1
        previous = self._value
        self._value = self._cash + self._units * self.close_price[t + 1]

        terminated = self._value <= 0.0
        if terminated:
            log_return = RUIN_LOG_RETURN
        else:
            log_return = float(np.log(self._value / previous))
        truncated = not terminated and self._row >= self._end
        turnover = abs(traded) * price / wealth_at_fill if wealth_at_fill > 0 else 0.0
        info = self._info(
            target_position=target, turnover=turnover, cost=cost, log_return=log_return
        )
        if terminated:
            # Keep the observation finite: report the account as flat.
            self._value, self._cash, self._units = 1e-12, 1e-12, 0.0
        return (
            self._observation(),
            log_return * self.reward_scale,
            bool(terminated),
            bool(truncated),
            info,
        )


def make_crypto_env(
    panel: Panel | None = None,
    data: str | Path | None = None,
    interval: str | None = None,
    **kwargs: Any,
) -> CryptoTradingEnv:
    """Build a :class:`CryptoTradingEnv` from a panel or a candle file.

    This is the entry point of ``gym.make("finrl_lab/CryptoTrading-v0", ...)``.
    """
    if panel is None:
        if data is None:
            raise ConfigError(
                "CryptoTrading-v0 needs market data",
                "pass panel=<Panel> or data=<path to a candle file>",
            )
        panel = load_crypto_panel(data, interval=interval)
    return CryptoTradingEnv(panel, **kwargs)
