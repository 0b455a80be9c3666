"""``finrl-lab train``: train an agent from an experiment config, over seeds."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from finrl_lab.commands.backtest import TABLE_COLUMNS, format_metric
from finrl_lab.console import console, print_table
from finrl_lab.errors import ConfigError
from finrl_lab.reporting.run_folder import write_config
from finrl_lab.training.config import (
    COMMON_DEFAULTS,
    dump_yaml,
    load_yaml,
    merge,
    parse_override,
    parse_seeds,
)
from finrl_lab.training.runner import (
    ExperimentResult,
    load_run_config,
    prepare,
    run_experiment,
)

EPILOG = (
    "Config sections and their defaults (the agent's own 'agent' and 'env' "
    "defaults: finrl-lab config show --agent NAME):\n\n"
)


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    common = {k: v for k, v in COMMON_DEFAULTS.items() if k not in ("env",)}
    parser = subparsers.add_parser(
        "train",
        help="train an agent from an experiment config and test it",
        description="Train an agent on the training window, pick the best "
        "checkpoint on the validation window, and print its test metrics beside "
        "the classic baselines on the same window. Writes a run folder.",
        epilog=EPILOG + dump_yaml(common),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--config", help="experiment config file (YAML)")
    source.add_argument(
        "--resume",
        metavar="RUN",
        help="continue a stopped run folder from its newest checkpoints",
    )
    parser.add_argument("--agent", help="agent name; overrides agent.name")
    parser.add_argument("--pool", help="pool to trade; overrides pool.name")
    parser.add_argument("--seeds", help="comma-separated seeds, e.g. 0,1,2")
    parser.add_argument(
        "--device", choices=("auto", "cpu", "cuda"), help="overrides device"
    )
    parser.add_argument(
        "--steps", type=int, help="environment steps per seed; overrides budget.steps"
    )
    parser.add_argument("--out", help="folder for run folders; overrides output")
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override any key, e.g. --set agent.n_steps=128 (repeatable)",
    )
    parser.set_defaults(handler=run)


def config_from_args(args: argparse.Namespace) -> dict[str, Any]:
    """Read the config file and apply the command-line overrides."""
    raw = load_yaml(args.config)
    overrides: dict[str, Any] = {}
    for text in args.set:
        overrides = merge(overrides, parse_override(text))
    if args.agent:
        overrides = merge(overrides, {"agent": {"name": args.agent}})
    if args.pool is not None:
        if not args.pool.strip():
            raise ConfigError("--pool is empty", "name a pool or list tickers")
        overrides = merge(overrides, {"pool": {"name": args.pool}})
    if args.seeds is not None:
        overrides["seeds"] = parse_seeds(args.seeds)
    if args.device:
        overrides["device"] = args.device
    if args.steps is not None:
        overrides = merge(overrides, {"budget": {"steps": args.steps}})
    if args.out:
        overrides["output"] = args.out
    return merge(raw, overrides)


def run(args: argparse.Namespace) -> int:
    if args.resume:
        run_dir = Path(args.resume)
        config = load_run_config(run_dir)
        ignored = [
            flag
            for flag, value in (
                ("--agent", args.agent),
                ("--pool", args.pool),
                ("--seeds", args.seeds),
                ("--out", args.out),
                ("--set", args.set),
            )
            if value
        ]
        if ignored:
            raise ConfigError(
                f"{ignored[0]} cannot change a run being resumed",
                "only --device and --steps apply with --resume",
            )
        if args.device:
            config["device"] = args.device
        if args.steps is not None:
            config["budget"]["steps"] = args.steps
        config = prepare(config)
        write_config(run_dir, config)
        console.print(f"resuming {run_dir}")
        result = run_experiment(config, resume=run_dir)
    else:
        config = prepare(config_from_args(args))
        result = run_experiment(config)
    print_results(config, result)
    console.print(f"run folder: {result.run_dir}")
    return 0


def print_results(config: dict[str, Any], result: ExperimentResult) -> None:
    """Print the agent's test metrics per seed, mean and spread, and the baselines."""
    agent = config["agent"]["name"]
    summary = result.summary
    rows = []
    for seed in summary["seeds"]:
        rows.append([f"{agent} seed {seed}", *_cells(summary["per_seed"][str(seed)])])
    if len(summary["seeds"]) > 1:
        rows.append([f"{agent} mean", *_cells(summary["mean"])])
        rows.append([f"{agent} std", *_cells(summary["std"])])
    for name, metrics in summary["baselines"].items():
        rows.append([name, *_cells(metrics)])
    window = summary.get("test_window") or ("?", "?")
    pool = config["pool"]["name"] or "the dataset's first ticker"
    title = (
        f"test window {window[0]} .. {window[1]}, pool {pool}, "
        f"best checkpoint by validation {config['evaluation']['metric']}"
    )
    columns = ["agent", *(label for label, _ in TABLE_COLUMNS.values())]
    print_table(title, columns, rows)


def _cells(metrics: dict[str, float]) -> list[str]:
    return [
        format_metric(metrics.get(name, float("nan")), percent)
        for name, (_, percent) in TABLE_COLUMNS.items()
    ]
