"""Cleaning rules that turn raw downloaded bars into panel rows without inventing data.

- Timestamps become UTC, sorted and unique; of two rows with the same timestamp
  the one fetched last is kept.
- A row without a positive, finite close is not a bar. It is dropped, and the
  (time, ticker) pair becomes a gap in the panel.
- Equity tickers keep their gaps and late listings: the panel's availability
  mask says when each can be held. Nothing is back-filled and no ticker's
  prices are used for another.
- Crypto bars are reindexed to the full grid of the interval, from each
  symbol's first to its last bar. A missing candle gets the previous close as
  open, high, low and close, volume 0, and is flagged in a ``filled`` column.
"""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd

from finrl_lab.data.local import mark_missing_quotes
from finrl_lab.data.panel import KNOWN_FIELDS, Panel, interval_seconds
from finrl_lab.errors import DataError

log = logging.getLogger(__name__)


def to_utc(values: pd.Series | pd.Index) -> pd.Series:
    """Return timestamps as a UTC series; naive timestamps are read as UTC."""
    return pd.Series(pd.to_datetime(values, utc=True)).dt.as_unit("ns")


def clean_bars(frame: pd.DataFrame, *, where: str) -> pd.DataFrame:
    """Return one symbol's bars with UTC, sorted, unique dates and valid closes.

    :param frame: rows with a ``date`` column and at least ``close``.
    :param where: the symbol or file, for log messages.
    """
    out = frame.copy()
    out["date"] = to_utc(out["date"]).to_numpy()
    out = out.sort_values("date", kind="stable")
    duplicated = out["date"].duplicated(keep="last")
    if duplicated.any():
        log.info("%s: dropped %d duplicated timestamps", where, int(duplicated.sum()))
        out = out.loc[~duplicated]
    close = pd.to_numeric(out["close"], errors="coerce")
    invalid = ~(np.isfinite(close) & (close > 0))
    if invalid.any():
        log.info(
            "%s: dropped %d rows without a positive close (treated as gaps)",
            where,
            int(invalid.sum()),
        )
        out = out.loc[~invalid.to_numpy()]
    return mark_missing_quotes(out.reset_index(drop=True))


def adjust_prices(frame: pd.DataFrame) -> pd.DataFrame:
    """Scale open, high, low and close by ``adj_close / close``; drop ``adj_close``.

    Yahoo's close is split-adjusted and its adjusted close is split- and
    dividend-adjusted, so this ratio carries the dividend adjustment to all four
    prices and the candle keeps its shape. Volume is left as delivered. A row
    without an adjusted close keeps its prices.
    """
    out = frame.copy()
    if "adj_close" not in out.columns:
        return out
    factor = (out["adj_close"] / out["close"]).where(out["adj_close"].notna(), 1.0)
    for name in ("open", "high", "low", "close"):
        if name in out.columns:
            out[name] = out[name] * factor
    return out.drop(columns=["adj_close"])


def fill_grid(frame: pd.DataFrame, interval: str, *, where: str) -> pd.DataFrame:
    """Reindex one symbol's bars to every ``interval`` from its first to last bar.

    A missing candle gets the previous close as its open, high, low and close,
    volume 0 and ``filled`` True; existing bars get ``filled`` False. Nothing is
    added before the first bar or after the last one.

    :param frame: cleaned bars (see :func:`clean_bars`) with a ``date`` column.
    :raises DataError: a bar does not sit on the interval's grid.
    """
    step = pd.Timedelta(seconds=interval_seconds(interval))
    if frame.empty:
        return frame.assign(filled=pd.Series(dtype=bool))
    dates = pd.DatetimeIndex(frame["date"])
    offsets = (dates - dates[0]) % step
    if (offsets != pd.Timedelta(0)).any():
        bad = dates[offsets != pd.Timedelta(0)][0]
        raise DataError(
            f"{where}: bar at {bad.isoformat()} is off the {interval} grid that "
            f"starts at {dates[0].isoformat()}",
            "download the bars again with the interval they were recorded at",
        )
    grid = pd.date_range(dates[0], dates[-1], freq=step)
    out = frame.set_index("date").reindex(grid)
    missing = out["close"].isna().to_numpy()
    close = out["close"].ffill()
    for name in ("open", "high", "low"):
        if name in out.columns:
            out[name] = out[name].where(~missing, close)
    out["close"] = close
    if "volume" in out.columns:
        out["volume"] = out["volume"].where(~missing, 0.0)
    out["filled"] = missing
    if missing.any():
        log.info(
            "%s: filled %d missing %s candles", where, int(missing.sum()), interval
        )
    return out.rename_axis("date").reset_index()


def long_to_panel(
    frames: dict[str, pd.DataFrame],
    *,
    interval: str,
    market: str,
    source: str,
) -> tuple[Panel, np.ndarray]:
    """Build a panel from cleaned per-symbol bars, keeping every symbol.

    :param frames: bars per ticker, in the panel's column order; an optional
        ``filled`` column flags synthetic candles.
    :returns: the panel and a bool [T, N] array, True at filled candles.
    :raises DataError: a ticker has no bar at all.
    """
    empty = [ticker for ticker, frame in frames.items() if frame.empty]
    if empty:
        raise DataError(
            f"no bars for {', '.join(empty)} in {source}",
            "check the symbols and the date range, then download again",
        )
    parts = []
    for ticker, frame in frames.items():
        columns = ["date", *[f for f in KNOWN_FIELDS if f in frame.columns]]
        part = frame.loc[:, columns].assign(ticker=ticker)
        part["filled"] = frame["filled"].to_numpy() if "filled" in frame else False
        parts.append(part)
    fields = set.intersection(*(set(p.columns) for p in parts))
    keep = ["date", "ticker", *[f for f in KNOWN_FIELDS if f in fields]]
    long = pd.concat([p.loc[:, [*keep, "filled"]] for p in parts], ignore_index=True)
    panel = Panel.from_long(
        long.loc[:, keep], interval=interval, market=market, source=source
    )
    filled = np.zeros(panel.available.shape, dtype=bool)
    rows = panel.timestamps.get_indexer(pd.DatetimeIndex(long["date"]))
    cols = pd.Index(panel.tickers).get_indexer(long["ticker"])
    filled[rows, cols] = long["filled"].to_numpy(dtype=bool)
    return panel, filled
