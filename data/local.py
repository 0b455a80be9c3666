"""Load market data from local files into a :class:`Panel`.

Three layouts are read:

- one file per ticker in a folder (``AAPL.csv.gz``, ``MSFT.parquet``, ...), with a
  date column and OHLCV columns; the file name is the ticker;
- one long file with ``date``, ``ticker`` and field columns;
- one wide file with a date column and one close-price column per ticker.

CSV (optionally gzip-compressed), parquet and feather files are accepted. When an
``Adj Close`` column is present, open, high, low and close are scaled by
``adj_close / close`` so that all four prices are adjusted the same way.
"""

from __future__ import annotations

import logging
from importlib import resources
from pathlib import Path

import numpy as np
import pandas as pd

from finrl_lab.data.panel import KNOWN_FIELDS, Panel, interval_seconds
from finrl_lab.errors import DataError

log = logging.getLogger(__name__)

BUNDLED_NAME = "sp500"
CACHE_PREFIX = "cache:"
TABLE_SUFFIXES = (".csv", ".csv.gz", ".parquet", ".feather")
_COLUMN_ALIASES = {
    "datetime": "date",
    "timestamp": "date",
    "time": "date",
    "symbol": "ticker",
    "tic": "ticker",
    "adjclose": "adj_close",
    "adj_close": "adj_close",
    "vol": "volume",
}
# Column names recognised case-insensitively; other columns (tickers in a wide
# file) keep their spelling.
_STANDARD_COLUMNS = {"date", "ticker", "adj_close", *KNOWN_FIELDS}


def bundled_path() -> Path:
    """Return the path of the bundled 20-stock S&P 500 close-price file."""
    ref = resources.files("finrl_lab.data") / "bundled" / "sp500_dataset.csv.gz"
    return Path(str(ref))


def load_bundled() -> Panel:
    """Load the bundled S&P 500 panel: 20 stocks, daily adjusted close, 1990-2022."""
    return load_panel(bundled_path(), source=f"bundled {BUNDLED_NAME} dataset")


def resolve_data(
    spec: str | Path | None,
    *,
    interval: str = "1d",
    market: str = "equity",
    cache_dir: str | Path | None = None,
    sort_dates: bool = False,
) -> Panel:
    """Load a dataset named on the command line.

    ``spec`` is ``sp500`` (the bundled data), a file or folder, or a cache
    reference ``cache:SOURCE/INTERVAL[/SELECTION]`` such as ``cache:yahoo/1d/dj30``
    or ``cache:ccxt/binance/1m/BTC/USDT`` (see
    :class:`finrl_lab.data.sources.CacheReference`). ``interval`` and ``market``
    describe a local file; the bundled data is daily equities, and a cache entry
    records its own. ``cache_dir`` overrides the cache folder.
    """
    if spec is None or str(spec) == BUNDLED_NAME:
        if (interval, market) != ("1d", "equity"):
            raise DataError(
                f"interval {interval!r} and market {market!r} do not apply to the "
                "bundled dataset, which holds daily US equities",
                "drop --interval and --market, or pass --data with your own file",
            )
        return load_bundled()
    if str(spec).startswith(CACHE_PREFIX):
        # Imported here: the cache modules import this one.
        from finrl_lab.data.cache import Cache
        from finrl_lab.data.sources import load_cache_reference

        panel, _ = load_cache_reference(str(spec), cache=Cache(cache_dir))
        return panel
    return load_panel(spec, interval=interval, market=market, sort_dates=sort_dates)


def table_stem(path: Path) -> str | None:
    """Return the ticker a per-ticker file names, or None for other files."""
    name = path.name
    for suffix in sorted(TABLE_SUFFIXES, key=len, reverse=True):
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return None


