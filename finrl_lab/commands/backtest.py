"""``finrl-lab backtest``: baselines over a pool, a metrics table, a run folder."""

from __future__ import annotations

import argparse
import math
import tempfile
from pathlib import Path

import pandas as pd

from finrl_lab.agents.classic import CLASSIC_AGENTS
from finrl_lab.backtest import BacktestResult, backtest_agents, make_agent
from finrl_lab.console import console, print_table
from finrl_lab.data.local import BUNDLED_NAME, resolve_data
from finrl_lab.data.panel import Panel
from finrl_lab.data.pools import make_pool
from finrl_lab.errors import ConfigError, DataError
from finrl_lab.io import write_atomic, write_json_atomic
from finrl_lab.market import Market, build_market
from finrl_lab.metrics import METRIC_NAMES
from finrl_lab.reporting.plots import plot_equity_and_drawdown
from finrl_lab.reporting.run_folder import (
    run_name,
    staged_run_folder,
    write_config,
    write_environment,
)

# Metric, column title, and whether the table shows it as a percentage.
TABLE_COLUMNS = {
    "total_return": ("total return", True),
    "arr": ("ARR", True),
    "annual_volatility": ("volatility", True),
    "sharpe": ("Sharpe", False),
    "sortino": ("Sortino", False),
    "calmar": ("Calmar", False),
    "max_drawdown": ("MDD", True),
    "avg_turnover": ("turnover", True),
}


def format_metric(value: float | None, percent: bool) -> str:
    """Format a metric for the table; an undefined value shows as ``n/a``."""
    if value is None or not math.isfinite(value):
        return "n/a"
    return f"{100 * value:,.1f}%" if percent else f"{value:.2f}"


def print_metrics_table(title: str, results: list[BacktestResult]) -> None:
    """Print one row per agent with the project metrics."""
    rows = [
        [
            r.agent,
            *(
                format_metric(r.metrics[m], pct)
                for m, (_, pct) in TABLE_COLUMNS.items()
            ),
        ]
        for r in results
    ]
    print_table(title, ["agent", *(name for name, _ in TABLE_COLUMNS.values())], rows)


def add_data_options(parser: argparse.ArgumentParser) -> None:
    """Add --data, --pool, --global-pool, --start, --end, --interval, --market."""
    parser.add_argument(
        "--data",
        default=BUNDLED_NAME,
        help=f"dataset: '{BUNDLED_NAME}' (bundled, default), a file, a folder of "
        "per-ticker files, or a cache entry such as cache:yahoo/1d/dj30 "
        "(see 'finrl-lab data info')",
    )
    parser.add_argument(
        "--pool",
        default=None,
        help="pool to trade: a name (see 'finrl-lab pools'), FILE.yaml[:NAME] or "
        "tickers like AAPL,MSFT,KO; default sp20 on the bundled data, else every "
        "ticker in the data",
    )
    parser.add_argument(
        "--global-pool",
        default=None,
        help="global pool the observation covers; default the pool's parent",
    )
    parser.add_argument("--start", default=None, help="first decision date, YYYY-MM-DD")
    parser.add_argument("--end", default=None, help="last valuation date, YYYY-MM-DD")
    parser.add_argument(
        "--interval", default="1d", help="bar size of a local file (default 1d)"
    )
    parser.add_argument(
        "--market",
        default="equity",
        choices=("equity", "crypto"),
        help="market of a local file; sets periods per year (252 or 365 days)",
    )


def check_dates_inside(panel: Panel, start: str | None, end: str | None) -> None:
    """Raise DataError if a requested date lies before or after the data."""
    first, last = panel.timestamps[0], panel.timestamps[-1]
    panel.slice_positions(start, end)  # checks the format and order of the dates
    hint = f"choose dates within {first.date()} .. {last.date()}"
    if start is not None and _as_utc(start) < first.normalize():
        raise DataError(f"--start {start} is before the first bar of the data", hint)
    if end is not None and _as_utc(end) > last.normalize():
        raise DataError(f"--end {end} is after the last bar of the data", hint)


def _as_utc(text: str) -> pd.Timestamp:
    stamp = pd.Timestamp(text)
    return stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")


def load_market(args: argparse.Namespace, min_history: int = 1) -> Market:
    """Load the data and cut it to the pool and dates named by the options."""
    panel = resolve_data(args.data, interval=args.interval, market=args.market)
    pool = args.pool
    if pool is None:
        pool = (
            "sp20"
            if args.data == BUNDLED_NAME
            else make_pool("all-tickers", panel.tickers)
        )
    check_dates_inside(panel, args.start, args.end)
    return build_market(
        panel,
        pool,
        start=args.start,
        end=args.end,
        global_pool=args.global_pool,
        min_history=min_history,
    )


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "backtest",
        help="backtest classic baselines on a pool and write a run folder",
        description="Backtest agents over a pool and date window; print a metrics "
        "table and write a run folder with the config, metrics, values, weights "
        "and an equity plot.",
    )
    add_data_options(parser)
    parser.add_argument(
        "--agents",
        default=",".join(CLASSIC_AGENTS),
        help=f"comma-separated agents (default all: {','.join(CLASSIC_AGENTS)})",
    )
    parser.add_argument(
        "--cost-bps",
        type=float,
        default=10.0,
        help="transaction cost per unit of turnover, in basis points (default 10)",
    )
    parser.add_argument(
        "--initial-value",
        type=float,
        default=1_000_000.0,
        help="initial capital in currency units (default 1,000,000)",
    )
    parser.add_argument(
        "--out", default="runs", help="folder for run folders (default runs)"
    )
    parser.add_argument("--no-plot", action="store_true", help="skip the PNG plot")
    parser.set_defaults(handler=run)


