"""Time the reference implementations in their own Python environment.

Run by benchmarks/portfolio_env.py and benchmarks/baselines.py through the
interpreter named in ``FINRL_LAB_REFERENCE_PYTHON``, because FinRL 0.3.7 and
universal-portfolios 0.4.17 need pandas < 3. Set that environment up with::

    python3 -m venv /tmp/refvenv && . /tmp/refvenv/bin/activate
    pip install torch==2.13.0 stable-baselines3 "pandas<3" cvxopt six statsmodels \
        scikit-learn seaborn universal-portfolios==0.4.17
    pip install --no-deps finrl==0.3.7

Prints one JSON object to stdout. Nothing from either package is copied here.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd


def load_closes(folder: Path, tickers: list[str], start: str, end: str) -> pd.DataFrame:
    frames = {}
    for ticker in tickers:
        raw = pd.read_csv(folder / f"{ticker}.csv.gz", parse_dates=["Date"])
        frames[ticker] = raw.set_index("Date")["Adj Close"]
    closes = pd.DataFrame(frames).loc[start:end]
    return closes.dropna()


def finrl_env_steps(closes: pd.DataFrame, repeats: int) -> dict:
    """Steps per second of FinRL's StockPortfolioEnv on the same daily panel."""
    # Load the env module by path: importing the finrl package pulls in broker APIs.
    package = Path(importlib.util.find_spec("finrl").submodule_search_locations[0])
    path = package / "meta" / "env_portfolio_allocation" / "env_portfolio.py"
    spec = importlib.util.spec_from_file_location("finrl_env_portfolio", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)

    n = closes.shape[1]
    returns = closes.pct_change().fillna(0.0)
    rows = []
    for day, (date, row) in enumerate(closes.iterrows()):
        window = returns.iloc[max(0, day - 9) : day + 1]
        cov = window.cov().fillna(0.0).to_numpy() if len(window) > 1 else np.eye(n)
        for j, ticker in enumerate(closes.columns):
            rows.append(
                {
                    "day": day,
                    "date": date,
                    "tic": ticker,
                    "close": row[ticker],
                    "ret": returns.iloc[day, j],
                    "cov_list": cov,
                }
            )
    frame = pd.DataFrame(rows).set_index("day")
    frame.index.name = None
    rng = np.random.default_rng(0)
    rates = []
    for _ in range(repeats):
        env = module.StockPortfolioEnv(
            df=frame,
            stock_dim=n,
            hmax=100,
            initial_amount=1_000_000,
            transaction_cost_pct=0.001,
            reward_scaling=1e-4,
            state_space=n,
            action_space=n,
            tech_indicator_list=["ret"],
        )
        env.reset()
        steps = len(closes) - 1
        actions = rng.uniform(0, 1, size=(steps, n))
        began = time.perf_counter()
        for k in range(steps):
            env.step(actions[k])
        rates.append(steps / (time.perf_counter() - began))
    return {
        "steps_per_second": statistics.median(rates),
        "steps": len(closes) - 1,
        "assets": n,
    }


def universal_baselines(closes: pd.DataFrame, repeats: int) -> dict:
    """Seconds and final wealth (no fees) of universal-portfolios' OLMAR and PAMR."""
    import logging

    from universal import algos

    logging.disable(logging.CRITICAL)
    out = {}
    for name, algo in (
        ("olmar", algos.OLMAR(window=5, eps=10)),
        ("pamr", algos.PAMR(eps=0.5)),
    ):
        times, result = [], None
        for _ in range(repeats):
            began = time.perf_counter()
            result = algo.run(closes, log_progress=False)
            times.append(time.perf_counter() - began)
        out[name] = {
            "seconds": statistics.median(times),
            "total_wealth": float(result.total_wealth),
        }
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--data", required=True)
    parser.add_argument("--tickers", required=True)
    parser.add_argument("--start", default="2008-03-19")
    parser.add_argument("--end", default="2022-12-23")
    parser.add_argument("--what", choices=("env", "baselines"), required=True)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    closes = load_closes(Path(args.data), args.tickers.split(","), args.start, args.end)
    if args.what == "env":
        result = finrl_env_steps(closes, args.repeats)
    else:
        result = universal_baselines(closes, args.repeats)
    json.dump(result, sys.stdout)


if __name__ == "__main__":
    main()
