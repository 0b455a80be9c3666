"""Training throughput of PPO and SAC on PortfolioEnv, single envs against the batch.

Environment steps per second of ``model.learn`` on the bundled 20-stock pool
(lookback 20, 252-step episodes, MultiInputPolicy [64, 64], AdamW), with the
training env built either as SB3's ``DummyVecEnv`` of single PortfolioEnvs or
as :class:`~finrl_lab.envs.batched.BatchedPortfolioEnv`. PPO collects
``n_steps=128`` per env then runs 4 epochs; SAC makes one gradient step per
vector step (so more envs mean fewer updates per env step).

Usage: ``python -m benchmarks.train_speed [--device cpu] [--envs 1,8,32]``
"""

from __future__ import annotations

import argparse
import time

import torch
from stable_baselines3.common.vec_env import DummyVecEnv

from benchmarks.common import save, show
from finrl_lab.data.local import load_bundled
from finrl_lab.envs.batched import BatchedPortfolioEnv
from finrl_lab.training import sb3_trainer
from finrl_lab.training.config import resolve_config

ENV_OPTIONS = {"lookback": 20, "episode_length": 252}
STEPS = {"ppo": 4_096, "sac": 1_024}


def experiment(agent: str, n_envs: int) -> dict:
    section = {"name": agent}
    if agent == "sac":
        section.update(learning_starts=256, buffer_size=20_000)
    return resolve_config(
        {
            "agent": section,
            "env": {**ENV_OPTIONS, "n_envs": n_envs},
            "splits": {
                "train": ["2000-01-01", "2014-12-31"],
                "valid": ["2015-01-01", "2017-12-31"],
                "test": ["2018-01-01", None],
            },
        }
    )


def training_env(config: dict, kind: str):
    n_envs = config["env"]["n_envs"]
    if kind == "batched":
        return BatchedPortfolioEnv(sb3_trainer.make_env(config, "train"), n_envs)
    return DummyVecEnv([lambda: sb3_trainer.make_env(config, "train")] * n_envs)


def steps_per_second(agent: str, kind: str, n_envs: int, device: str) -> float:
    """Return environment steps per second of ``learn`` after a short warm-up."""
    config = experiment(agent, n_envs)
    env = training_env(config, kind)
    model = sb3_trainer.build_model(config, env, seed=0, device=device)
    warm_up = 256 * n_envs if agent == "ppo" else 300
    model.learn(total_timesteps=warm_up)
    if device == "cuda":
        torch.cuda.synchronize()
    began = time.perf_counter()
    model.learn(total_timesteps=STEPS[agent], reset_num_timesteps=False)
    if device == "cuda":
        torch.cuda.synchronize()
    return STEPS[agent] / (time.perf_counter() - began)


def measure(devices: list[str], envs: list[int]) -> list[dict]:
    """Measure every agent, env kind, batch size and device once."""
    results = []
    for device in devices:
        for agent in STEPS:
            for n_envs in envs:
                for kind in ("dummy", "batched"):
                    rate = steps_per_second(agent, kind, n_envs, device)
                    results.append(
                        {
                            "agent": agent,
                            "env": kind,
                            "n_envs": n_envs,
                            "device": device,
                            "steps_per_s": rate,
                        }
                    )
                    print(f"{device} {agent} {kind} x{n_envs}: {rate:,.0f} steps/s")
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu", help="cpu, cuda or cpu,cuda")
    parser.add_argument("--envs", default="1,8,32")
    parser.add_argument("--threads", type=int, default=None, help="torch threads")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    load_bundled()
    devices = args.device.split(",")
    envs = [int(n) for n in args.envs.split(",")]
    results = measure(devices, envs)
    reference = {
        (r["agent"], r["n_envs"], r["device"]): r["steps_per_s"]
        for r in results
        if r["env"] == "dummy"
    }
    rows = []
    for r in results:
        ratio = r["steps_per_s"] / reference[(r["agent"], r["n_envs"], r["device"])]
        rows.append(
            [
                r["agent"],
                r["device"],
                r["env"],
                r["n_envs"],
                f"{r['steps_per_s']:,.0f}",
                f"{ratio:.2f}",
            ]
        )
    show(
        "training env steps per second (sp20, MultiInputPolicy [64, 64])",
        ["agent", "device", "env", "envs", "steps/s", "ratio to DummyVecEnv"],
        rows,
    )
    path = save(
        "train_speed",
        {
            "torch": torch.__version__,
            "threads": torch.get_num_threads(),
            "steps": STEPS,
            "results": results,
        },
    )
    print(f"saved {path}")


if __name__ == "__main__":
    main()
