"""Env throughput: the single PortfolioEnv against the batched env at several sizes.

On the bundled 20-stock S&P 500 pool (daily, lookback 20, 252-step episodes),
random actions, measured in asset-steps per second (env steps times 20 assets):

- ``PortfolioEnv`` stepped one episode at a time (the reference);
- ``DummyVecEnv`` of B single envs, the way SB3 usually batches envs;
- ``BatchedPortfolioEnv`` with B episodes per step as arrays;
- ``TorchBatchedPortfolio`` on the CPU, and on CUDA when a GPU is present.

Usage: ``python -m benchmarks.batched_env [--repeats 5] [--sizes 1,16,64,256,1024]``
"""

from __future__ import annotations

import argparse

import numpy as np
import torch
from stable_baselines3.common.vec_env import DummyVecEnv

from benchmarks.common import median_seconds, save, show
from finrl_lab.data.local import load_bundled
from finrl_lab.envs.batched import BatchedPortfolioEnv, TorchBatchedPortfolio
from finrl_lab.envs.portfolio import PortfolioEnv

TARGET = 1e6  # asset-steps per second of the batched env on the CPU
ENV_OPTIONS = {"start": "2000-01-01", "lookback": 20, "episode_length": 252}


def actions(batch: int, width: int) -> np.ndarray:
    rng = np.random.default_rng(0)
    return rng.uniform(-1.0, 1.0, size=(batch, width)).astype(np.float32)


def single_env_seconds(env: PortfolioEnv, steps: int, repeats: int) -> float:
    action = actions(1, env.action_space.shape[0])[0]

    def run() -> None:
        env.reset(seed=0)
        for _ in range(steps):
            _, _, terminated, truncated, _ = env.step(action)
            if terminated or truncated:
                env.reset()

    return median_seconds(run, repeats)


def vec_env_seconds(vec_env, steps: int, batch: int, repeats: int) -> float:
    batch_actions = actions(batch, vec_env.action_space.shape[0])
    vec_env.seed(0)
    vec_env.reset()

    def run() -> None:
        for _ in range(steps):
            vec_env.step(batch_actions)

    return median_seconds(run, repeats)


def torch_seconds(env, steps: int, batch: int, device: str, repeats: int) -> float:
    sim = TorchBatchedPortfolio(env, batch, device=device)
    start = env.market.first
    batch_actions = torch.as_tensor(actions(batch, env.action_space.shape[0]))
    batch_actions = batch_actions.to(device)

    def run() -> None:
        sim.reset(torch.full((batch,), start))
        for _ in range(steps):
            sim.step(batch_actions)
        if device == "cuda":
            torch.cuda.synchronize()

    return median_seconds(run, repeats)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--sizes", default="1,16,64,256,1024")
    args = parser.parse_args()
    sizes = [int(size) for size in args.sizes.split(",")]
    panel = load_bundled()
    env = PortfolioEnv(panel, "sp20", **ENV_OPTIONS)
    assets = env.market.n_assets

    single_steps = 2_000
    seconds = single_env_seconds(env, single_steps, args.repeats)
    reference = single_steps * assets / seconds
    results = [{"env": "PortfolioEnv", "batch": 1, "asset_steps_per_s": reference}]

    for batch in sizes:
        steps = max(20, 40_000 // batch)
        if batch <= 64:
            dummy = DummyVecEnv(
                [lambda: PortfolioEnv(panel, "sp20", **ENV_OPTIONS)] * batch
            )
            seconds = vec_env_seconds(dummy, steps, batch, args.repeats)
            results.append(
                {
                    "env": "DummyVecEnv",
                    "batch": batch,
                    "asset_steps_per_s": steps * batch * assets / seconds,
                }
            )
        batched = BatchedPortfolioEnv(env, batch)
        seconds = vec_env_seconds(batched, steps, batch, args.repeats)
        results.append(
            {
                "env": "BatchedPortfolioEnv",
                "batch": batch,
                "asset_steps_per_s": steps * batch * assets / seconds,
            }
        )
        devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
        for device in devices:
            seconds = torch_seconds(env, min(steps, 250), batch, device, args.repeats)
            results.append(
                {
                    "env": f"TorchBatchedPortfolio ({device})",
                    "batch": batch,
                    "asset_steps_per_s": min(steps, 250) * batch * assets / seconds,
                }
            )

    rows = [
        [
            r["env"],
            r["batch"],
            f"{r['asset_steps_per_s']:,.0f}",
            f"{r['asset_steps_per_s'] / reference:.1f}",
        ]
        for r in results
    ]
    show(
        f"sp20 ({assets} assets), lookback 20; target {TARGET:,.0f} asset-steps/s",
        ["env", "batch", "asset-steps/s (median)", "ratio to PortfolioEnv"],
        rows,
    )
    best = max(
        r["asset_steps_per_s"] for r in results if r["env"] == "BatchedPortfolioEnv"
    )
    path = save(
        "batched_env",
        {
            "assets": assets,
            "torch": torch.__version__,
            "target_asset_steps_per_s": TARGET,
            "best_batched_asset_steps_per_s": best,
            "results": results,
        },
    )
    print(f"saved {path}")


if __name__ == "__main__":
    main()