def read_table(path: Path) -> pd.DataFrame:
    """Read one CSV, parquet or feather file into a frame with normalised columns."""
    lower = path.name.lower()
    try:
        if lower.endswith(".parquet"):
            frame = pd.read_parquet(path)
        elif lower.endswith(".feather"):
            frame = pd.read_feather(path)
        elif lower.endswith((".csv", ".csv.gz")):
            frame = pd.read_csv(path)
        else:
            raise DataError(
                f"unsupported file type {path.name!r}",
                "use .csv, .csv.gz, .parquet or .feather",
            )
    except DataError:
        raise
    except (OSError, ValueError, pd.errors.ParserError) as exc:
        raise DataError(
            f"cannot read {path}: {exc}", "check the file is complete and not corrupt"
        ) from None
    if frame.empty:
        raise DataError(f"{path} has no rows", "point to a file with price data")
    frame = normalise_columns(frame, where=str(path))
    return frame


def normalise_columns(frame: pd.DataFrame, where: str = "the data") -> pd.DataFrame:
    """Lower-case column names, map common aliases, and apply adjusted close.

    Price and volume columns must be numeric: text such as ``abc`` raises
    :class:`DataError` naming the value and its row.
    """
    if "date" not in frame.columns and frame.index.name is not None:
        frame = frame.reset_index()
    renamed = {}
    for col in frame.columns:
        key = str(col).strip().lower().replace(" ", "_")
        key = _COLUMN_ALIASES.get(key, key)
        if key in _STANDARD_COLUMNS:
            renamed[col] = key
    frame = frame.rename(columns=renamed)
    _check_numeric(frame, where)
    frame = mark_missing_quotes(frame)
    if "adj_close" in frame.columns:
        frame = apply_adjusted_close(frame)
    return frame


def _check_numeric(frame: pd.DataFrame, where: str) -> None:
    for name in (*KNOWN_FIELDS, "adj_close"):
        if name not in frame.columns or pd.api.types.is_numeric_dtype(frame[name]):
            continue
        converted = pd.to_numeric(frame[name], errors="coerce")
        bad = converted.isna() & frame[name].notna()
        if bad.any():
            row = frame.loc[bad].iloc[0]
            date = f" on {row['date']}" if "date" in frame.columns else ""
            raise DataError(
                f"non-numeric {name} {row[name]!r}{date} in {where}",
                "fix or drop that row",
            )
        frame[name] = converted


def check_bar_spacing(panel: Panel, interval: str) -> Panel:
    """Reject data whose typical bar spacing disagrees with ``interval``.

    The median gap between bars must lie within 0.5 to 4 times the interval, which
    leaves room for weekends and holidays in daily data.
    """
    if len(panel) < 3:
        return panel
    gaps = np.diff(panel.timestamps.asi8) / 1e9
    median = float(np.median(gaps))
    expected = interval_seconds(interval)
    if not 0.5 <= median / expected <= 4.0:
        raise DataError(
            f"bars in {panel.source} are {_describe_seconds(median)} apart, but the "
            f"interval is {interval}",
            f"pass --interval {_interval_for(median)} (or fix the data)",
        )
    return panel


def _describe_seconds(seconds: float) -> str:
    for unit, size in (("days", 86400), ("hours", 3600), ("minutes", 60)):
        if seconds >= size:
            return f"{seconds / size:g} {unit}"
    return f"{seconds:g} seconds"


