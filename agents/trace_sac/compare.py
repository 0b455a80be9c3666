"""Compare SAC with Trace-SAC variants over seeds and write a results table.

``python -m finrl_lab.agents.trace_sac.compare --config CONFIG --seeds 0 1 2
--steps 3000 --out DIR`` trains every variant of :data:`VARIANTS` on the config
(each seed through :func:`finrl_lab.agents.trace_sac.trainer.run_directly`) and
writes ``results.json`` and ``results.md`` (mean ± std over seeds) to DIR.
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from finrl_lab.agents.trace_sac.trainer import run_directly
from finrl_lab.training.config import load_yaml, merge

log = logging.getLogger(__name__)

# Variant label -> agent keys; ``n`` is filled from --n-step.
VARIANTS: dict[str, dict[str, Any]] = {
    "SAC (n=1)": {"trace": "retrace", "n_step": 1},
    "Trace-SAC retrace (lambda=1, c_bar=1)": {"trace": "retrace", "lam": 1.0},
    "Q(lambda) (lambda=0.8)": {"trace": "qlambda", "lam": 0.8},
    "uncorrected n-step (c=1)": {"trace": "nstep"},
    "tree-backup (lambda=1)": {"trace": "treebackup", "lam": 1.0},
    "importance sampling": {"trace": "is"},
}
COLUMNS = (
    ("sharpe", "test Sharpe"),
    ("total_return", "test return"),
    ("max_drawdown", "test max DD"),
    ("value_bias", "value bias"),
    ("value_variance", "value variance"),
)


def main(argv: list[str] | None = None) -> int:
    """Run the comparison; see the module docstring."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--config", required=True, help="trace_sac YAML config")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--steps", type=int, default=3000, help="env steps per run")
    parser.add_argument("--n-step", type=int, default=8, help="chunk length n")
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument("--variants", nargs="*", help="labels to run (default all)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    torch.set_num_threads(1)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    base = load_yaml(args.config)
    base = merge(
        base,
        {
            "budget": {
                "steps": args.steps,
                "checkpoint_every": args.steps,
            },
        },
    )
    results: dict[str, list[dict[str, float]]] = {}
    hold: list[dict[str, float]] = []
    for label, keys in VARIANTS.items():
        if args.variants and label not in args.variants:
            continue
        agent = {"n_step": args.n_step, **keys}
        config = merge(base, {"agent": agent})
        for seed in args.seeds:
            started = time.perf_counter()
            run_dir = out / f"{keys['trace']}-n{agent['n_step']}-seed{seed}"
            outcome = run_directly(config, run_dir, seed)
            row = {**outcome.test_metrics, **outcome.extra}
            row["seconds"] = time.perf_counter() - started
            results.setdefault(label, []).append(row)
            if label == next(iter(VARIANTS)) or not hold:
                hold.append(outcome.baseline_metrics["buy_and_hold"])
            log.info("%s seed %d: %s", label, seed, json.dumps(row))
            (out / "results.json").write_text(
                json.dumps({"runs": results, "buy_and_hold": hold}, indent=1)
            )
    (out / "results.md").write_text(format_table(results, hold[0]))
    print(format_table(results, hold[0]))
    return 0


def format_table(
    results: dict[str, list[dict[str, float]]], hold: dict[str, float]
) -> str:
    """Return a markdown table of mean ± std over seeds per variant."""
    header = "| variant | seeds | " + " | ".join(name for _, name in COLUMNS) + " |"
    lines = [header, "|" + "---|" * (len(COLUMNS) + 2)]
    for label, rows in results.items():
        cells = []
        for key, _ in COLUMNS:
            values = np.array([row[key] for row in rows], float)
            cells.append(f"{values.mean():.3g} ± {values.std(ddof=0):.2g}")
        lines.append(f"| {label} | {len(rows)} | " + " | ".join(cells) + " |")
    hold_cells = [f"{hold[key]:.3g}" if key in hold else "n/a" for key, _ in COLUMNS]
    lines.append("| buy and hold | - | " + " | ".join(hold_cells) + " |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    raise SystemExit(main())
