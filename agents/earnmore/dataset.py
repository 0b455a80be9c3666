"""Data for EarnMore: the global pool's panel, normalised features and splits.

Features are computed once for the whole panel (they are causal, so a value at
day t reads days up to t only), then scaled with a
:class:`~finrl_lab.data.features.Normalizer` fitted on the training rows only.
NaN (no bar, or too little history for a rolling window) becomes 0 after
scaling; the availability mask distinguishes those stocks.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import numpy as np

from finrl_lab.data.features import (
    FEATURE_SETS,
    WINDOWS,
    Normalizer,
    compute_features,
)
from finrl_lab.data.panel import Panel
from finrl_lab.data.pools import Pool, resolve_pool
from finrl_lab.data.splits import DateSplit, SplitRows
from finrl_lab.envs.observation import BUILTIN_FEATURE_SETS, bar_features
from finrl_lab.errors import ConfigError, PoolError

log = logging.getLogger(__name__)

# Rows skipped at the start of the training window so that the longest rolling
# feature window (60 days) is filled before the first training decision.
WARMUP_ROWS = max(WINDOWS)


# The ``env`` section of an EarnMore config and its defaults.
ENV_DEFAULTS: dict[str, Any] = {
    "cost_rate": 0.001,
    "features": "auto",
    "data_start": None,
    "eval_pools": [],
}


@dataclass(frozen=True)
class DataSpec:
    """Where the data comes from, which pools and windows, and the costs.

    :param source: ``data.source``: ``sp500`` (bundled) or a file or folder.
    :param interval: ``data.interval``, the bar size.
    :param market: ``data.market``, ``equity`` or ``crypto``.
    :param data_start: ``env.data_start``, first date loaded; None for the first
        bar. The training window starts here.
    :param feature_set: ``env.features``: ``alpha158``, ``close`` (its
        close-only subset), a built-in per-bar set such as ``ohlc``, or
        ``auto``: ``alpha158`` when the data has open, high and low prices,
        else ``close``.
    :param global_pool: the pool the model is trained on: ``pool.global``, or
        ``pool.name`` when that is null.
    :param eval_pools: ``pool.name`` and then ``env.eval_pools``: the pools
        backtested on validation and test, each a subset of the global pool.
    :param split: the train, validation and test windows.
    :param cost_rate: ``env.cost_rate``, cost per unit of turnover as a
        fraction (0.001 = 10 bps). 0 is the EarnMore paper's cost-free setting.
    """

    source: str
    interval: str
    market: str
    data_start: str | None
    feature_set: str
    global_pool: Pool
    eval_pools: tuple[Pool, ...]
    split: DateSplit
    cost_rate: float

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> DataSpec:
        """Read a resolved experiment config.

        :raises ConfigError: an ``env`` key is unknown or invalid.
        :raises PoolError: a pool is unknown or not inside the global pool.
        """
        from finrl_lab.training.config import check_keys, split_from_config

        env = {**ENV_DEFAULTS, **(config.get("env") or {})}
        check_keys(env, ENV_DEFAULTS, "env")
        pool = config["pool"]
        global_pool = resolve_pool(pool["global"] or pool["name"])
        entries = env["eval_pools"]
        if not isinstance(entries, list):
            raise ConfigError(
                f"env.eval_pools {entries!r} is not a list",
                "write eval_pools: [pool-a, pool-b]",
            )
        pools: list[Pool] = []
        for entry in [pool["name"], *entries]:
            chosen = resolve_pool(entry)
            check_in_global_pool(chosen, global_pool.tickers, global_pool.name)
            if chosen.name not in {p.name for p in pools}:
                pools.append(chosen)
        data = config["data"]
        start = env["data_start"]
        return cls(
            source=str(data["source"]),
            interval=str(data.get("interval", "1d")),
            market=str(data.get("market", "equity")),
            data_start=None if start is None else str(start),
            feature_set=_feature_set(env["features"]),
            global_pool=global_pool,
            eval_pools=tuple(pools),
            split=split_from_config(config),
            cost_rate=_cost_rate(env["cost_rate"]),
        )


def _feature_set(value: object) -> str:
    name = str(value)
    known = ("auto", *FEATURE_SETS, *BUILTIN_FEATURE_SETS)
    if name not in known:
        raise ConfigError(
            f"unknown env.features {name!r}", f"use one of {', '.join(known)}"
        )
    return name


def _cost_rate(value: object) -> float:
    try:
        rate = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        rate = -1.0
    if not 0.0 <= rate < 1.0:
        raise ConfigError(
            f"env.cost_rate {value!r} is outside [0, 1)",
            "give it as a fraction: 10 bps is 0.001, 0 turns costs off",
        )
    return rate


def check_in_global_pool(pool: Pool, universe: tuple[str, ...], name: str) -> None:
    """Raise PoolError naming every ticker of ``pool`` outside the global pool."""
    outside = [t for t in pool.tickers if t not in set(universe)]
    if outside:
        raise PoolError(
            f"ticker(s) {', '.join(outside)} of pool {pool.name!r} were not in the "
            f"global pool {name!r} the model was trained on",
            "EarnMore manages subsets of its training pool only; remove them or "
            "train on a global pool that contains them",
        )


@dataclass
class PreparedData:
    """The global pool's panel and its scaled features, ready for training.

    :param panel: prices of the global pool's tickers, in the pool's order.
    :param features: scaled features [T, N, F] float32, 0 where NaN.
    :param feature_set: the feature set used (``auto`` resolved).
    :param feature_names: names of the F features.
    :param normalizer: scaling fitted on the training rows.
    :param rows: row slices of the train, validation and test windows.
    :param relatives: ``close[t+1] / close[t]`` [T - 1, N], 1 where undefined.
    """

    panel: Panel
    features: np.ndarray
    feature_set: str
    feature_names: list[str]
    normalizer: Normalizer | None
    rows: SplitRows
    relatives: np.ndarray

    @property
    def available(self) -> np.ndarray:
        """bool [T, N], True where a stock has a bar."""
        return self.panel.available

    @property
    def train_rows(self) -> tuple[int, int]:
        """First decision row and last valuation row of training episodes."""
        first = self.rows.train.start + WARMUP_ROWS
        last = self.rows.train.stop - 1
        if last - first < 2:
            raise ConfigError(
                f"the training window has {last - self.rows.train.start + 1} days, "
                f"too few after {WARMUP_ROWS} days of feature warm-up",
                "start the data earlier or end the training window later",
            )
        return first, last


def load_global_panel(spec: DataSpec, tickers: tuple[str, ...]) -> Panel:
    """Load the data source and cut it to ``tickers`` (in that order) and dates."""
    from finrl_lab.training.experiment import load_experiment_panel

    data = {"source": spec.source, "interval": spec.interval, "market": spec.market}
    panel = load_experiment_panel({"data": data})
    panel.ticker_positions(tickers)
    panel = panel.select(tickers)
    if spec.data_start is not None:
        panel = panel.between(spec.data_start, None)
    return panel


def compute_raw_features(panel: Panel, feature_set: str) -> tuple[np.ndarray, list]:
    """Compute unscaled features [T, N, F]; NaN where undefined.

    A name of :data:`finrl_lab.data.features.FEATURE_SETS` (``alpha158``,
    ``close``) comes first; other names are PortfolioEnv's per-bar sets.
    """
    if feature_set in FEATURE_SETS:
        return compute_features(panel, feature_set)
    values, names = bar_features(panel, feature_set)
    return values.astype(np.float64), names


def scale_features(
    raw: np.ndarray, names: list[str], normalizer: Normalizer | None
) -> np.ndarray:
    """Apply a fitted normaliser and replace NaN and infinities by 0, as float32."""
    scaled = raw if normalizer is None else normalizer.transform(raw)
    return np.nan_to_num(scaled, nan=0.0, posinf=0.0, neginf=0.0).astype(np.float32)


def prepare_data(spec: DataSpec) -> PreparedData:
    """Load prices, compute and scale features on the training rows, cut splits."""
    panel = load_global_panel(spec, spec.global_pool.tickers)
    rows = spec.split.rows(panel)
    feature_set = spec.feature_set
    if feature_set == "auto":
        has_ohlc = all(panel.has_field(name) for name in ("open", "high", "low"))
        feature_set = "alpha158" if has_ohlc else "close"
    raw, names = compute_raw_features(panel, feature_set)
    normalizer = None
    if feature_set in FEATURE_SETS:
        normalizer = Normalizer.for_features(names).fit(raw, rows.train)
    features = scale_features(raw, names, normalizer)
    close = panel.filled_close()
    with np.errstate(invalid="ignore", divide="ignore"):
        relatives = close[1:] / close[:-1]
    relatives[~np.isfinite(relatives)] = 1.0
    log.info(
        "EarnMore data: %d stocks, %d days, %d features; train rows %s",
        panel.n_assets,
        len(panel),
        len(names),
        rows.train,
    )
    return PreparedData(
        panel, features, feature_set, names, normalizer, rows, relatives
    )
