"""PortfolioEnv steps per second: 28 Dow Jones stocks, lookback 10, daily bars.

Compared in the same run with FinRL 0.3.7's StockPortfolioEnv on the same closes
when ``FINRL_LAB_REFERENCE_PYTHON`` names an interpreter that has FinRL (see
benchmarks/reference_runner.py). Usage::

    python benchmarks/portfolio_env.py [--repeats 5]
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np

from benchmarks.common import SHARED_DATA, reference_json, save, show
from finrl_lab.data.local import load_panel
from finrl_lab.data.pools import resolve_pool
from finrl_lab.envs.portfolio import PortfolioEnv

START, END = "2008-03-19", "2022-12-23"


def time_episode(env: PortfolioEnv, actions: np.ndarray) -> float:
    env.reset(options={"start_row": env.market.first})
    began = time.perf_counter()
    for action in actions:
        env.step(action)
    return len(actions) / (time.perf_counter() - began)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    panel = load_panel(SHARED_DATA / "us_stocks" / "earnmore_dj30")
    env = PortfolioEnv(panel, "dj30", start=START, end=END, lookback=10)
    rng = np.random.default_rng(0)
    actions = rng.uniform(-1, 1, size=(env.market.steps, env.action_space.shape[0]))
    rates = [time_episode(env, actions) for _ in range(args.repeats)]
    ours = statistics.median(rates)
    rows = [["finrl_lab PortfolioEnv", f"{ours:,.0f}", "1.00"]]
    tickers = ",".join(resolve_pool("dj30").tickers)
    reference = reference_json(
        [
            "--data",
            str(SHARED_DATA / "us_stocks" / "earnmore_dj30"),
            "--tickers",
            tickers,
            "--start",
            START,
            "--end",
            END,
            "--what",
            "env",
            "--repeats",
            str(args.repeats),
        ]
    )
    if reference:
        ratio = ours / reference["steps_per_second"]
        rows.append(
            [
                "FinRL 0.3.7 StockPortfolioEnv",
                f"{reference['steps_per_second']:,.0f}",
                f"1/{ratio:.1f}",
            ]
        )
    show(
        f"env steps per second, 28 stocks, lookback 10, {env.market.steps} steps",
        ["env", "steps/s (median)", "relative"],
        rows,
    )
    path = save(
        "portfolio_env",
        {
            "steps": env.market.steps,
            "assets": 28,
            "lookback": 10,
            "repeats": args.repeats,
            "finrl_lab_steps_per_second": ours,
            "finrl_lab_all_runs": rates,
            "reference_finrl": reference,
            "target_steps_per_second": 12_000,
        },
    )
    print(f"saved {path}")


if __name__ == "__main__":
    main()
