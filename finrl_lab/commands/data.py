"""``finrl-lab data``: download market data into the cache and describe datasets.

- ``data download --source yahoo --pool dj30 --start 2008-01-01 --end 2022-12-31``
- ``data download --source ccxt --exchange binance --symbol BTC/USDT --timeframe 1m
  --since 2024-01-01``
- ``data info cache:yahoo/1d/dj30`` or ``data info path/to/file.parquet``

Downloads go to the cache folder (``--cache-dir``, else ``$FINRL_LAB_CACHE_DIR``,
else the per-user cache folder). Other commands read it with
``--data cache:SOURCE/INTERVAL/SELECTION``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
)

from finrl_lab.console import print_table
from finrl_lab.data.cache import (
    CACHE_ENV_VAR,
    Cache,
    CorruptCacheError,
    read_entry_file,
)
from finrl_lab.data.local import resolve_data
from finrl_lab.data.panel import Panel
from finrl_lab.data.sources import (
    CACHE_PREFIX,
    Source,
    UpdateResult,
    load_cache_reference,
    prepare_bars,
    update_cache,
)
from finrl_lab.errors import ConfigError


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Register ``data download`` and ``data info``."""
    parser = subparsers.add_parser(
        "data", help="download market data into the cache; describe datasets"
    )
    sub = parser.add_subparsers(dest="data_command", required=True)

    download = sub.add_parser(
        "download",
        help="fetch Yahoo or ccxt bars into the cache (only what is missing)",
    )
    download.add_argument(
        "--source", choices=("yahoo", "ccxt"), required=True, help="where to fetch from"
    )
    download.add_argument(
        "--pool",
        help="Yahoo tickers: a pool name (dj30), a YAML file, or AAPL,MSFT",
    )
    download.add_argument(
        "--symbol",
        action="append",
        help="symbol to fetch, repeatable or comma-separated (ccxt: BTC/USDT)",
    )
    download.add_argument("--exchange", help="ccxt exchange id, such as binance")
    download.add_argument(
        "--interval",
        "--timeframe",
        dest="interval",
        default="1d",
        help="bar size, such as 1d, 1h or 1m (default 1d)",
    )
    download.add_argument(
        "--start",
        "--since",
        dest="start",
        help="first date, YYYY-MM-DD or ISO time, UTC; needed for a first download",
    )
    download.add_argument(
        "--end",
        "--until",
        dest="end",
        help="last date (inclusive), UTC; default now",
    )
    download.add_argument(
        "--retries",
        type=int,
        default=5,
        help="retries after a network or rate-limit error (default 5)",
    )
    _add_cache_option(download)
    download.set_defaults(action=run_download)

    info = sub.add_parser("info", help="describe a dataset file, folder or cache entry")
    info.add_argument(
        "target",
        help="'sp500' (the bundled dataset), a file or folder, a cache reference "
        "such as cache:yahoo/1d/dj30, or a cache parquet file",
    )
    info.add_argument(
        "--interval", default="1d", help="bar size of a local file (default 1d)"
    )
    info.add_argument(
        "--market",
        default="equity",
        choices=("equity", "crypto"),
        help="market of a local file (default equity)",
    )
    _add_cache_option(info)
    info.set_defaults(action=run_info)
    parser.set_defaults(handler=run)


def _add_cache_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--cache-dir",
        help=f"cache folder (default: ${CACHE_ENV_VAR}, else the per-user cache)",
    )


def run(args: argparse.Namespace) -> int:
    """Dispatch to the chosen ``data`` subcommand."""
    return int(args.action(args) or 0)


# -- download ---------------------------------------------------------------------


def _symbols(args: argparse.Namespace) -> list[str]:
    symbols = [s.strip() for item in args.symbol or [] for s in item.split(",")]
    symbols = [s for s in symbols if s]
    if args.source == "yahoo" and args.pool:
        from finrl_lab.data.pools import resolve_pool

        symbols = [*resolve_pool(args.pool).tickers, *symbols]
    if args.source == "ccxt" and args.pool:
        raise ConfigError(
            "--pool names Yahoo tickers", "give ccxt symbols with --symbol BTC/USDT"
        )
    if not symbols:
        what = "--pool or --symbol" if args.source == "yahoo" else "--symbol"
        raise ConfigError("no symbols to download", f"pass {what}")
    return list(dict.fromkeys(symbols))


def build_source(args: argparse.Namespace) -> Source:
    """Return the source the download options name."""
    if args.retries < 0:
        raise ConfigError(f"--retries {args.retries} is negative", "pass 0 or more")
    if args.source == "yahoo":
        from finrl_lab.data.yahoo import YahooSource

        if args.exchange:
            raise ConfigError("--exchange applies to ccxt", "drop it for Yahoo")
        return YahooSource(retries=args.retries)
    from finrl_lab.data.ccxt_source import CcxtSource, make_exchange

    if not args.exchange:
        raise ConfigError("--source ccxt needs --exchange", "pass --exchange binance")
    return CcxtSource(make_exchange(args.exchange), retries=args.retries)


