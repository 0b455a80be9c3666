"""The common interface of market data sources, and the cache-backed download.

A :class:`Source` fetches raw bars of one symbol as pages of rows. The functions
here put those pages into the cache (fetching only what is missing), and read
cached entries back as a cleaned :class:`Panel`:

- :func:`update_cache` downloads what the cache lacks for each symbol;
- :func:`load_cached` builds a panel from cached entries without any network;
- :func:`get_panel` does both.

Yahoo (:mod:`finrl_lab.data.yahoo`) and ccxt exchanges
(:mod:`finrl_lab.data.ccxt_source`) implement the interface; local files are read
by :mod:`finrl_lab.data.local` and need no cache.
"""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from finrl_lab.data.cache import Cache, CorruptCacheError, EntryKey
from finrl_lab.data.cleaning import (
    adjust_prices,
    clean_bars,
    fill_grid,
    long_to_panel,
)
from finrl_lab.data.panel import Panel, interval_seconds
from finrl_lab.errors import DataError

log = logging.getLogger(__name__)

# progress(symbol, bars fetched so far, expected bars or None when unknown)
ProgressCallback = Callable[[str, int, int | None], None]
MAX_FETCH_RECORDS = 50


class SourceUnavailableError(DataError):
    """The source keeps failing (rate limit or network) after all retries."""


def utc_timestamp(value: object) -> pd.Timestamp | None:
    """Return ``value`` as a UTC timestamp; naive values are read as UTC."""
    if value is None:
        return None
    try:
        ts = pd.Timestamp(value)
    except (ValueError, TypeError) as exc:
        raise DataError(f"invalid date {value!r}: {exc}", "use YYYY-MM-DD") from None
    if ts is pd.NaT:
        raise DataError(f"invalid date {value!r}", "use YYYY-MM-DD")
    return ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")


class Source(ABC):
    """A market data source that delivers raw bars of one symbol at a time.

    Subclasses set ``name`` (the cache folder, such as ``yahoo`` or
    ``ccxt/binance``), ``market`` (``equity`` or ``crypto``) and implement
    :meth:`fetch`.
    """

    name: str = ""
    market: str = "equity"
    # Bars fetched again before the cached end on an update. A source whose past
    # prices change (Yahoo re-adjusts history after splits and dividends) sets it
    # above 0 so that a change is detected and the history fetched anew.
    overlap_bars: int = 0

    def check(self, symbols: Sequence[str], interval: str) -> None:  # noqa: B027
        """Reject an interval or symbols the source cannot serve (default: none)."""

    @abstractmethod
    def fetch(
        self,
        symbol: str,
        interval: str,
        start: pd.Timestamp,
        end: pd.Timestamp,
    ) -> Iterator[pd.DataFrame]:
        """Yield pages of finished bars with ``start <= date <= end``, in time order.

        Each page has a UTC ``date`` column (bar start) and at least ``close``.

        :raises DataError: unknown symbol, empty result or a lasting failure.
        """

    def now(self) -> pd.Timestamp:
        """Return the current UTC time; tests override it."""
        return pd.Timestamp.now(tz="UTC")

    def provenance(self, symbol: str) -> dict[str, Any]:
        """Return where the bars of ``symbol`` come from, for the metadata."""
        return {"source": self.name}

    def history_changed(self, cached: pd.DataFrame, fresh: pd.DataFrame) -> bool:
        """Return True when re-fetched bars differ from the cached ones."""
        return False


@dataclass(frozen=True)
class UpdateResult:
    """Outcome of :func:`update_cache` for one symbol."""

    symbol: str
    path: Path
    new_rows: int
    total_rows: int
    mode: str  # "full", "incremental", "backfill" or "up to date"
    first: str | None
    last: str | None


def prepare_bars(
    frame: pd.DataFrame, *, interval: str, market: str, where: str
) -> pd.DataFrame:
    """Clean cached raw bars for a panel: UTC unique dates, adjusted prices, and
    for crypto the full grid with filled candles flagged."""
    out = adjust_prices(clean_bars(frame, where=where))
    if market == "crypto":
        out = fill_grid(out, interval, where=where)
    return out