def parse_agents(text: str) -> list[str]:
    names = [a.strip() for a in text.split(",") if a.strip()]
    if not names:
        raise ConfigError("no agents given", f"use some of {','.join(CLASSIC_AGENTS)}")
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise ConfigError(
            f"agent(s) {', '.join(repeated)} listed more than once", "list each once"
        )
    for name in names:
        make_agent(name)
    return names


def check_output_folder(out: str) -> None:
    """Create ``out`` if needed; raise ConfigError if it cannot hold run folders."""
    path = Path(out)
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = tempfile.TemporaryDirectory(dir=path, prefix=".probe-")
        probe.cleanup()
    except OSError as exc:
        raise ConfigError(
            f"cannot write run folders to {out!r}: {exc.strerror or exc}",
            "choose a writable folder with --out",
        ) from None


def run(args: argparse.Namespace) -> int:
    # Turnover is at most 2, so a rate of 50% or more could cost the whole value.
    if not 0 <= args.cost_bps < 5_000:
        raise ConfigError(
            f"--cost-bps {args.cost_bps:g} is outside [0, 5000)",
            "give the cost in basis points: 10 means 0.1% of the traded value",
        )
    if not (math.isfinite(args.initial_value) and args.initial_value > 0):
        raise ConfigError(
            f"--initial-value {args.initial_value} must be a positive number"
        )
    agents = parse_agents(args.agents)
    market = load_market(args)
    check_output_folder(args.out)
    cost_rate = args.cost_bps / 10_000
    results = backtest_agents(market, agents, cost_rate, args.initial_value)

    first, last = market.valuation_times[0].date(), market.valuation_times[-1].date()
    pool_label = args.pool or ("sp20" if args.data == BUNDLED_NAME else "all-tickers")
    title = (
        f"pool {pool_label} ({len(market.pool_tickers)} stocks), {first} .. {last}, "
        f"{market.steps} periods, cost {args.cost_bps:g} bps"
    )
    print_metrics_table(title, results)
    config = resolved_config(args, market, agents, cost_rate)
    with staged_run_folder(args.out, run_name("backtest", pool_label)) as run_dir:
        write_outputs(
            run_dir.staging, results, config, plot=not args.no_plot, title=title
        )
    console.print(f"run folder: {run_dir.final}")
    return 0


def resolved_config(
    args: argparse.Namespace, market: Market, agents: list[str], cost_rate: float
) -> dict:
    return {
        "command": "backtest",
        "data": {
            "source": market.panel.source,
            "interval": market.panel.interval,
            "market": market.panel.market,
            "periods_per_year": market.periods_per_year,
        },
        "pool": {"spec": args.pool, "tickers": list(market.pool_tickers)},
        "global_pool": list(market.tickers),
        "window": {
            "requested_start": args.start,
            "requested_end": args.end,
            "first_decision": str(market.valuation_times[0]),
            "last_valuation": str(market.valuation_times[-1]),
            "periods": market.steps,
        },
        "agents": {name: dict(vars(make_agent(name))) for name in agents},
        "cost_rate": cost_rate,
        "initial_value": args.initial_value,
        "timing": "weights set at the close of bar t earn close[t+1] / close[t]",
    }


def write_outputs(
    folder: Path, results: list[BacktestResult], config: dict, *, plot: bool, title: str
) -> None:
    write_config(folder, config)
    write_environment(folder)
    metrics = {r.agent: {m: r.metrics[m] for m in METRIC_NAMES} for r in results}
    write_json_atomic(folder / "metrics.json", metrics)
    table = pd.DataFrame(metrics).T.rename_axis("agent")
    write_atomic(folder / "metrics.csv", lambda tmp: table.to_csv(tmp))
    values = pd.concat([r.values_series() for r in results], axis=1)
    values.index.name = "date"
    write_atomic(folder / "values.csv", lambda tmp: values.to_csv(tmp))
    for r in results:
        frame = r.weights_frame()
        frame.index.name = "date"
        write_atomic(
            folder / "weights" / f"{r.agent}.csv", lambda tmp, f=frame: f.to_csv(tmp)
        )
    if plot:
        plot_equity_and_drawdown(results, folder / "equity.png", title)
