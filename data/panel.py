"""The panel: the one in-memory form of market data in finrl_lab.

A :class:`Panel` contains sorted unique UTC timestamps, tickers, fields and a float
array ``values[time, asset, field]`` with an availability mask ``available[time,
asset]``. A ticker that is not yet listed, delisted or missing a bar stays in the
panel with ``available`` False there; it is never dropped or filled from the future.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from finrl_lab.errors import DataError, PoolError

PRICE_FIELDS = ("open", "high", "low", "close")
KNOWN_FIELDS = (*PRICE_FIELDS, "volume")

# Trading periods per year by market; intraday bars multiply by bars per day.
TRADING_DAYS = {"equity": 252, "crypto": 365}
EQUITY_HOURS_PER_DAY = 6.5


def interval_seconds(interval: str) -> float:
    """Return the length of a bar interval such as ``1m``, ``4h``, ``1d``, ``1w``."""
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
    text = interval.strip().lower()
    if (
        len(text) < 2
        or text[-1] not in units
        or not text[:-1].isdigit()
        or int(text[:-1]) == 0
    ):
        raise DataError(
            f"invalid bar interval {interval!r}",
            "use a count and a unit such as 1m, 5m, 1h, 1d or 1w",
        )
    return int(text[:-1]) * units[text[-1]]


def periods_per_year(interval: str, market: str) -> float:
    """Return bars per year: 252 trading days for equities, 365 for crypto.

    Intraday equity bars assume a 6.5-hour session; crypto trades 24 hours.
    """
    if market not in TRADING_DAYS:
        raise DataError(f"unknown market {market!r}", "use 'equity' or 'crypto'")
    seconds = interval_seconds(interval)
    days = TRADING_DAYS[market]
    if seconds >= 86400:
        return days * 86400 / seconds
    hours_per_day = EQUITY_HOURS_PER_DAY if market == "equity" else 24.0
    return days * hours_per_day * 3600 / seconds


def _to_utc_index(values: Sequence | pd.Index) -> pd.DatetimeIndex:
    index = pd.DatetimeIndex(pd.to_datetime(values, utc=True))
    return index.as_unit("ns")


@dataclass(frozen=True, eq=False)
class Panel:
    """Market data as ``values[time, asset, field]`` plus an availability mask.

    :param timestamps: sorted, unique, UTC bar times (the bar's start for intraday,
        the trading date at midnight UTC for daily bars).
    :param tickers: asset names, one per column of ``values``.
    :param fields: field names; ``close`` is required, ``open``, ``high``, ``low``
        and ``volume`` are optional. Prices are adjusted where the source adjusts.
    :param values: float64 array of shape [T, N, F]; NaN where not available.
    :param available: bool array of shape [T, N]; True where the asset has a bar.
    :param interval: bar size, such as ``1d`` or ``1m``.
    :param market: ``equity`` or ``crypto``; sets the periods per year.
    :param source: where the data came from, for run records.
    """

    timestamps: pd.DatetimeIndex
    tickers: tuple[str, ...]
    fields: tuple[str, ...]
    values: np.ndarray
    available: np.ndarray
    interval: str = "1d"
    market: str = "equity"
    source: str = ""
    _field_index: dict[str, int] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "timestamps", _to_utc_index(self.timestamps))
        object.__setattr__(self, "tickers", tuple(str(t) for t in self.tickers))
        object.__setattr__(self, "fields", tuple(self.fields))
        object.__setattr__(
            self, "_field_index", {f: i for i, f in enumerate(self.fields)}
        )
        t, n, f = len(self.timestamps), len(self.tickers), len(self.fields)
        if self.values.shape != (t, n, f):
            raise ValueError(f"values shape {self.values.shape} != {(t, n, f)}")
        if self.available.shape != (t, n):
            raise ValueError(f"available shape {self.available.shape} != {(t, n)}")
        if "close" not in self._field_index:
            raise DataError(
                f"no close prices in {self.source or 'the dataset'}",
                "provide a 'close' (or 'adj close') column",
            )
        if len(set(self.tickers)) != n:
            dupes = sorted({x for x in self.tickers if self.tickers.count(x) > 1})
            raise DataError(f"duplicated tickers {dupes} in {self.source or 'panel'}")
        interval_seconds(self.interval)
        periods_per_year(self.interval, self.market)
        self._check_timestamps()
        self._check_prices()

    def _check_timestamps(self) -> None:
        ts = self.timestamps
        where = self.source or "the dataset"
        if ts.has_duplicates:
            dup = ts[ts.duplicated()][0]
            raise DataError(
                f"duplicated timestamp {dup.isoformat()} in {where}",
                "keep one row per date and ticker",
            )
        if not ts.is_monotonic_increasing:
            pos = int(np.flatnonzero(np.diff(ts.asi8) < 0)[0])
            raise DataError(
                f"dates out of order in {where}: {ts[pos].isoformat()} is followed "
                f"by {ts[pos + 1].isoformat()}",
                "sort the file by date",
            )

    def _check_prices(self) -> None:
        where = self.source or "the dataset"
        for name in self.fields:
            data = self.values[:, :, self._field_index[name]]
            if name == "close":
                bad = self.available & ~(np.isfinite(data) & (data > 0))
                problem = "NaN, zero or negative"
            elif name in PRICE_FIELDS:
                # Open, high and low may be missing (NaN) where close is valid.
                bad = self.available & (data <= 0)
                problem = "zero or negative"
            elif name == "volume":
                bad = self.available & ~(np.isfinite(data) & (data >= 0))
                problem = "NaN or negative"
            else:
                bad = self.available & ~np.isfinite(data)
                problem = "NaN"
            if bad.any():
                ti, ai = np.argwhere(bad)[0]
                raise DataError(
                    f"{problem} {name} {float(data[ti, ai])!r} for "
                    f"{self.tickers[ai]} on {self.timestamps[ti].date()} in {where}",
                    "fix or drop that row; a missing row is treated as a gap",
                )

    # -- access ---------------------------------------------------------------

    def __len__(self) -> int:
        return len(self.timestamps)

    @property
    def n_assets(self) -> int:
        return len(self.tickers)

    @property
    def periods_per_year(self) -> float:
        return periods_per_year(self.interval, self.market)

    def has_field(self, name: str) -> bool:
        return name in self._field_index

    def field(self, name: str) -> np.ndarray:
        """Return one field as a [T, N] view; NaN where not available."""
        if name not in self._field_index:
            raise DataError(
                f"field {name!r} not in {self.source or 'the dataset'} "
                f"(it has {', '.join(self.fields)})",
                "choose a feature set that uses only these fields",
            )
        return self.values[:, :, self._field_index[name]]

    @property
    def close(self) -> np.ndarray:
        return self.field("close")

    def filled_close(self) -> np.ndarray:
        """Return close prices carried forward over gaps, never backwards.

        Before an asset's first bar the value stays NaN.
        """
        frame = pd.DataFrame(self.close)
        return frame.ffill().to_numpy()

    def ticker_positions(self, tickers: Sequence[str]) -> np.ndarray:
        """Return the column of each ticker; raise :class:`PoolError` if unknown.

        Matching ignores case unless the dataset has two tickers that differ only
        in case.
        """
        lookup = {t: i for i, t in enumerate(self.tickers)}
        folded = {t.upper(): i for i, t in enumerate(self.tickers)}
        if len(folded) == len(lookup):
            lookup = {**folded, **lookup}
            tickers = [t if t in lookup else t.upper() for t in tickers]
        missing = [t for t in tickers if t not in lookup]
        if missing:
            raise PoolError(
                f"ticker(s) {', '.join(missing)} not in {self.source or 'the dataset'}",
                f"the dataset has: {', '.join(self.tickers)}",
            )
        return np.array([lookup[t] for t in tickers], dtype=np.int64)

    def canonical_tickers(self, tickers: Sequence[str]) -> tuple[str, ...]:
        """Return the dataset's spelling of each ticker (matching ignores case)."""
        return tuple(self.tickers[i] for i in self.ticker_positions(tickers))

    def select(self, tickers: Sequence[str]) -> Panel:
        """Return a panel with only ``tickers``, in that order."""
        cols = self.ticker_positions(tickers)
        return self._replace(
            tickers=tuple(self.tickers[i] for i in cols),
            values=self.values[:, cols],
            available=self.available[:, cols],
        )

    def date_range_error(self, start: object, end: object) -> DataError:
        first, last = self.timestamps[0], self.timestamps[-1]
        start = first.date() if start is None else start
        end = last.date() if end is None else end
        return DataError(
            f"no bars between {start} and {end} in {self.source or 'the dataset'}",
            f"choose dates within {first.date()} .. {last.date()}",
        )

    def slice_positions(self, start: object = None, end: object = None) -> slice:
        """Return the row slice of bars with ``start <= timestamp <= end``."""
        lo, hi = 0, len(self)
        try:
            if start is not None:
                lo = int(self.timestamps.searchsorted(_to_timestamp(start), "left"))
            if end is not None:
                end_ts = _to_timestamp(end)
                if _is_date_only(end):
                    end_ts = end_ts + pd.Timedelta(days=1) - pd.Timedelta(1, "ns")
                hi = int(self.timestamps.searchsorted(end_ts, "right"))
        except (ValueError, TypeError) as exc:
            raise DataError(
                f"invalid date {start!r} or {end!r}: {exc}",
                "use YYYY-MM-DD, such as 2020-01-31",
            ) from None
        if start is not None and end is not None:
            if _to_timestamp(start) > _to_timestamp(end):
                raise DataError(
                    f"start {start} is after end {end}", "swap or correct the dates"
                )
        if hi <= lo:
            raise self.date_range_error(start, end)
        return slice(lo, hi)

    def between(self, start: object = None, end: object = None) -> Panel:
        """Return the bars with ``start <= timestamp <= end`` (dates inclusive)."""
        rows = self.slice_positions(start, end)
        return self._replace(
            timestamps=self.timestamps[rows],
            values=self.values[rows],
            available=self.available[rows],
        )

    def _replace(self, **changes: object) -> Panel:
        kwargs = {
            "timestamps": self.timestamps,
            "tickers": self.tickers,
            "fields": self.fields,
            "values": self.values,
            "available": self.available,
            "interval": self.interval,
            "market": self.market,
            "source": self.source,
        }
        kwargs.update(changes)
        return Panel(**kwargs)

    # -- conversion -----------------------------------------------------------

    @classmethod
    def from_long(
        cls,
        frame: pd.DataFrame,
        *,
        interval: str = "1d",
        market: str = "equity",
        source: str = "",
        sort_dates: bool = False,
    ) -> Panel:
        """Build a panel from long rows with ``date``, ``ticker`` and field columns.

        A row that exists must carry valid prices; a (date, ticker) pair with no row
        is a gap and is marked unavailable. Rows out of date order are rejected
        unless ``sort_dates`` is True (for exports written newest first).
        """
        where = source or "the dataset"
        for col in ("date", "ticker", "close"):
            if col not in frame.columns:
                raise DataError(
                    f"missing column {col!r} in {where} (columns: "
                    f"{', '.join(map(str, frame.columns))})",
                    "long data needs date, ticker and close columns",
                )
        fields = [f for f in KNOWN_FIELDS if f in frame.columns]
        frame = frame.loc[:, ["date", "ticker", *fields]].copy()
        frame["date"] = _parse_dates(
            frame["date"], where, daily=interval_seconds(interval) >= 86400
        )
        frame["ticker"] = frame["ticker"].astype(str)
        if sort_dates:
            frame = frame.sort_values("date", kind="stable")
        dupes = frame.duplicated(["date", "ticker"])
        if dupes.any():
            row = frame.loc[dupes].iloc[0]
            raise DataError(
                f"duplicated timestamp {row['date'].isoformat()} for {row['ticker']} "
                f"in {where}",
                "keep one row per date and ticker",
            )
        for ticker, dates in frame.groupby("ticker", sort=False)["date"]:
            if not dates.is_monotonic_increasing:
                arr = dates.to_numpy()
                pos = int(np.flatnonzero(arr[1:] < arr[:-1])[0])
                raise DataError(
                    f"dates out of order for {ticker} in {where}: "
                    f"{pd.Timestamp(arr[pos]).isoformat()} is followed by "
                    f"{pd.Timestamp(arr[pos + 1]).isoformat()}",
                    "sort the file by date",
                )
        tickers = list(dict.fromkeys(frame["ticker"]))
        timestamps = _to_utc_index(np.unique(frame["date"].to_numpy()))
        t_pos = timestamps.get_indexer(_to_utc_index(frame["date"]))
        a_pos = pd.Index(tickers).get_indexer(frame["ticker"])
        numeric = _numeric_fields(frame, fields, where)
        values = np.full((len(timestamps), len(tickers), len(fields)), np.nan)
        values[t_pos, a_pos] = numeric
        available = np.zeros((len(timestamps), len(tickers)), dtype=bool)
        available[t_pos, a_pos] = True
        return cls(
            timestamps,
            tuple(tickers),
            tuple(fields),
            values,
            available,
            interval=interval,
            market=market,
            source=source,
        )

    @classmethod
    def from_wide(
        cls,
        frame: pd.DataFrame,
        *,
        field_name: str = "close",
        interval: str = "1d",
        market: str = "equity",
        source: str = "",
    ) -> Panel:
        """Build a one-field panel from a frame indexed by date, one column a ticker.

        Leading NaNs (not yet listed) and trailing NaNs (delisted) mark the asset
        unavailable. A NaN between two prices is rejected, because a wide file cannot
        tell a missing bar from a broken one.
        """
        where = source or "the dataset"
        daily = interval_seconds(interval) >= 86400
        index = pd.Index(_parse_dates(pd.Series(frame.index), where, daily=daily))
        if index.has_duplicates:
            dup = index[index.duplicated()][0]
            raise DataError(
                f"duplicated timestamp {dup.isoformat()} in {where}",
                "keep one row per date",
            )
        if not index.is_monotonic_increasing:
            arr = index.to_numpy()
            pos = int(np.flatnonzero(arr[1:] < arr[:-1])[0])
            raise DataError(
                f"dates out of order in {where}: {pd.Timestamp(arr[pos]).isoformat()} "
                f"is followed by {pd.Timestamp(arr[pos + 1]).isoformat()}",
                "sort the file by date",
            )
        data = frame.apply(pd.to_numeric, errors="coerce").to_numpy(dtype=np.float64)
        raw = frame.to_numpy()
        finite = np.isfinite(data)
        non_numeric = ~finite & pd.notna(raw)
        if non_numeric.any():
            ti, ai = np.argwhere(non_numeric)[0]
            raise DataError(
                f"non-numeric {field_name} {raw[ti, ai]!r} for {frame.columns[ai]} on "
                f"{index[ti].date()} in {where}",
                "fix or drop that row",
            )
        seen_before = np.maximum.accumulate(finite, axis=0)
        seen_after = np.maximum.accumulate(finite[::-1], axis=0)[::-1]
        listed = seen_before & seen_after
        interior_nan = listed & ~finite
        if interior_nan.any():
            ti, ai = np.argwhere(interior_nan)[0]
            raise DataError(
                f"NaN {field_name} for {frame.columns[ai]} on {index[ti].date()} in "
                f"{where}, between two valid prices",
                "fill or drop that date in the file, or load it in long format "
                "where a missing row is a gap",
            )
        return cls(
            index,
            tuple(map(str, frame.columns)),
            (field_name,),
            data[:, :, None],
            finite,
            interval=interval,
            market=market,
            source=source,
        )

    def to_long(self) -> pd.DataFrame:
        """Return the available bars as long rows: date, ticker and the fields."""
        t_idx, a_idx = np.nonzero(self.available)
        out = pd.DataFrame(
            {
                "date": self.timestamps[t_idx],
                "ticker": np.asarray(self.tickers, dtype=object)[a_idx],
            }
        )
        for i, name in enumerate(self.fields):
            out[name] = self.values[t_idx, a_idx, i]
        return out

    def describe(self) -> dict:
        """Return a summary: tickers, dates, fields and gaps per ticker."""
        per_ticker = []
        for i, ticker in enumerate(self.tickers):
            rows = np.flatnonzero(self.available[:, i])
            if len(rows) == 0:
                per_ticker.append({"ticker": ticker, "bars": 0})
                continue
            span = rows[-1] - rows[0] + 1
            per_ticker.append(
                {
                    "ticker": ticker,
                    "first": str(self.timestamps[rows[0]].date()),
                    "last": str(self.timestamps[rows[-1]].date()),
                    "bars": int(len(rows)),
                    "gaps": int(span - len(rows)),
                }
            )
        return {
            "source": self.source,
            "interval": self.interval,
            "market": self.market,
            "bars": len(self),
            "start": str(self.timestamps[0]),
            "end": str(self.timestamps[-1]),
            "fields": list(self.fields),
            "tickers": per_ticker,
        }


