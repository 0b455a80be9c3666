"""Yahoo Finance bars through yfinance.

Each ticker is fetched with ``yfinance.Ticker.history`` (``auto_adjust=False``,
``actions=True``), which calls Yahoo's ``v8/finance/chart`` endpoint. The rows
kept in the cache are Yahoo's own: ``close`` is split-adjusted, ``adj_close``
is split- and dividend-adjusted, plus ``dividends`` and ``splits``. On reading,
:func:`finrl_lab.data.cleaning.adjust_prices` scales open, high, low and close by
``adj_close / close`` so that all four prices are adjusted alike.

Yahoo rewrites the whole adjusted history after every split and dividend, so an
update re-fetches the last few cached bars and, if they changed, the whole
history of that ticker (see :attr:`YahooSource.overlap_bars`).
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np
import pandas as pd

from finrl_lab.data.panel import interval_seconds
from finrl_lab.data.sources import Source, SourceUnavailableError
from finrl_lab.errors import DataError

log = logging.getLogger(__name__)

CHART_ENDPOINT = "https://query2.finance.yahoo.com/v8/finance/chart/{symbol}"
# Panel interval -> Yahoo interval.
INTERVALS = {
    "1m": "1m",
    "2m": "2m",
    "5m": "5m",
    "15m": "15m",
    "30m": "30m",
    "90m": "90m",
    "1h": "1h",
    "1d": "1d",
    "5d": "5d",
    "1w": "1wk",
}
# Longest span of one intraday request, in days; daily and longer bars come in one
# request. NOTE: Yahoo documents no limits. These stay under the spans yfinance
# 1.7.0 requests for period="max" (8 days of 1m, 60 days of other minute bars,
# 730 days of hourly bars).
MAX_REQUEST_DAYS = {
    "1m": 7,
    "2m": 59,
    "5m": 59,
    "15m": 59,
    "30m": 59,
    "90m": 59,
    "1h": 729,
}
_PRICE_NAMES = {
    "open": "open",
    "high": "high",
    "low": "low",
    "close": "close",
    "adj close": "adj_close",
    "adjclose": "adj_close",
    "adj_close": "adj_close",
    "volume": "volume",
    "dividends": "dividends",
    "stock splits": "splits",
    "splits": "splits",
    "capital gains": "capital_gains",
}
_DATE_NAMES = ("date", "datetime", "index")
OUTPUT_COLUMNS = (
    "date",
    "open",
    "high",
    "low",
    "close",
    "adj_close",
    "volume",
    "dividends",
    "splits",
)


def make_session() -> Any:
    """Return the HTTP session for yfinance; None lets yfinance make its own."""
    return None


def _network_errors() -> tuple[type[BaseException], ...]:
    errors: list[type[BaseException]] = [ConnectionError, TimeoutError]
    with contextlib.suppress(ImportError):
        import requests

        errors.append(requests.exceptions.RequestException)
    with contextlib.suppress(ImportError):
        from curl_cffi.requests.exceptions import RequestException

        errors.append(RequestException)
    return tuple(errors)


@contextlib.contextmanager
def _yfinance_raises() -> Iterator[None]:
    """Make yfinance raise its errors instead of logging them and returning nothing."""
    import yfinance as yf

    config = yf.config.debug
    previous = config.hide_exceptions
    config.hide_exceptions = False
    try:
        yield
    finally:
        config.hide_exceptions = previous


def normalise_history(frame: pd.DataFrame, symbol: str, interval: str) -> pd.DataFrame:
    """Convert a yfinance history frame to the cache layout, whatever its version.

    Handles single-level columns (``Ticker.history``) and two-level columns in
    either order (``yf.download`` with or without ``group_by='ticker'``). An
    absent ``Adj Close`` means Yahoo sent no adjusted close, so it equals close.
    Splits may be named ``Stock Splits`` or ``Splits``, and the date may be the
    index or a column, time-zone aware or naive. Daily and longer bars get the
    exchange's trading date at midnight UTC, intraday bars their start in UTC.

    :returns: columns ``date, open, high, low, close, adj_close, volume,
        dividends, splits``; rows without a close are dropped.
    """
    out = frame
    if isinstance(out.columns, pd.MultiIndex):
        out = _select_ticker(out, symbol)
    if isinstance(out.index, pd.DatetimeIndex):
        dates = out.index
    else:
        names = [c for c in out.columns if str(c).strip().lower() in _DATE_NAMES]
        if not names:
            raise DataError(
                f"yfinance returned no dates for {symbol} (columns: "
                f"{', '.join(map(str, out.columns))})",
                "upgrade yfinance, or report the layout it returns",
            )
        dates = pd.DatetimeIndex(pd.to_datetime(out[names[0]]))
    renamed = {}
    for col in out.columns:
        key = str(col).strip().lower()
        if key in _PRICE_NAMES:
            renamed[col] = _PRICE_NAMES[key]
    out = out.rename(columns=renamed)
    if "close" not in out.columns:
        raise DataError(
            f"yfinance returned no Close column for {symbol} (columns: "
            f"{', '.join(map(str, frame.columns))})",
            "upgrade yfinance, or report the layout it returns",
        )
    result = pd.DataFrame({"date": _bar_dates(dates, interval)})
    for name in OUTPUT_COLUMNS[1:]:
        if name in out.columns:
            result[name] = pd.to_numeric(out[name], errors="coerce").to_numpy(float)
        elif name == "adj_close":
            result[name] = result["close"]
        elif name in ("dividends", "splits"):
            result[name] = 0.0
        elif name == "volume":
            result[name] = np.nan
    no_close = ~np.isfinite(result["close"].to_numpy())
    if no_close.any():
        log.debug("%s: dropped %d rows without a close", symbol, int(no_close.sum()))
        result = result.loc[~no_close]
    return result.reset_index(drop=True)


def _select_ticker(frame: pd.DataFrame, symbol: str) -> pd.DataFrame:
    for level in range(frame.columns.nlevels):
        values = {str(v) for v in frame.columns.get_level_values(level)}
        if symbol in values:
            return frame.xs(symbol, axis=1, level=level)
    for level in range(frame.columns.nlevels):
        values = frame.columns.get_level_values(level)
        if len(set(values)) == 1:
            return frame.droplevel(level, axis=1)
    raise DataError(
        f"yfinance returned columns for other tickers than {symbol}",
        "download one ticker at a time",
    )


def _bar_dates(dates: pd.DatetimeIndex, interval: str) -> pd.DatetimeIndex:
    if interval_seconds(interval) >= 86400:
        local = dates.tz_localize(None) if dates.tz is not None else dates
        return local.normalize().tz_localize("UTC").as_unit("ns")
    # NOTE: a naive intraday index is read as UTC; yfinance 1.x always sets a zone.
    if dates.tz is None:
        return dates.tz_localize("UTC").as_unit("ns")
    return dates.tz_convert("UTC").as_unit("ns")


def drop_unfinished(
    bars: pd.DataFrame,
    interval: str,
    now: pd.Timestamp,
    *,
    exchange_tz: str | None = None,
    session_end: pd.Timestamp | None = None,
) -> pd.DataFrame:
    """Drop bars that had not closed at ``now``.

    An intraday bar is finished when its start plus the interval has passed. A
    daily bar dated D is finished once D's regular session has ended: at
    ``session_end`` when that falls on D (Yahoo reports the current session),
    otherwise at midnight after D in the exchange's time zone. A weekly bar is
    finished a week after its first day.
    """
    if bars.empty:
        return bars
    seconds = interval_seconds(interval)
    dates = pd.DatetimeIndex(bars["date"])
    if seconds < 86400:
        finished = dates + pd.Timedelta(seconds=seconds) <= now
    else:
        tz = exchange_tz or "UTC"
        local_day = dates.tz_localize(None).tz_localize(
            tz, ambiguous=np.ones(len(dates), dtype=bool), nonexistent="shift_forward"
        )
        ends = local_day + pd.Timedelta(seconds=seconds)
        if session_end is not None and seconds == 86400:
            session_day = session_end.tz_convert(tz).tz_localize(None).normalize()
            same = dates.tz_localize(None) == session_day
            ends = ends.where(~same, session_end.tz_convert(tz))
        finished = ends <= now
    finished = np.asarray(finished)
    if not finished.all():
        log.info("dropped %d unfinished %s bars", int((~finished).sum()), interval)
    return bars.loc[finished].reset_index(drop=True)


class YahooSource(Source):
    """Daily and intraday bars of any Yahoo ticker, through yfinance.

    :param session: HTTP session handed to yfinance; None lets yfinance create
        its own (tests pass one that serves recorded responses).
    :param retries: extra attempts after a rate-limit or network error.
    :param backoff_s: first wait between attempts in seconds, doubled each time.
    :param repair: let yfinance repair known Yahoo price errors (more requests).
    :param sleep: the waiting function; default :func:`time.sleep`.
    :param clock: returns the current UTC time, replaced in tests.
    """

    name = "yahoo"
    market = "equity"
    overlap_bars = 5

    def __init__(
        self,
        *,
        session: Any = None,
        retries: int = 4,
        backoff_s: float = 2.0,
        repair: bool = False,
        timeout_s: float = 30.0,
        sleep: Callable[[float], None] | None = None,
        clock: Callable[[], pd.Timestamp] | None = None,
    ) -> None:
        self.session = session if session is not None else make_session()
        self.retries = retries
        self.backoff_s = backoff_s
        self.repair = repair
        self.timeout_s = timeout_s
        self.sleep = sleep
        self.clock = clock

    def now(self) -> pd.Timestamp:
        return self.clock() if self.clock else pd.Timestamp.now(tz="UTC")

    def check(self, symbols: Sequence[str], interval: str) -> None:
        if interval not in INTERVALS:
            raise DataError(
                f"Yahoo has no {interval!r} bars",
                f"choose one of: {', '.join(INTERVALS)}",
            )

    def provenance(self, symbol: str) -> dict[str, Any]:
        import yfinance

        return {
            "source": self.name,
            "library": f"yfinance {yfinance.__version__}",
            "endpoint": CHART_ENDPOINT.format(symbol=symbol),
        }

    def history_changed(self, cached: pd.DataFrame, fresh: pd.DataFrame) -> bool:
        """Return True when Yahoo's close or adjusted close of a repeated bar moved.

        Both move on every bar before a new split; the adjusted close moves on
        every bar before a new dividend.
        """
        joined = cached.merge(fresh, on="date", suffixes=("_old", "_new"))
        if joined.empty:
            return len(fresh) > 0 and len(cached) > 0
        for name in ("close", "adj_close"):
            old = joined[f"{name}_old"].to_numpy(float)
            new = joined[f"{name}_new"].to_numpy(float)
            if not np.allclose(old, new, rtol=1e-6, atol=0.0, equal_nan=True):
                return True
        return False

    def fetch(
        self,
        symbol: str,
        interval: str,
        start: pd.Timestamp,
        end: pd.Timestamp,
    ) -> Iterator[pd.DataFrame]:
        self.check([symbol], interval)
        for chunk_start, chunk_end in self._chunks(interval, start, end):
            frame, metadata = self._history(symbol, interval, chunk_start, chunk_end)
            if frame is None or frame.empty:
                continue
            bars = normalise_history(frame, symbol, interval)
            first = chunk_start
            if interval_seconds(interval) >= 86400:
                first = chunk_start.floor("D")
            inside = (bars["date"] >= first) & (bars["date"] <= chunk_end)
            bars = drop_unfinished(
                bars.loc[inside],
                interval,
                self.now(),
                exchange_tz=metadata.get("exchangeTimezoneName"),
                session_end=_session_end(metadata),
            )
            if not bars.empty:
                yield bars.reset_index(drop=True)

    def _chunks(
        self, interval: str, start: pd.Timestamp, end: pd.Timestamp
    ) -> list[tuple[pd.Timestamp, pd.Timestamp]]:
        # NOTE: no recorded intraday response exists, so the intraday path is
        # tested only on synthetic frames, never against Yahoo's own replies.
        days = MAX_REQUEST_DAYS.get(interval)
        if days is None:
            return [(start, end)]
        span = pd.Timedelta(days=days)
        chunks = []
        lo = start
        while lo <= end:
            hi = min(lo + span, end)
            chunks.append((lo, hi))
            lo = hi + pd.Timedelta(seconds=1)
        return chunks

    def _history(
        self,
        symbol: str,
        interval: str,
        start: pd.Timestamp,
        end: pd.Timestamp,
    ) -> tuple[pd.DataFrame | None, dict[str, Any]]:
        import yfinance as yf
        from yfinance.exceptions import (
            YFPricesMissingError,
            YFRateLimitError,
            YFTzMissingError,
        )

        network_errors = _network_errors()
        for attempt in range(self.retries + 1):
            try:
                with _yfinance_raises():
                    ticker = yf.Ticker(symbol, session=self.session)
                    frame = ticker.history(
                        start=int(start.timestamp()),
                        end=int(end.timestamp()) + 1,
                        interval=INTERVALS[interval],
                        auto_adjust=False,
                        back_adjust=False,
                        actions=True,
                        repair=self.repair,
                        keepna=False,
                        prepost=False,
                        timeout=self.timeout_s,
                    )
                    metadata = ticker.get_history_metadata() or {}
                return frame, metadata
            except YFTzMissingError:
                raise DataError(
                    f"unknown Yahoo ticker {symbol!r} (Yahoo has no data for it)",
                    "check the symbol on finance.yahoo.com, such as BRK-B or ^GSPC",
                ) from None
            except YFPricesMissingError as exc:
                reason = getattr(exc, "yahoo_reason", None)
                if reason:
                    raise DataError(
                        f"Yahoo returned no {interval} bars for {symbol} between "
                        f"{start.date()} and {end.date()}: {reason}",
                        "check the symbol, and for intraday bars stay within the "
                        "range Yahoo keeps",
                    ) from None
                return None, {}
            except YFRateLimitError:
                problem = "rate limit (HTTP 429)"
            except network_errors as exc:
                status = _http_status(exc)
                if status == 404:
                    # yfinance requests the quote endpoint when the chart has no
                    # time zone for the ticker; a 404 there means no such ticker.
                    raise DataError(
                        f"unknown Yahoo ticker {symbol!r} (HTTP 404)",
                        "check the symbol on finance.yahoo.com, such as BRK-B or ^GSPC",
                    ) from None
                if status == 429:
                    problem = "rate limit (HTTP 429)"
                elif status is not None and 0 < status < 500:
                    raise DataError(
                        f"Yahoo rejected the request for {symbol} (HTTP {status})",
                        "check the symbol and dates; upgrade yfinance if it persists",
                    ) from None
                else:
                    problem = f"network error ({type(exc).__name__}: {exc})"
            if attempt == self.retries:
                break
            wait = self.backoff_s * 2**attempt
            log.warning(
                "Yahoo %s for %s; retry %d of %d in %.1f s",
                problem,
                symbol,
                attempt + 1,
                self.retries,
                wait,
            )
            (self.sleep or time.sleep)(wait)
        raise SourceUnavailableError(
            f"Yahoo {problem} for {symbol} persisted after {self.retries} retries",
            "wait a few minutes and run the same command again; finished tickers "
            "stay cached",
        )


def _http_status(exc: BaseException) -> int | None:
    response = getattr(exc, "response", None)
    status = getattr(response, "status_code", None)
    return int(status) if isinstance(status, int) else None


def _session_end(metadata: dict[str, Any]) -> pd.Timestamp | None:
    period = (metadata.get("currentTradingPeriod") or {}).get("regular") or {}
    end = period.get("end")
    if end is None:
        return None
    if isinstance(end, int | float):
        return pd.Timestamp(int(end), unit="s", tz="UTC")
    ts = pd.Timestamp(end)
    return ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")
