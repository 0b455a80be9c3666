"""``finrl-lab evaluate``: backtest a trained run on a pool and date window."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from finrl_lab.commands.backtest import TABLE_COLUMNS
from finrl_lab.commands.train import _cells
from finrl_lab.console import console, print_table
from finrl_lab.errors import ConfigError
from finrl_lab.io import write_json_atomic
from finrl_lab.reporting.run_folder import run_name
from finrl_lab.training.checkpoint import BEST_NAME, CHECKPOINT_DIR
from finrl_lab.training.config import parse_seeds
from finrl_lab.training.device import resolve_device
from finrl_lab.training.registry import (
    EvaluationOutcome,
    EvaluationRequest,
    get_trainer_spec,
)
from finrl_lab.training.runner import load_run_config


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "evaluate",
        help="backtest a trained run on a pool and window",
        description="Load the best checkpoint of each seed of a run (or one "
        "checkpoint file) and backtest it beside the classic baselines. The "
        "window is the run's test window unless --start or --end is given.",
    )
    parser.add_argument(
        "--checkpoint",
        required=True,
        metavar="RUN",
        help="run folder, one seed folder in it, or a checkpoint file (.pt)",
    )
    parser.add_argument("--pool", help="pool to trade instead of the run's pool")
    parser.add_argument("--start", help="first decision date, YYYY-MM-DD")
    parser.add_argument("--end", help="last valuation date, YYYY-MM-DD")
    parser.add_argument("--seeds", help="only these seeds of the run, e.g. 0,2")
    parser.add_argument(
        "--device", default="auto", choices=("auto", "cpu", "cuda"), help="device"
    )
    parser.set_defaults(handler=run)


def locate(path: Path) -> tuple[Path, dict[int, Path]]:
    """Return the run folder and the checkpoint to evaluate for each seed."""
    if path.is_file():
        seed_dir = path.parent.parent
        return seed_dir.parent, {_seed_of(seed_dir): path}
    if (path / CHECKPOINT_DIR).is_dir():
        return path.parent, {_seed_of(path): path / CHECKPOINT_DIR / BEST_NAME}
    if (path / "config.yaml").is_file():
        seeds = {
            _seed_of(child): child / CHECKPOINT_DIR / BEST_NAME
            for child in sorted(path.glob("seed*"))
            if child.is_dir()
        }
        if not seeds:
            raise ConfigError(
                f"run {str(path)!r} has no seed folders", "train it first"
            )
        return path, seeds
    raise ConfigError(
        f"{str(path)!r} is not a run folder, seed folder or checkpoint file",
        "give the folder that finrl-lab train printed",
    )


def _seed_of(seed_dir: Path) -> int:
    try:
        return int(seed_dir.name.removeprefix("seed"))
    except ValueError:
        raise ConfigError(
            f"{str(seed_dir)!r} is not a seed folder of a run",
            "give the run folder or a checkpoint inside seed<k>/checkpoints",
        ) from None


def run(args: argparse.Namespace) -> int:
    run_dir, checkpoints = locate(Path(args.checkpoint))
    config = load_run_config(run_dir)
    if args.pool is not None and not args.pool.strip():
        raise ConfigError("--pool is empty", "name a pool or list tickers")
    if args.seeds is not None:
        requested = parse_seeds(args.seeds)
        missing = [seed for seed in requested if seed not in checkpoints]
        if missing:
            raise ConfigError(
                f"seed {missing[0]} is not in run {str(run_dir)!r}",
                f"the run has seeds {', '.join(map(str, sorted(checkpoints)))}",
            )
        checkpoints = {seed: checkpoints[seed] for seed in requested}
    name = config["agent"]["name"]
    spec = get_trainer_spec(name)
    if spec.evaluate is None:
        raise ConfigError(
            f"agent {name!r} has no evaluator", "its trainer must register one"
        )
    device = resolve_device(args.device)
    outcomes: dict[int, EvaluationOutcome] = {}
    for seed, checkpoint in sorted(checkpoints.items()):
        request = EvaluationRequest(
            config=config,
            checkpoint=checkpoint,
            run_dir=run_dir / f"seed{seed}",
            seed=seed,
            device=device,
            pool=args.pool,
            start=args.start,
            end=args.end,
        )
        outcomes[seed] = spec.evaluate(request)
    print_outcomes(config, args.pool, outcomes)
    record = {
        "pool": args.pool or config["pool"]["name"],
        "requested": {"start": args.start, "end": args.end},
        "seeds": {
            str(seed): {
                "checkpoint": str(checkpoints[seed]),
                "window": list(o.window),
                "metrics": o.metrics,
            }
            for seed, o in outcomes.items()
        },
        "baselines": next(iter(outcomes.values())).baseline_metrics,
    }
    label = run_name("evaluate", args.pool or config["pool"]["name"])
    path = write_json_atomic(run_dir / "evaluations" / f"{label}.json", record)
    console.print(f"evaluation written: {path}")
    return 0


def print_outcomes(
    config: dict[str, Any], pool: str | None, outcomes: dict[int, EvaluationOutcome]
) -> None:
    """Print one row per seed and one per baseline."""
    agent = config["agent"]["name"]
    rows = [[f"{agent} seed {s}", *_cells(o.metrics)] for s, o in outcomes.items()]
    first = next(iter(outcomes.values()))
    rows += [[name, *_cells(m)] for name, m in first.baseline_metrics.items()]
    title = (
        f"pool {pool or config['pool']['name']}, {first.window[0]} .. {first.window[1]}"
    )
    columns = ["agent", *(label for label, _ in TABLE_COLUMNS.values())]
    print_table(title, columns, rows)
