"""Results table of EarnMore on the Dow Jones pools, with ablations and baselines.

For each of EarnMore's three date splits this trains, through ``finrl-lab
train``, EarnMore (``--seeds``), EarnMore without masking and without
re-weighting (first seed only), and stable-baselines3 PPO and SAC on the global
pool dj30 (first seed only). Every model is chosen on its validation window and
backtested once on the test window of the global pool and of the three
customizable pools dj30-tech, dj30-financial and dj30-industrial (SB3 models
through ``finrl-lab evaluate --pool``), with 10 bps costs. The classic
baselines run on the same windows. It prints mean and sample standard
deviation over splits and seeds of six metrics, and saves everything to
``benchmarks/results/earnmore_dj30_table.json``.

Run from the repository root (needs ../shared/data/us_stocks/earnmore_dj30)::

    OMP_NUM_THREADS=1 python benchmarks/earnmore_dj30_table.py --steps 2048

Pass ``--device cuda`` on a GPU machine and a larger ``--steps`` for a budget
closer to the paper's.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import yaml

from finrl_lab.cli import main as cli_main

CONFIG = Path("configs/experiments/earnmore_dj30.yaml")
POOLS = ("dj30", "dj30-tech", "dj30-financial", "dj30-industrial")
METRICS = ("arr", "sharpe", "sortino", "calmar", "max_drawdown", "annual_volatility")
PERCENT = ("arr", "max_drawdown", "annual_volatility")
VARIANTS = {
    "earnmore": [],
    "earnmore-no-masking": ["agent.masking=false"],
    "earnmore-no-reweighting": ["agent.reweighting=false"],
}
SB3_AGENTS = ("ppo", "sac")


def newest_run(out: Path, before: set[Path]) -> Path:
    created = [p for p in out.iterdir() if p.is_dir() and p not in before]
    if len(created) != 1:
        raise RuntimeError(f"expected one new run folder in {out}, got {created}")
    return created[0]


def train(out: Path, arguments: list[str]) -> Path:
    before = set(out.iterdir()) if out.exists() else set()
    code = cli_main(["train", *arguments, "--out", str(out)])
    if code != 0:
        raise RuntimeError(f"finrl-lab train {' '.join(arguments)} exited {code}")
    return newest_run(out, before)


def earnmore_rows(run: Path, variant: str, split: int) -> list[dict]:
    rows = []
    for seed_dir in sorted(run.glob("seed*")):
        record = json.loads((seed_dir / "metrics.json").read_text())
        extra = record["extra"]
        for pool, entry in extra["pools"].items():
            rows.append(
                {
                    "agent": variant,
                    "split": split,
                    "seed": seed_dir.name,
                    "pool": pool,
                    **entry["metrics"],
                }
            )
            if variant == "earnmore" and seed_dir.name == "seed0":
                for name, metrics in entry["baselines"].items():
                    rows.append(
                        {
                            "agent": name,
                            "split": split,
                            "seed": "-",
                            "pool": pool,
                            **metrics,
                        }
                    )
        rows.append(
            {
                "agent": variant,
                "split": split,
                "seed": seed_dir.name,
                "pool": "_budget",
                "gradient_updates": extra["gradient_updates"],
                "update_seconds": extra["update_seconds"],
            }
        )
    return rows


def sb3_rows(run: Path, agent: str, split: int, device: str) -> list[dict]:
    rows = []
    for pool in POOLS:
        folder = run / "evaluations"
        before = set(folder.iterdir()) if folder.exists() else set()
        code = cli_main(
            ["evaluate", "--checkpoint", str(run), "--pool", pool, "--device", device]
        )
        if code != 0:
            raise RuntimeError(f"finrl-lab evaluate of {run} on {pool} exited {code}")
        (path,) = [p for p in folder.iterdir() if p not in before]
        record = json.loads(path.read_text())
        for seed, entry in record["seeds"].items():
            rows.append(
                {"agent": agent, "split": split, "seed": seed, "pool": pool}
                | entry["metrics"]
            )
    return rows


def summarise(rows: list[dict]) -> dict:
    table: dict = {}
    for pool in POOLS:
        for agent in dict.fromkeys(r["agent"] for r in rows):
            chosen = [r for r in rows if r["agent"] == agent and r["pool"] == pool]
            if not chosen:
                continue
            cell = {}
            for metric in METRICS:
                values = np.array([r[metric] for r in chosen], dtype=float)
                spread = values.std(ddof=1) if len(values) > 1 else float("nan")
                cell[metric] = {"mean": float(values.mean()), "std": float(spread)}
            cell["runs"] = len(chosen)
            table.setdefault(pool, {})[agent] = cell
    return table


def markdown(table: dict) -> str:
    header = "| agent | runs | ARR % | Sharpe | Sortino | Calmar | MDD % | VOL % |"
    lines = []
    for pool, agents in table.items():
        lines += [f"\n**{pool}**\n", header, "|---" * 8 + "|"]
        for agent, cell in agents.items():
            parts = []
            for metric in METRICS:
                scale = (
                    100 if metric in ("arr", "max_drawdown", "annual_volatility") else 1
                )
                mean, std = cell[metric]["mean"] * scale, cell[metric]["std"] * scale
                parts.append(f"{mean:.2f} ± {std:.2f}")
            lines.append(f"| {agent} | {cell['runs']} | " + " | ".join(parts) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=2048, help="budget.steps per run")
    parser.add_argument("--seeds", default="0,1", help="EarnMore seeds, e.g. 0,1,2")
    parser.add_argument("--splits", default="0,1,2", help="EarnMore split indexes")
    parser.add_argument("--sb3-steps", type=int, default=4096, help="SB3 steps")
    parser.add_argument(
        "--variants", default=",".join(VARIANTS), help="EarnMore variants to train"
    )
    parser.add_argument(
        "--sb3-agents", default=",".join(SB3_AGENTS), help="SB3 agents; '' for none"
    )
    parser.add_argument(
        "--merge", action="store_true", help="add the rows to the saved results"
    )
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--out", default="runs/earnmore_table", help="run folders")
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    first_seed = args.seeds.split(",")[0]
    common = [
        "--steps", str(args.steps),
        "--device", args.device,
        "--set", f"evaluation.every={max(args.steps // 4, 128)}",
        "--set", f"budget.checkpoint_every={args.steps}",
        "--set", "logging.progress=false",
    ]  # fmt: skip
    rows: list[dict] = []
    began = time.perf_counter()
    for split in (int(s) for s in args.splits.split(",")):
        for variant in args.variants.split(","):
            overrides = VARIANTS[variant]
            seeds = args.seeds if variant == "earnmore" else first_seed
            arguments = ["--config", str(CONFIG), "--seeds", seeds, *common]
            arguments += ["--set", f"splits.index={split}"]
            for item in overrides:
                arguments += ["--set", item]
            run = train(out, arguments)
            rows += earnmore_rows(run, variant, split)
        for agent in [a for a in args.sb3_agents.split(",") if a]:
            config = yaml.safe_load(CONFIG.read_text())
            config["agent"] = {"name": agent}
            config["env"] = {"features": "ohlc", "cost_rate": 0.001}
            config["seeds"] = [int(first_seed)]
            config["splits"] = {"preset": "earnmore", "index": split}
            path = out / f"{agent}_split{split}.yaml"
            path.write_text(yaml.safe_dump(config))
            arguments = ["--config", str(path), "--steps", str(args.sb3_steps)]
            arguments += ["--device", args.device, "--set", "logging.progress=false"]
            arguments += ["--set", f"evaluation.every={max(args.sb3_steps // 4, 128)}"]
            arguments += ["--set", f"budget.checkpoint_every={args.sb3_steps}"]
            run = train(out, arguments)
            rows += sb3_rows(run, agent, split, args.device)
        print(f"split {split} done after {time.perf_counter() - began:.0f} s")
    seconds = time.perf_counter() - began
    runs = [{"arguments": vars(args), "seconds": seconds}]
    result = Path("benchmarks/results/earnmore_dj30_table.json")
    if args.merge and result.exists():
        saved = json.loads(result.read_text())
        rows = saved["rows"] + rows
        runs = saved["runs"] + runs
    table = summarise([r for r in rows if r["pool"] != "_budget"])
    budget = [r for r in rows if r["pool"] == "_budget"]
    record = {
        "runs": runs,
        "seconds": sum(run["seconds"] for run in runs),
        "rows": rows,
        "table": table,
        "budget": budget,
    }
    result.parent.mkdir(parents=True, exist_ok=True)
    result.write_text(json.dumps(record, indent=1))
    print(markdown(table))
    print(f"total {record['seconds']:.0f} s; saved {result}")


if __name__ == "__main__":
    main()