def _merge(old: pd.DataFrame | None, new: pd.DataFrame) -> pd.DataFrame:
    if old is None or old.empty:
        merged = new
    elif new.empty:
        merged = old
    else:
        merged = pd.concat([old, new], ignore_index=True)
    merged = merged.sort_values("date", kind="stable")
    merged = merged.drop_duplicates("date", keep="last")
    return merged.reset_index(drop=True)


def _pages_to_frame(pages: list[pd.DataFrame]) -> pd.DataFrame:
    if not pages:
        return pd.DataFrame(columns=["date", "close"])
    return _merge(None, pd.concat(pages, ignore_index=True))


class _Updater:
    """Brings one cache entry up to date; see :func:`update_cache`."""

    def __init__(
        self,
        source: Source,
        cache: Cache,
        interval: str,
        progress: ProgressCallback | None,
        checkpoint_rows: int,
    ) -> None:
        self.source = source
        self.cache = cache
        self.interval = interval
        self.step = pd.Timedelta(seconds=interval_seconds(interval))
        self.progress = progress
        self.checkpoint_rows = checkpoint_rows

    def run(
        self, symbol: str, start: pd.Timestamp | None, end: pd.Timestamp | None
    ) -> UpdateResult:
        key = EntryKey(self.source.name, self.interval, symbol)
        now = self.source.now()
        end_ts = now if end is None else min(end, now)
        try:
            cached = self.cache.read(key)
        except CorruptCacheError as exc:
            log.warning("%s; fetching the whole entry again", exc)
            cached = None

        if cached is None:
            if start is None:
                raise DataError(
                    f"{key} is not cached and no start date was given",
                    "pass a start date for the first download",
                )
            return self._fetch(key, None, {}, start, end_ts, "full", start)

        frame, meta = cached
        covered_from = utc_timestamp(meta["coverage_start"])
        covered_to = utc_timestamp(meta["coverage_end"])
        requested_from = covered_from if start is None else min(start, covered_from)
        if requested_from < covered_from and (
            self.source.overlap_bars > 0 or frame.empty
        ):
            # An adjusting source must deliver old and new bars in one request,
            # or their adjustments may disagree.
            return self._fetch(
                key, None, meta, requested_from, end_ts, "full", requested_from
            )

        cached_rows = len(frame)
        if requested_from < covered_from:
            first_bar = pd.Timestamp(frame["date"].iloc[0])
            pages = self._collect(key, requested_from, first_bar - self.step)
            frame = _merge(pages, frame)
            meta = dict(meta, coverage_start=str(requested_from))
            self._record(
                meta, requested_from, first_bar, len(pages), "backfill", symbol
            )
            self.cache.write(key, frame, meta)
        if end_ts <= covered_to:
            mode = "backfill" if len(frame) > cached_rows else "up to date"
            return self._result(key, frame, len(frame) - cached_rows, mode)
        result = self._forward(key, frame, meta, end_ts)
        if result.mode == "full":
            return result
        return replace(result, new_rows=result.total_rows - cached_rows)

    def _forward(
        self, key: EntryKey, frame: pd.DataFrame, meta: dict, end_ts: pd.Timestamp
    ) -> UpdateResult:
        overlap = self.source.overlap_bars
        if frame.empty:
            resume = utc_timestamp(meta["coverage_end"])
        elif overlap > 0:
            resume = pd.Timestamp(frame["date"].iloc[max(len(frame) - overlap, 0)])
        else:
            resume = pd.Timestamp(frame["date"].iloc[-1]) + self.step
        if resume > end_ts:
            return self._result(key, frame, 0, "up to date")
        if overlap > 0:
            fresh = self._collect(key, resume, end_ts)
            last_cached = pd.Timestamp(frame["date"].iloc[-1]) if len(frame) else None
            if last_cached is not None:
                repeated = fresh[fresh["date"] <= last_cached]
                old = frame[frame["date"] >= resume]
                if self.source.history_changed(old, repeated):
                    log.info(
                        "%s: past prices changed since the last download (a split "
                        "or dividend); fetching the whole history again",
                        key,
                    )
                    covered_from = utc_timestamp(meta["coverage_start"])
                    return self._fetch(
                        key, None, meta, covered_from, end_ts, "full", covered_from
                    )
            merged = _merge(frame, fresh)
            new_rows = len(merged) - len(frame)
            meta = dict(meta, coverage_end=str(end_ts))
            self._record(meta, resume, end_ts, len(fresh), "incremental", key.symbol)
            self.cache.write(key, merged, meta)
            return self._result(key, merged, new_rows, "incremental")
        return self._fetch(
            key,
            frame,
            meta,
            resume,
            end_ts,
            "incremental",
            utc_timestamp(meta["coverage_start"]),
        )

    def _collect(
        self, key: EntryKey, start: pd.Timestamp, end: pd.Timestamp
    ) -> pd.DataFrame:
        """Fetch every page of a range into one frame (no checkpoints)."""
        pages = []
        count = 0
        expected = self._expected(start, end)
        for page in self.source.fetch(key.symbol, self.interval, start, end):
            pages.append(page)
            count += len(page)
            if self.progress:
                self.progress(key.symbol, count, expected)
        return _pages_to_frame(pages)

    def _fetch(
        self,
        key: EntryKey,
        base: pd.DataFrame | None,
        meta: dict,
        start: pd.Timestamp,
        end: pd.Timestamp,
        mode: str,
        coverage_start: pd.Timestamp,
    ) -> UpdateResult:
        """Fetch a range, appending to ``base``; save progress if the fetch fails.

        Pages are written to the cache every ``checkpoint_rows`` rows and when the
        source fails, so a rerun resumes after the last saved bar.
        """
        meta = dict(meta)
        meta["market"] = self.source.market
        meta["coverage_start"] = str(coverage_start)
        if base is None:
            meta.setdefault("coverage_end", str(coverage_start - self.step))
        pages: list[pd.DataFrame] = []
        pending = 0
        count = 0
        expected = self._expected(start, end)
        saved = base

        def save(covered_to: pd.Timestamp | None) -> pd.DataFrame:
            merged = _merge(saved, _pages_to_frame(pages))
            if covered_to is not None:
                meta["coverage_end"] = str(covered_to)
            self.cache.write(key, merged, meta)
            return merged

        try:
            for page in self.source.fetch(key.symbol, self.interval, start, end):
                pages.append(page)
                pending += len(page)
                count += len(page)
                if self.progress:
                    self.progress(key.symbol, count, expected)
                if pending >= self.checkpoint_rows:
                    saved = save(pd.Timestamp(page["date"].iloc[-1]))
                    pages, pending = [], 0
        except DataError:
            if pages or count:
                last = pages[-1]["date"].iloc[-1] if pages else None
                self._record(meta, start, last, count, "partial", key.symbol)
                save(None if last is None else pd.Timestamp(last))
                log.warning(
                    "%s: saved %d bars fetched before the failure; rerun to resume",
                    key,
                    count,
                )
            raise
        if base is None and count == 0:
            raise DataError(
                f"no bars for {key.symbol} from {self.source.name} between "
                f"{start.date()} and {end.date()}",
                "check the symbol and the dates (the symbol may not have traded then)",
            )
        self._record(meta, start, end, count, mode, key.symbol)
        merged = save(end)
        new_rows = len(merged) - (0 if base is None else len(base))
        return self._result(key, merged, new_rows, mode)

    def _expected(self, start: pd.Timestamp, end: pd.Timestamp) -> int | None:
        if self.source.market != "crypto":
            return None
        return max(int((end - start) / self.step) + 1, 1)

    def _record(
        self,
        meta: dict,
        start: pd.Timestamp,
        end: object,
        rows: int,
        mode: str,
        symbol: str,
    ) -> None:
        fetched_at = str(self.source.now())
        meta.setdefault("created", fetched_at)
        meta["updated"] = fetched_at
        record = {
            "fetched_at": fetched_at,
            "mode": mode,
            "start": str(start),
            "end": None if end is None else str(end),
            "rows": int(rows),
            **self.source.provenance(symbol),
        }
        meta["fetches"] = [*meta.get("fetches", []), record][-MAX_FETCH_RECORDS:]

    def _result(
        self, key: EntryKey, frame: pd.DataFrame, new_rows: int, mode: str
    ) -> UpdateResult:
        first = None if frame.empty else str(frame["date"].iloc[0])
        last = None if frame.empty else str(frame["date"].iloc[-1])
        return UpdateResult(
            key.symbol, self.cache.path(key), new_rows, len(frame), mode, first, last
        )


