"""On-disk cache of downloaded bars: one parquet file per source, interval and symbol.

Layout under the cache folder::

    <root>/yahoo/1d/AAPL.parquet
    <root>/ccxt/binance/1m/BTC-USDT.parquet

The folder is, in order of precedence, the ``--cache-dir`` option, the
``FINRL_LAB_CACHE_DIR`` environment variable, or the per-user cache folder
(``~/.cache/finrl-lab`` on Linux, as :func:`platformdirs.user_cache_dir` gives).

Each file contains the raw bars as the source delivered them (for Yahoo: close,
adjusted close, dividends and splits; cleaning and adjustment happen on read)
and a JSON metadata record in the parquet schema, so data and metadata are
replaced together by one atomic rename. Pages carry CRC checksums. A file that
cannot be read, fails its checksums or does not match its metadata raises
:class:`CorruptCacheError`; it is never trusted.
"""

from __future__ import annotations

import json
import logging
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from finrl_lab.errors import DataError
from finrl_lab.io import atomic_path

log = logging.getLogger(__name__)

CACHE_ENV_VAR = "FINRL_LAB_CACHE_DIR"
METADATA_KEY = b"finrl_lab"
FORMAT_VERSION = 1
_UNSAFE = re.compile(r"[^A-Za-z0-9._^=-]")


class CorruptCacheError(DataError):
    """A cache file that cannot be read or whose content is inconsistent."""


def default_cache_dir() -> Path:
    """Return the per-user cache folder, such as ``~/.cache/finrl-lab`` on Linux."""
    try:
        from platformdirs import user_cache_dir
    except ImportError:  # platformdirs comes with yfinance; fall back if absent
        return Path.home() / ".cache" / "finrl-lab"
    return Path(user_cache_dir("finrl-lab", appauthor=False))


def cache_dir(override: str | Path | None = None) -> Path:
    """Return the cache folder: ``override``, else the environment variable, else
    the per-user default."""
    if override:
        return Path(override).expanduser()
    from_env = os.environ.get(CACHE_ENV_VAR)
    if from_env:
        return Path(from_env).expanduser()
    return default_cache_dir()


def symbol_filename(symbol: str) -> str:
    """Return a file-name-safe symbol: ``BTC-USDT_USDT`` for ``BTC/USDT:USDT``."""
    return _UNSAFE.sub("_", symbol.replace("/", "-"))


@dataclass(frozen=True)
class EntryKey:
    """One cached series: the source (``yahoo`` or ``ccxt/<exchange>``), the bar
    interval and the symbol as the source spells it."""

    source: str
    interval: str
    symbol: str

    def relative_path(self) -> Path:
        return Path(
            *self.source.split("/"), self.interval, symbol_filename(self.symbol)
        )

    def __str__(self) -> str:
        return f"{self.source}/{self.interval}/{self.symbol}"


class Cache:
    """The cache folder; reads and atomically writes entries.

    :param root: the folder; None applies :func:`cache_dir`'s precedence.
    """

    def __init__(self, root: str | Path | None = None) -> None:
        self.root = cache_dir(root)

    def path(self, key: EntryKey) -> Path:
        """Return the parquet file of an entry."""
        return self.root / key.relative_path().with_suffix(".parquet")

    def exists(self, key: EntryKey) -> bool:
        return self.path(key).is_file()

    def read(self, key: EntryKey) -> tuple[pd.DataFrame, dict[str, Any]] | None:
        """Return an entry's bars and metadata, or None when it is not cached.

        :raises CorruptCacheError: the file exists but cannot be trusted.
        """
        path = self.path(key)
        if not path.is_file():
            return None
        return read_entry_file(path)

    def write(
        self, key: EntryKey, frame: pd.DataFrame, metadata: dict[str, Any]
    ) -> Path:
        """Write bars and metadata to an entry, replacing it atomically.

        ``rows``, ``first`` and ``last`` are set in the metadata from ``frame``.
        """
        path = self.path(key)
        meta = dict(metadata)
        meta.update(
            format_version=FORMAT_VERSION,
            source=key.source,
            interval=key.interval,
            symbol=key.symbol,
            rows=len(frame),
            first=None if frame.empty else str(frame["date"].iloc[0]),
            last=None if frame.empty else str(frame["date"].iloc[-1]),
        )
        table = pa.Table.from_pandas(frame.reset_index(drop=True), preserve_index=False)
        schema_meta = dict(table.schema.metadata or {})
        schema_meta[METADATA_KEY] = json.dumps(meta, default=str).encode()
        table = table.replace_schema_metadata(schema_meta)
        with atomic_path(path) as tmp:
            pq.write_table(table, tmp, write_page_checksum=True)
        log.debug("wrote %d rows to %s", len(frame), path)
        return path

    def entries(
        self, source: str | None = None, interval: str | None = None
    ) -> list[Path]:
        """Return the cached parquet files, optionally under one source and interval."""
        base = self.root
        if source:
            base = base.joinpath(*source.split("/"))
            if interval:
                base = base / interval
        if not base.is_dir():
            return []
        return sorted(p for p in base.rglob("*.parquet") if not p.name.startswith("."))


def read_entry_file(path: str | Path) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Read a cache file and check it against its metadata.

    :raises CorruptCacheError: unreadable, failed checksums, missing metadata,
        or bars that are unsorted, duplicated or fewer than recorded.
    """
    path = Path(path)

    def corrupt(reason: str) -> CorruptCacheError:
        return CorruptCacheError(
            f"cache file {path} is corrupt ({reason})",
            "download it again with 'finrl-lab data download', which replaces it, "
            "or delete the file",
        )

    try:
        table = pq.read_table(path, page_checksum_verification=True)
    except (OSError, pa.ArrowException, ValueError) as exc:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise corrupt(reason) from None
    raw_meta = (table.schema.metadata or {}).get(METADATA_KEY)
    if raw_meta is None:
        raise corrupt("no finrl_lab metadata")
    try:
        meta = json.loads(raw_meta)
    except ValueError as exc:
        raise corrupt(f"unreadable metadata: {exc}") from None
    try:
        frame = table.to_pandas()
    except (pa.ArrowException, ValueError) as exc:
        raise corrupt(str(exc)) from None
    for column in ("date", "close"):
        if column not in frame.columns:
            raise corrupt(f"no {column!r} column")
    if len(frame) != meta.get("rows"):
        raise corrupt(f"{len(frame)} rows, metadata records {meta.get('rows')}")
    dates = pd.DatetimeIndex(frame["date"])
    if dates.tz is None:
        raise corrupt("dates without a time zone")
    if not dates.is_monotonic_increasing or dates.has_duplicates:
        raise corrupt("dates not sorted and unique")
    return frame, meta


def read_metadata(path: str | Path) -> dict[str, Any]:
    """Return the metadata record of a cache file without loading its bars.

    :raises CorruptCacheError: the file's footer or metadata cannot be read.
    """
    try:
        schema = pq.read_schema(path)
        return json.loads((schema.metadata or {})[METADATA_KEY])
    except (OSError, pa.ArrowException, KeyError, ValueError) as exc:
        raise CorruptCacheError(
            f"cache file {path} is corrupt ({type(exc).__name__}: {exc})",
            "download it again with 'finrl-lab data download', or delete the file",
        ) from None
