"""Data side of an experiment: the panel, the pool and the windows a config names."""

from __future__ import annotations

import functools
from typing import Any

from finrl_lab.data.panel import Panel
from finrl_lab.errors import PoolError
from finrl_lab.training.config import split_from_config

WINDOWS = ("train", "valid", "test")


@functools.lru_cache(maxsize=4)
def _cached_panel(source: str, interval: str, market: str, sort_dates: bool) -> Panel:
    from finrl_lab.data.local import resolve_data

    return resolve_data(source, interval=interval, market=market, sort_dates=sort_dates)


def load_experiment_panel(config: dict[str, Any]) -> Panel:
    """Load the dataset of ``config["data"]``; repeated calls reuse the panel."""
    data = config["data"]
    return _cached_panel(
        str(data["source"]),
        str(data["interval"]),
        data["market"],
        bool(data.get("sort_dates", False)),
    )


def window_dates(config: dict[str, Any], window: str) -> tuple[str | None, str | None]:
    """Return ``(start, end)`` of the ``train``, ``valid`` or ``test`` window."""
    split = split_from_config(config)
    start, end = getattr(split, window)
    return (
        None if start is None else str(start),
        None if end is None else str(end),
    )


def check_data(config: dict[str, Any]) -> Panel:
    """Load the data and check that the pools and all three windows fit in it.

    :raises PoolError: the pool or global pool names a ticker the data lacks.
    :raises DataError: a window reaches outside the data or contains no bar.
    """
    from finrl_lab.data.pools import resolve_pool

    panel = load_experiment_panel(config)
    for key in ("name", "global"):
        spec = config["pool"][key]
        if spec is None:
            continue
        tickers = resolve_pool(spec).tickers
        missing = [ticker for ticker in tickers if ticker not in panel.tickers]
        if missing:
            raise PoolError(
                f"pool.{key} {spec!r} names {len(missing)} ticker(s) not in "
                f"{panel.source or config['data']['source']}: "
                f"{', '.join(missing[:5])}{' ...' if len(missing) > 5 else ''}",
                "choose a pool of that dataset (see 'finrl-lab pools') or "
                "another data.source",
            )
    split_from_config(config).rows(panel)
    return panel