def update_cache(
    source: Source,
    symbols: Sequence[str],
    interval: str,
    *,
    start: object = None,
    end: object = None,
    cache: Cache | None = None,
    progress: ProgressCallback | None = None,
    on_symbol_done: Callable[[UpdateResult | None], None] | None = None,
    checkpoint_rows: int = 100_000,
) -> list[UpdateResult]:
    """Download into the cache what it lacks for each symbol between two dates.

    A symbol not cached yet is fetched from ``start``. A cached one is extended
    backwards when ``start`` is earlier than what was fetched before, and forwards
    from its last bar up to ``end`` (default: now). Unfinished bars are never
    stored. A corrupt cache file is reported in the log and fetched again.

    :param start: first date (inclusive); needed for symbols not cached yet.
    :param end: last date (inclusive; a date covers its whole day); default now.
    :param progress: called after each page with the symbol, the bars fetched so
        far and the expected count (None when unknown).
    :param on_symbol_done: called after each symbol with its result (None when
        it failed).
    :param checkpoint_rows: rows fetched between two saves of a long download.
    :raises DataError: one line naming every symbol that failed; the others are
        cached. A rate limit or network failure that outlasts the retries stops
        the download at once, after saving what was fetched.
    """
    if not symbols:
        raise DataError("no symbols to download", "name at least one symbol or pool")
    cache = cache or Cache()
    start_ts = utc_timestamp(start)
    end_ts = utc_timestamp(end)
    if end_ts is not None and isinstance(end, str) and len(end.strip()) <= 10:
        end_ts = end_ts + pd.Timedelta(days=1) - pd.Timedelta(1, "ns")
    if start_ts is not None and end_ts is not None and start_ts > end_ts:
        raise DataError(
            f"start {start} is after end {end}", "swap or correct the dates"
        )
    source.check(symbols, interval)
    updater = _Updater(source, cache, interval, progress, checkpoint_rows)
    results, failures = [], []
    for symbol in symbols:
        result = None
        try:
            result = updater.run(symbol, start_ts, end_ts)
            results.append(result)
        except SourceUnavailableError:
            raise
        except DataError as exc:
            log.warning("%s: %s", symbol, exc)
            failures.append((symbol, exc))
        if on_symbol_done:
            on_symbol_done(result)
    if len(failures) == 1 and len(symbols) == 1:
        raise failures[0][1]
    if failures:
        listed = "; ".join(f"{symbol}: {exc.message}" for symbol, exc in failures)
        hint = (
            "fix or remove those symbols; the others are cached"
            if results
            else "check the symbols and the network connection; nothing was cached"
        )
        raise DataError(
            f"download failed for {len(failures)} of {len(symbols)} symbols ({listed})",
            hint,
        )
    return results


