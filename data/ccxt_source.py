"""OHLCV candles of any ccxt exchange, symbol and timeframe.

Candles are fetched with ``exchange.fetch_ohlcv(symbol, timeframe, since, limit)``
page after page, each page starting one timeframe after the last candle of the
previous one. The exchange object is built with ``enableRateLimit=True``, so
ccxt spaces the requests by the exchange's ``rateLimit``. Network errors
(``ccxt.NetworkError``, which includes rate-limit and timeout errors) are
retried with exponential backoff. Candles repeated at page borders are dropped,
and so is the candle still forming at the time of the request.
"""

from __future__ import annotations

import difflib
import logging
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import pandas as pd

from finrl_lab.data.panel import interval_seconds
from finrl_lab.data.sources import Source, SourceUnavailableError
from finrl_lab.errors import DataError

log = logging.getLogger(__name__)

DEFAULT_PAGE_LIMIT = 1000
CANDLE_COLUMNS = ("date", "open", "high", "low", "close", "volume")


def make_exchange(exchange_id: str) -> Any:
    """Return a ccxt exchange with its rate limiter on.

    :raises DataError: ccxt has no exchange of that id.
    """
    import ccxt

    exchange_id = exchange_id.strip().lower()
    if exchange_id not in ccxt.exchanges:
        close = difflib.get_close_matches(exchange_id, ccxt.exchanges, n=3)
        hint = f"did you mean {', '.join(close)}?" if close else "see ccxt.exchanges"
        raise DataError(f"unknown ccxt exchange {exchange_id!r}", hint)
    return getattr(ccxt, exchange_id)({"enableRateLimit": True})


