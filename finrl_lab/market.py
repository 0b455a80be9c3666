"""A panel cut to a pool and a date window, with the arrays every agent needs.

:class:`Market` is the simulation side of the portfolio environment and the input
of the classic baselines: filled close prices, price relatives and which assets
can be held at each bar. Rows before ``first`` are history that agents may read;
decisions happen at rows ``first .. last - 1`` and the portfolio is valued at
``last``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from finrl_lab.data.panel import Panel
from finrl_lab.data.pools import Pool, read_pool_file, resolve_pool
from finrl_lab.errors import DataError, FinRLLabError, PoolError


@dataclass(frozen=True, eq=False)
class Market:
    """Prices of a global pool with a pool mask, over rows ``0 .. last``.

    :param panel: the data, holding only the global pool's tickers and no rows
        after ``last`` (so nothing after the window can leak into a decision).
    :param pool_mask: bool [N], True for assets in the customizable pool.
    :param first: row of the first decision.
    :param last: row of the final valuation; ``last > first``.
    """

    panel: Panel
    pool_mask: np.ndarray
    first: int
    last: int
    close: np.ndarray = field(init=False, repr=False)
    """Close prices carried forward over gaps, [T, N]; NaN before listing."""
    relatives: np.ndarray = field(init=False, repr=False)
    """``close[t+1] / close[t]`` for t = 0 .. T-2, [T - 1, N]; 1 where undefined."""
    tradable: np.ndarray = field(init=False, repr=False)
    """In the pool and with a bar at t, [T, N]; only these assets may be held."""

    def __post_init__(self) -> None:
        if not 0 <= self.first < self.last < len(self.panel):
            raise ValueError(f"invalid rows first={self.first} last={self.last}")
        close = self.panel.filled_close()
        object.__setattr__(self, "close", close)
        with np.errstate(invalid="ignore", divide="ignore"):
            rel = close[1:] / close[:-1]
        rel[~np.isfinite(rel)] = 1.0
        object.__setattr__(self, "relatives", rel)
        tradable = self.panel.available & self.pool_mask[None, :]
        object.__setattr__(self, "tradable", tradable)

    @property
    def tickers(self) -> tuple[str, ...]:
        return self.panel.tickers

    @property
    def pool_tickers(self) -> tuple[str, ...]:
        return tuple(t for t, m in zip(self.tickers, self.pool_mask, strict=True) if m)

    @property
    def n_assets(self) -> int:
        return self.panel.n_assets

    @property
    def steps(self) -> int:
        """Number of holding periods in the window."""
        return self.last - self.first

    @property
    def decision_times(self) -> pd.DatetimeIndex:
        return self.panel.timestamps[self.first : self.last]

    @property
    def valuation_times(self) -> pd.DatetimeIndex:
        """Bars at which the portfolio is valued: ``first .. last``."""
        return self.panel.timestamps[self.first : self.last + 1]

    @property
    def periods_per_year(self) -> float:
        return self.panel.periods_per_year


def build_market(
    panel: Panel,
    pool: str | Sequence[str] | Pool,
    *,
    start: object = None,
    end: object = None,
    global_pool: str | Sequence[str] | Pool | None = None,
    min_history: int = 1,
) -> Market:
    """Cut ``panel`` to a global pool, a customizable pool and a date window.

    :param pool: the customizable pool (CSP) to trade; a pool name, a YAML file,
        ``A,B,C`` or a list of tickers.
    :param start: first decision date (inclusive); the first bar by default.
    :param end: final valuation date (inclusive); the last bar by default.
    :param global_pool: the global pool (GSP) that observations cover; by default
        the pool's parent if the data contains it, else the pool itself.
    :param min_history: bars the first decision needs, counting its own bar; the
        first decision moves later if ``start`` leaves too little history.
    :raises PoolError: a ticker is not in the data or the pool is empty.
    :raises DataError: the window holds fewer than two bars.
    """
    csp = resolve_pool(pool)
    csp_tickers = panel.canonical_tickers(csp.tickers)
    gsp_tickers = panel.canonical_tickers(_global_tickers(panel, csp, global_pool))
    outside = [t for t in csp_tickers if t not in set(gsp_tickers)]
    if outside:
        raise PoolError(
            f"pool {csp.name!r} has ticker(s) {', '.join(outside)} outside the global "
            f"pool",
            f"the global pool has: {', '.join(gsp_tickers)}",
        )
    gsp_panel = panel.select(gsp_tickers)
    rows = gsp_panel.slice_positions(start, end)
    first = max(rows.start, min_history - 1)
    last = rows.stop - 1
    if last <= first:
        raise DataError(
            f"the window {start or gsp_panel.timestamps[0].date()} .. "
            f"{end or gsp_panel.timestamps[-1].date()} leaves {max(last - first, 0)} "
            f"holding periods after {min_history - 1} bars of history",
            "choose a longer window or a later start date",
        )
    history_panel = gsp_panel._replace(
        timestamps=gsp_panel.timestamps[: last + 1],
        values=gsp_panel.values[: last + 1],
        available=gsp_panel.available[: last + 1],
    )
    mask = np.isin(np.asarray(gsp_tickers), np.asarray(csp_tickers))
    if not (history_panel.available[first:last, mask]).any():
        raise DataError(
            f"no ticker of pool {csp.name!r} has a price between "
            f"{history_panel.timestamps[first].date()} and "
            f"{history_panel.timestamps[last].date()}",
            "choose dates when the pool's stocks were listed",
        )
    return Market(history_panel, mask, first, last)


def _global_tickers(
    panel: Panel, csp: Pool, global_pool: str | Sequence[str] | Pool | None
) -> tuple[str, ...]:
    if global_pool is not None:
        return resolve_pool(global_pool).tickers
    if csp.parent is None:
        return csp.tickers
    parent = None
    if csp.origin and Path(csp.origin).is_file():
        parent = read_pool_file(csp.origin).get(csp.parent)
    if parent is None:
        try:
            parent = resolve_pool(csp.parent)
        except FinRLLabError:
            return csp.tickers
    try:
        panel.ticker_positions(parent.tickers)
    except FinRLLabError:
        # NOTE: a parent the data cannot cover falls back to the pool itself, so
        # the observation then covers only the pool's own tickers.
        return csp.tickers
    return parent.tickers