def load_cached(
    source_name: str,
    symbols: Sequence[str],
    interval: str,
    *,
    cache: Cache | None = None,
    start: object = None,
    end: object = None,
) -> tuple[Panel, np.ndarray]:
    """Build a panel from cached entries, without any network access.

    :param source_name: the cache source, such as ``yahoo`` or ``ccxt/binance``.
    :returns: the panel (every symbol kept, masked where it has no bar) and a bool
        [T, N] array that is True at filled crypto candles.
    :raises DataError: an entry is missing or corrupt, or the dates hold no bar.
    """
    cache = cache or Cache()
    frames: dict[str, pd.DataFrame] = {}
    market = None
    missing = []
    for symbol in symbols:
        key = EntryKey(source_name, interval, symbol)
        entry = cache.read(key)
        if entry is None:
            missing.append(symbol)
            continue
        frame, meta = entry
        market = meta.get("market", "equity")
        frames[symbol] = prepare_bars(
            frame, interval=interval, market=market, where=str(key)
        )
    if missing:
        raise DataError(
            f"not in the cache {cache.root}: {source_name}/{interval}/"
            f"{', '.join(missing)}",
            "download them first with 'finrl-lab data download'",
        )
    panel, filled = long_to_panel(
        frames,
        interval=interval,
        market=market or "equity",
        source=f"cache:{source_name}/{interval}",
    )
    if start is not None or end is not None:
        rows = panel.slice_positions(start, end)
        panel = panel.between(start, end)
        filled = filled[rows]
    return panel, filled