class CcxtSource(Source):
    """Candles from one ccxt exchange.

    :param exchange: an exchange id such as ``binance``, or a ccxt exchange object.
    :param page_limit: candles requested per call; default the exchange's
        documented maximum, else 1000.
    :param retries: extra attempts per page after a network or rate-limit error.
    :param backoff_s: first wait in seconds (default: the exchange's rate limit,
        at least 1 s), doubled after each failed attempt, capped at 60 s.
    :param sleep: the waiting function; default :func:`time.sleep`.
    :param clock: returns the current UTC time, replaced in tests.
    """

    market = "crypto"

    def __init__(
        self,
        exchange: str | Any,
        *,
        page_limit: int | None = None,
        retries: int = 5,
        backoff_s: float | None = None,
        sleep: Callable[[float], None] | None = None,
        clock: Callable[[], pd.Timestamp] | None = None,
    ) -> None:
        self.exchange = (
            make_exchange(exchange) if isinstance(exchange, str) else exchange
        )
        self.exchange_id = str(self.exchange.id)
        self.name = f"ccxt/{self.exchange_id}"
        self.page_limit = page_limit or _documented_limit(self.exchange)
        self.retries = retries
        rate_limit_s = float(getattr(self.exchange, "rateLimit", 1000) or 1000) / 1000
        self.backoff_s = backoff_s if backoff_s is not None else max(rate_limit_s, 1.0)
        self.sleep = sleep
        self.clock = clock
        self._markets_checked = False

    def now(self) -> pd.Timestamp:
        return self.clock() if self.clock else pd.Timestamp.now(tz="UTC")

    def provenance(self, symbol: str) -> dict[str, Any]:
        import ccxt

        return {
            "source": self.name,
            "library": f"ccxt {ccxt.__version__}",
            "endpoint": f"{self.exchange_id} fetch_ohlcv {symbol}",
        }

    def check(self, symbols: Sequence[str], interval: str) -> None:
        """Reject an interval or symbols the exchange does not list.

        :raises DataError: no OHLCV support, unknown timeframe or unknown symbol.
        """
        if not self.exchange.has.get("fetchOHLCV"):
            raise DataError(
                f"{self.exchange_id} does not serve OHLCV candles through ccxt",
                "choose another exchange",
            )
        timeframes = getattr(self.exchange, "timeframes", None) or {}
        if timeframes and interval not in timeframes:
            raise DataError(
                f"{self.exchange_id} has no {interval!r} timeframe",
                f"choose one of: {', '.join(timeframes)}",
            )
        interval_seconds(interval)
        markets = self._markets()
        for symbol in symbols:
            if symbol not in markets:
                close = difflib.get_close_matches(symbol, list(markets), n=3)
                hint = (
                    f"did you mean {', '.join(close)}?"
                    if close
                    else "write it as BASE/QUOTE, such as BTC/USDT"
                )
                raise DataError(
                    f"unknown symbol {symbol!r} on {self.exchange_id}", hint
                )

    def _markets(self) -> dict[str, Any]:
        if not self._markets_checked:
            self._call(lambda: self.exchange.load_markets(), "loading markets")
            self._markets_checked = True
        return self.exchange.markets or {}

    def fetch(
        self,
        symbol: str,
        interval: str,
        start: pd.Timestamp,
        end: pd.Timestamp,
    ) -> Iterator[pd.DataFrame]:
        step_ms = int(interval_seconds(interval) * 1000)
        since = _ms(start)
        # A candle starting at or after this instant has not closed yet.
        unfinished_from = _ms(self.now()) - step_ms
        last_ms = min(_ms(end), unfinished_from)
        seen = since - 1
        while since <= last_ms:
            page = self._call(
                lambda since=since: self.exchange.fetch_ohlcv(
                    symbol, interval, since=since, limit=self.page_limit
                ),
                f"{symbol} candles since {pd.Timestamp(since, unit='ms', tz='UTC')}",
            )
            rows = sorted(
                (r for r in page or [] if r and r[0] is not None), key=lambda r: r[0]
            )
            fresh = [r for r in rows if seen < r[0] <= last_ms]
            if fresh:
                seen = fresh[-1][0]
                yield _to_frame(fresh)
            if not rows or rows[-1][0] < since:
                # Nothing from `since` on: skip a page length of empty time.
                # NOTE: an exchange that ignores `since` and returns its latest
                # candles would skip the history before them without an error.
                since += step_ms * self.page_limit
                continue
            since = max(rows[-1][0] + step_ms, seen + step_ms)

    def _call(self, request: Callable[[], Any], what: str) -> Any:
        import ccxt

        for attempt in range(self.retries + 1):
            try:
                return request()
            except ccxt.BadSymbol as exc:
                raise DataError(
                    f"{self.exchange_id} rejected the symbol: {_first_line(exc)}",
                    "check the symbol with the exchange's market list",
                ) from None
            except ccxt.NetworkError as exc:
                error = exc
                kind = (
                    "rate limit"
                    if isinstance(exc, ccxt.RateLimitExceeded | ccxt.DDoSProtection)
                    else "network error"
                )
            except ccxt.ExchangeError as exc:
                raise DataError(
                    f"{self.exchange_id} rejected {what}: {_first_line(exc)}",
                    "check the symbol, timeframe and dates",
                ) from None
            if attempt == self.retries:
                break
            wait = min(self.backoff_s * 2**attempt, 60.0)
            log.warning(
                "%s %s while %s (%s); retry %d of %d in %.1f s",
                self.exchange_id,
                kind,
                what,
                _first_line(error),
                attempt + 1,
                self.retries,
                wait,
            )
            (self.sleep or time.sleep)(wait)
        raise SourceUnavailableError(
            f"{self.exchange_id} {kind} while {what} persisted after "
            f"{self.retries} retries ({type(error).__name__}: {_first_line(error)})",
            "wait and run the same command again; it resumes after the last "
            "cached candle",
        )


def _documented_limit(exchange: Any) -> int:
    features = getattr(exchange, "features", None) or {}
    for market_type in ("spot", "swap", "future"):
        entry = features.get(market_type) or {}
        if isinstance(entry, dict):
            limit = (entry.get("fetchOHLCV") or {}).get("limit")
            if isinstance(limit, int) and limit > 0:
                return limit
    return DEFAULT_PAGE_LIMIT


def _ms(ts: pd.Timestamp) -> int:
    return int(pd.Timestamp(ts).value // 1_000_000)


def _to_frame(rows: list[list[Any]]) -> pd.DataFrame:
    frame = pd.DataFrame([r[:6] for r in rows], columns=list(CANDLE_COLUMNS))
    frame["date"] = pd.to_datetime(frame["date"], unit="ms", utc=True).dt.as_unit("ns")
    for name in CANDLE_COLUMNS[1:]:
        frame[name] = pd.to_numeric(frame[name], errors="coerce").astype(float)
    return frame


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0][:200] if text else type(exc).__name__