def run_download(args: argparse.Namespace) -> int:
    """Download the named symbols into the cache and print what changed."""
    symbols = _symbols(args)
    source = build_source(args)
    cache = Cache(args.cache_dir)
    progress = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=Console(stderr=True),
        disable=not sys.stderr.isatty(),
    )
    with progress:
        overall = progress.add_task(
            f"{source.name} {args.interval}", total=len(symbols)
        )
        bars = progress.add_task("bars", total=None)
        current: dict[str, str] = {}

        def on_page(symbol: str, count: int, expected: int | None) -> None:
            if current.get("symbol") != symbol:
                current["symbol"] = symbol
                progress.reset(bars, total=expected, description=symbol)
            progress.update(bars, completed=count, total=expected)

        def on_done(result: UpdateResult | None) -> None:
            progress.advance(overall)

        results = update_cache(
            source,
            symbols,
            args.interval,
            start=args.start,
            end=args.end,
            cache=cache,
            progress=on_page,
            on_symbol_done=on_done,
        )
    rows = [
        [r.symbol, r.mode, r.new_rows, r.total_rows, r.first or "", r.last or ""]
        for r in results
    ]
    print_table(
        f"{source.name} {args.interval} in {cache.root}",
        ["symbol", "update", "new bars", "bars", "first", "last"],
        rows,
    )
    return 0


# -- info -------------------------------------------------------------------------


def run_info(args: argparse.Namespace) -> int:
    """Describe a dataset: tickers, dates, fields, gaps, and cache metadata."""
    target = args.target
    cache = Cache(args.cache_dir)
    metadata: list[dict] = []
    filled = None
    if target.startswith(CACHE_PREFIX):
        panel, filled = load_cache_reference(target, cache=cache)
        metadata = _reference_metadata(target, cache)
    elif target.endswith(".parquet") and _is_cache_file(Path(target)):
        panel, filled, meta = _load_cache_file(Path(target))
        metadata = [meta]
    else:
        panel = resolve_data(target, interval=args.interval, market=args.market)
    _print_panel(panel, filled)
    for meta in metadata:
        _print_metadata(meta)
    return 0


def _is_cache_file(path: Path) -> bool:
    from finrl_lab.data.cache import read_metadata

    if not path.is_file():
        return False
    try:
        read_metadata(path)
    except CorruptCacheError:
        return False
    return True


def _load_cache_file(path: Path) -> tuple[Panel, np.ndarray, dict]:
    from finrl_lab.data.cleaning import long_to_panel

    frame, meta = read_entry_file(path)
    interval = meta["interval"]
    market = meta.get("market", "equity")
    bars = prepare_bars(frame, interval=interval, market=market, where=str(path))
    panel, filled = long_to_panel(
        {meta["symbol"]: bars}, interval=interval, market=market, source=str(path)
    )
    return panel, filled, meta


def _reference_metadata(target: str, cache: Cache) -> list[dict]:
    from finrl_lab.data.cache import EntryKey, read_metadata
    from finrl_lab.data.sources import parse_cache_reference

    reference = parse_cache_reference(target)
    out = []
    for symbol in reference.symbols(cache):
        path = cache.path(EntryKey(reference.source, reference.interval, symbol))
        out.append(dict(read_metadata(path), path=str(path)))
    return out


def _print_panel(panel: Panel, filled: np.ndarray | None) -> None:
    summary = panel.describe()
    print_table(
        f"dataset {summary['source']}",
        ["key", "value"],
        [
            ["interval", summary["interval"]],
            ["market", summary["market"]],
            ["bars", summary["bars"]],
            ["start", summary["start"]],
            ["end", summary["end"]],
            ["fields", ", ".join(summary["fields"])],
            ["tickers", len(summary["tickers"])],
        ],
    )
    rows = []
    for i, entry in enumerate(summary["tickers"]):
        filled_count = int(filled[:, i].sum()) if filled is not None else 0
        rows.append(
            [
                entry["ticker"],
                entry.get("first", ""),
                entry.get("last", ""),
                entry["bars"],
                entry.get("gaps", 0),
                filled_count,
            ]
        )
    print_table(
        "tickers (gaps: missing bars between first and last; filled: synthetic "
        "candles)",
        ["ticker", "first", "last", "bars", "gaps", "filled"],
        rows,
    )


def _print_metadata(meta: dict) -> None:
    fetches = meta.get("fetches", [])
    last = fetches[-1] if fetches else {}
    print_table(
        f"cache entry {meta.get('source')}/{meta.get('interval')}/{meta.get('symbol')}",
        ["key", "value"],
        [
            ["file", meta.get("path", "")],
            ["rows", meta.get("rows")],
            ["first bar", meta.get("first")],
            ["last bar", meta.get("last")],
            ["covers", f"{meta.get('coverage_start')} .. {meta.get('coverage_end')}"],
            ["created", meta.get("created")],
            ["updated", meta.get("updated")],
            ["downloads", len(fetches)],
            ["last download", f"{last.get('mode', '')} {last.get('rows', '')} rows"],
            ["library", last.get("library", "")],
            ["endpoint", last.get("endpoint", "")],
        ],
    )