def get_panel(
    source: Source,
    symbols: Sequence[str],
    interval: str,
    *,
    start: object = None,
    end: object = None,
    cache: Cache | None = None,
    progress: ProgressCallback | None = None,
) -> Panel:
    """Update the cache for ``symbols`` and return them as a panel.

    See :func:`update_cache` for the download and :func:`load_cached` for the
    cleaning. The panel covers ``start`` .. ``end`` of the cached bars.
    """
    cache = cache or Cache()
    update_cache(
        source, symbols, interval, start=start, end=end, cache=cache, progress=progress
    )
    panel, _ = load_cached(
        source.name, symbols, interval, cache=cache, start=start, end=end
    )
    return panel


# -- cache references: how --data names cached entries ----------------------------

CACHE_PREFIX = "cache:"


@dataclass(frozen=True)
class CacheReference:
    """A named set of cache entries, written ``cache:SOURCE/INTERVAL[/SELECTION]``.

    ``SOURCE`` is ``yahoo`` or ``ccxt/<exchange>``. ``SELECTION`` is a pool name
    or comma-separated symbols (for Yahoo anything ``--pool`` accepts); without
    it every symbol cached under that source and interval is used. Examples:
    ``cache:yahoo/1d/dj30``, ``cache:yahoo/1d/AAPL,MSFT``,
    ``cache:ccxt/binance/1m/BTC/USDT``, ``cache:ccxt/binance/1h/BTC/USDT,ETH/USDT``.
    """

    source: str
    interval: str
    selection: str | None

    def symbols(self, cache: Cache) -> list[str]:
        """Return the symbols the reference names.

        :raises DataError: nothing is cached under a reference without selection.
        :raises PoolError: the selection is not a known pool or ticker list.
        """
        if self.selection is None:
            symbols = cached_symbols(cache, self.source, self.interval)
            if not symbols:
                raise DataError(
                    f"nothing cached under {self.source}/{self.interval} in "
                    f"{cache.root}",
                    "download data first with 'finrl-lab data download'",
                )
            return symbols
        if self.source == "yahoo":
            from finrl_lab.data.pools import resolve_pool

            return list(resolve_pool(self.selection).tickers)
        return [s.strip() for s in self.selection.split(",") if s.strip()]

    def __str__(self) -> str:
        tail = f"/{self.selection}" if self.selection else ""
        return f"{CACHE_PREFIX}{self.source}/{self.interval}{tail}"


def parse_cache_reference(text: str) -> CacheReference:
    """Parse ``cache:SOURCE/INTERVAL[/SELECTION]`` (see :class:`CacheReference`).

    :raises DataError: the text does not follow that form.
    """
    body = text[len(CACHE_PREFIX) :] if text.startswith(CACHE_PREFIX) else text
    parts = body.split("/")
    usage = (
        "write cache:yahoo/INTERVAL/POOL_OR_TICKERS or "
        "cache:ccxt/EXCHANGE/INTERVAL/SYMBOLS, such as cache:yahoo/1d/dj30"
    )
    if parts[0] == "yahoo" and len(parts) >= 2:
        source, rest = "yahoo", parts[1:]
    elif parts[0] == "ccxt" and len(parts) >= 3 and parts[1]:
        source, rest = f"ccxt/{parts[1].lower()}", parts[2:]
    else:
        raise DataError(f"invalid cache reference {text!r}", usage)
    interval = rest[0]
    interval_seconds(interval)
    selection = "/".join(rest[1:]).strip() or None
    return CacheReference(source, interval, selection)


def cached_symbols(cache: Cache, source: str, interval: str) -> list[str]:
    """Return the symbols cached under a source and interval, from file metadata."""
    from finrl_lab.data.cache import read_metadata

    symbols = []
    for path in cache.entries(source, interval):
        if path.parent.name != interval:
            continue
        symbols.append(read_metadata(path).get("symbol", path.stem))
    return symbols


def load_cache_reference(
    text: str, *, cache: Cache | None = None
) -> tuple[Panel, np.ndarray]:
    """Load the panel a ``cache:...`` reference names, with its filled-candle mask.

    :raises DataError: invalid reference, or entries missing or corrupt.
    """
    cache = cache or Cache()
    reference = parse_cache_reference(text)
    panel, filled = load_cached(
        reference.source, reference.symbols(cache), reference.interval, cache=cache
    )
    return panel, filled