def _numeric_fields(frame: pd.DataFrame, fields: list[str], where: str) -> np.ndarray:
    """Return the field columns as float64, rejecting text such as ``abc``."""
    out = np.empty((len(frame), len(fields)))
    for i, name in enumerate(fields):
        column = frame[name]
        converted = pd.to_numeric(column, errors="coerce")
        bad = converted.isna() & column.notna()
        if bad.any():
            row = frame.loc[bad].iloc[0]
            raise DataError(
                f"non-numeric {name} {row[name]!r} for {row['ticker']} on "
                f"{row['date'].date()} in {where}",
                "fix or drop that row",
            )
        out[:, i] = converted.to_numpy(dtype=np.float64)
    return out


_ISO_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}")


def _is_date_only(value: object) -> bool:
    return isinstance(value, str) and len(value.strip()) <= 10


def _to_timestamp(value: object) -> pd.Timestamp:
    if isinstance(value, str) and not _ISO_DATE.match(value.strip()):
        raise ValueError(f"{value!r} is not an ISO date")
    ts = pd.Timestamp(value)
    if ts.tzinfo is None:
        return ts.tz_localize("UTC")
    return ts.tz_convert("UTC")


def _parse_dates(values: pd.Series, where: str, daily: bool = False) -> pd.Series:
    """Parse dates to UTC; daily bars become their local trading date at 00:00 UTC.

    A daily bar stamped ``2020-01-02T00:00:00+09:00`` is the session of 2 January,
    whatever its offset, so files written in different time zones line up.
    """
    try:
        if daily:
            parsed = _trading_dates(values, where)
        else:
            parsed = pd.to_datetime(values, utc=True)
    except (ValueError, TypeError, OverflowError) as exc:
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        raise DataError(
            f"unreadable date in {where}: {first_line}",
            "use ISO dates such as 2020-01-31",
        ) from None
    if parsed.isna().any():
        pos = int(np.flatnonzero(parsed.isna().to_numpy())[0])
        raise DataError(
            f"missing date in row {pos} of {where}", "every row needs a date"
        )
    return parsed