def _interval_for(seconds: float) -> str:
    for unit, size in (("w", 7 * 86400), ("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{round(seconds / size)}{unit}"
    return f"{round(seconds)}s"


def mark_missing_quotes(frame: pd.DataFrame) -> pd.DataFrame:
    """Replace zero open, high or low prices with NaN.

    Yahoo reports an open of 0 on old dates where only the close was recorded
    (CVX, JNJ and others before 1970). Close prices are never changed here.
    """
    out = frame
    for name in ("open", "high", "low"):
        if name in out.columns:
            zero = out[name] == 0
            if zero.any():
                if out is frame:
                    out = frame.copy()
                out.loc[zero, name] = np.nan
                log.debug("%d zero %s prices read as missing", int(zero.sum()), name)
    return out


def apply_adjusted_close(frame: pd.DataFrame) -> pd.DataFrame:
    """Scale open, high, low and close by ``adj_close / close``; drop adj_close."""
    out = frame.copy()
    if "close" in out.columns:
        factor = out["adj_close"] / out["close"]
        for name in ("open", "high", "low"):
            if name in out.columns:
                out[name] = out[name] * factor
    out["close"] = out["adj_close"]
    return out.drop(columns=["adj_close"])


def load_panel(
    path: str | Path,
    *,
    interval: str = "1d",
    market: str = "equity",
    source: str | None = None,
    sort_dates: bool = False,
) -> Panel:
    """Load a panel from a folder of per-ticker files or from one long or wide file.

    :param sort_dates: sort rows by date instead of rejecting rows out of order,
        for exports written newest first. Duplicated dates are still rejected.
    :raises DataError: the path is missing, unreadable or contains invalid prices.
    """
    target = Path(path).expanduser()
    where = source or str(target)
    if not target.exists():
        raise DataError(
            f"data path {str(path)!r} does not exist",
            f"pass an existing file or folder, or '{BUNDLED_NAME}' for the bundled "
            "dataset",
        )
    if target.is_dir():
        panel = _load_folder(
            target,
            interval=interval,
            market=market,
            source=where,
            sort_dates=sort_dates,
        )
        return check_bar_spacing(panel, interval)
    frame = read_table(target)
    if "ticker" in frame.columns:
        panel = Panel.from_long(
            frame,
            interval=interval,
            market=market,
            source=where,
            sort_dates=sort_dates,
        )
        return check_bar_spacing(panel, interval)
    if "date" not in frame.columns:
        raise DataError(
            f"no date column in {target} "
            f"(columns: {', '.join(map(str, frame.columns))})",
            "name the first column 'date'",
        )
    ohlcv = [c for c in frame.columns if c in KNOWN_FIELDS]
    if ohlcv:
        # One ticker's OHLCV in one file: the file name is the ticker.
        frame = frame.assign(ticker=table_stem(target) or target.stem)
        panel = Panel.from_long(
            frame,
            interval=interval,
            market=market,
            source=where,
            sort_dates=sort_dates,
        )
        return check_bar_spacing(panel, interval)
    wide = frame.set_index("date")
    if sort_dates:
        wide = wide.sort_index(kind="stable")
    panel = Panel.from_wide(wide, interval=interval, market=market, source=where)
    return check_bar_spacing(panel, interval)


def _load_folder(
    folder: Path, *, interval: str, market: str, source: str, sort_dates: bool = False
) -> Panel:
    files = sorted(p for p in folder.iterdir() if p.is_file() and table_stem(p))
    if not files:
        raise DataError(
            f"no .csv, .csv.gz, .parquet or .feather files in {folder}",
            "put one file per ticker in the folder",
        )
    frames = []
    for file in files:
        frame = read_table(file)
        if "date" not in frame.columns or "close" not in frame.columns:
            raise DataError(
                f"{file} lacks a date or close column (columns: "
                f"{', '.join(map(str, frame.columns))})",
                "each per-ticker file needs Date and Close columns",
            )
        keep = ["date", *[f for f in KNOWN_FIELDS if f in frame.columns]]
        frames.append(frame.loc[:, keep].assign(ticker=table_stem(file)))
    fields = set.intersection(*(set(f.columns) for f in frames))
    long = pd.concat(
        [f.loc[:, [c for c in f.columns if c in fields]] for f in frames],
        ignore_index=True,
    )
    panel = Panel.from_long(
        long, interval=interval, market=market, source=source, sort_dates=sort_dates
    )
    log.info("loaded %d tickers, %d bars from %s", panel.n_assets, len(panel), folder)
    return panel


def common_start(panel: Panel) -> int:
    """Return the first row where every ticker is available, or raise."""
    rows = np.flatnonzero(panel.available.all(axis=1))
    if len(rows) == 0:
        raise DataError(
            f"the tickers of {panel.source} never all trade on the same day",
            "pick a smaller pool",
        )
    return int(rows[0])