def _trading_dates(values: pd.Series, where: str) -> pd.Series:
    if values.dtype == object or pd.api.types.is_string_dtype(values):
        text = values.astype(str).str.strip()
        if text.str.match(r"^\d{4}-\d{2}-\d{2}").all():
            _check_one_time_of_day(text.str[11:19], text, where)
            return pd.to_datetime(text.str[:10], format="%Y-%m-%d", utc=True)
    parsed = pd.to_datetime(values)
    if getattr(parsed.dt, "tz", None) is not None:
        parsed = parsed.dt.tz_localize(None)
    _check_one_time_of_day(parsed - parsed.dt.normalize(), parsed, where)
    return parsed.dt.normalize().dt.tz_localize("UTC")


def _check_one_time_of_day(clock: pd.Series, stamps: pd.Series, where: str) -> None:
    """Raise if daily bars carry more than one time of day: they are intraday."""
    if clock.nunique(dropna=False) > 1:
        changed = int(np.flatnonzero((clock != clock.iloc[0]).to_numpy())[0])
        raise DataError(
            f"bars in {where} are stamped at different times of day "
            f"({stamps.iloc[0]} and {stamps.iloc[changed]}), so they are not daily",
            "pass --interval with the bar size of the data, such as 1h or 1m",
        )


def check_pool_not_empty(tickers: Sequence[str], name: str) -> None:
    if len(tickers) == 0:
        raise PoolError(f"pool {name!r} is empty", "name at least one ticker")
