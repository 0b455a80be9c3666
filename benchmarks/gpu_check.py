"""A short GPU check: train on CUDA, compare throughput with the CPU, run the CLI.

Takes a few minutes on a GPU machine; on a machine without CUDA it runs the
CPU parts and reports the CUDA parts as skipped. Steps:

1. PPO and SAC on the batched sp20 env (16 envs): environment steps per second
   of ``model.learn`` on the CPU and on CUDA, and their ratio;
2. ``TorchBatchedPortfolio`` on CUDA against the numpy batch: equal values
   after 100 steps, and asset-steps per second at 4,096 episodes;
3. ``finrl-lab train`` with the tiny PPO config on the chosen device, end to
   end (checkpoints written and loaded on that device, test metrics finite).

Usage: ``python -m benchmarks.gpu_check [--steps 4096] [--threads N]``
"""

from __future__ import annotations

import argparse
import json
import math
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import yaml

from benchmarks.common import REPO, save, show
from benchmarks.train_speed import STEPS, steps_per_second
from finrl_lab.cli import main as cli_main
from finrl_lab.data.local import load_bundled
from finrl_lab.envs.batched import BatchedPortfolioEnv, TorchBatchedPortfolio
from finrl_lab.envs.portfolio import PortfolioEnv


def training_throughput(devices: list[str], steps: int) -> list[dict]:
    STEPS["ppo"] = steps
    STEPS["sac"] = max(steps // 4, 512)
    rows = []
    for agent in ("ppo", "sac"):
        for device in devices:
            rate = steps_per_second(agent, "batched", 16, device)
            rows.append({"agent": agent, "device": device, "steps_per_s": rate})
            print(f"{agent} on {device}: {rate:,.0f} env steps/s")
    return rows


def tensor_env_check(device: str) -> dict:
    env = PortfolioEnv(load_bundled(), "sp20", start="2000-01-01", lookback=20)
    env_long = PortfolioEnv(
        load_bundled(), "sp20", start="2000-01-01", lookback=20, episode_length=252
    )
    batch = 64
    starts = env_long.market.first + np.arange(batch) * 30
    numpy_batch = BatchedPortfolioEnv(env_long, batch)
    numpy_batch.set_options([{"start_row": int(r)} for r in starts])
    numpy_batch.reset()
    tensors = TorchBatchedPortfolio(env_long, batch, device=device)
    tensors.reset(torch.as_tensor(starts))
    rng = np.random.default_rng(0)
    for _ in range(100):
        actions = rng.uniform(-1, 1, size=(batch, 21)).astype(np.float32)
        numpy_batch.step(actions)
        tensors.step(torch.as_tensor(actions, device=device))
    gap = float(np.abs(tensors.values.cpu().numpy() - numpy_batch.values).max())

    big = 4_096
    sim = TorchBatchedPortfolio(env, big, device=device)
    actions = torch.rand((big, 21), device=device) * 2 - 1
    sim.reset(torch.full((big,), env.market.first))
    sim.step(actions)
    if device == "cuda":
        torch.cuda.synchronize()
    began = time.perf_counter()
    for _ in range(200):
        sim.step(actions)
    if device == "cuda":
        torch.cuda.synchronize()
    rate = 200 * big * 20 / (time.perf_counter() - began)
    return {"device": device, "max_value_gap": gap, "asset_steps_per_s": rate}


def cli_run(device: str) -> dict:
    config = yaml.safe_load(
        (REPO / "configs" / "experiments" / "tiny_ppo.yaml").read_text()
    )
    with tempfile.TemporaryDirectory() as folder:
        config["output"] = str(Path(folder) / "runs")
        config["device"] = device
        path = Path(folder) / "config.yaml"
        path.write_text(yaml.safe_dump(config))
        began = time.perf_counter()
        code = cli_main(["train", "--config", str(path)])
        seconds = time.perf_counter() - began
        metrics = {}
        if code == 0:
            run_dir = next(Path(config["output"]).iterdir())
            record = json.loads((run_dir / "seed0" / "metrics.json").read_text())
            metrics = record["test_metrics"]
    finite = bool(metrics) and all(
        math.isfinite(v) for k, v in metrics.items() if k != "sharpe"
    )
    return {"device": device, "exit_code": code, "seconds": seconds, "finite": finite}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=4_096, help="PPO env steps")
    parser.add_argument("--threads", type=int, default=None, help="torch threads")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    has_cuda = torch.cuda.is_available()
    devices = ["cpu", "cuda"] if has_cuda else ["cpu"]
    gpu = torch.cuda.get_device_name(0) if has_cuda else None
    print(
        f"torch {torch.__version__}; CUDA device: {gpu or 'none (CUDA parts skipped)'}"
    )

    throughput = training_throughput(devices, args.steps)
    tensor_checks = [tensor_env_check(device) for device in devices]
    cli_runs = [cli_run(device) for device in devices]

    rows = []
    for agent in ("ppo", "sac"):
        rates = {
            r["device"]: r["steps_per_s"] for r in throughput if r["agent"] == agent
        }
        ratio = rates["cuda"] / rates["cpu"] if "cuda" in rates else float("nan")
        rows.append(
            [
                f"{agent} learn, env steps/s",
                f"{rates['cpu']:,.0f}",
                f"{rates['cuda']:,.0f}" if "cuda" in rates else "skipped",
                f"{ratio:.2f}" if "cuda" in rates else "",
            ]
        )
    by_device = {c["device"]: c for c in tensor_checks}
    rows.append(
        [
            "TorchBatchedPortfolio x4096, asset-steps/s",
            f"{by_device['cpu']['asset_steps_per_s']:,.0f}",
            f"{by_device['cuda']['asset_steps_per_s']:,.0f}" if has_cuda else "skipped",
            "",
        ]
    )
    runs = {r["device"]: r for r in cli_runs}
    rows.append(
        [
            "finrl-lab train tiny_ppo, seconds",
            f"{runs['cpu']['seconds']:.1f}",
            f"{runs['cuda']['seconds']:.1f}" if has_cuda else "skipped",
            "",
        ]
    )
    show(
        f"GPU check ({gpu or 'no CUDA device'})",
        ["check", "cpu", "cuda", "cuda/cpu"],
        rows,
    )
    problems = [c for c in tensor_checks if c["max_value_gap"] > 1e-9]
    problems += [r for r in cli_runs if r["exit_code"] != 0 or not r["finite"]]
    path = save(
        "gpu_check",
        {
            "torch": torch.__version__,
            "cuda_device": gpu,
            "training": throughput,
            "tensor_env": tensor_checks,
            "cli_runs": cli_runs,
            "problems": problems,
        },
    )
    print(f"saved {path}")
    print("GPU check: " + ("FAILED " + json.dumps(problems) if problems else "passed"))
    raise SystemExit(1 if problems else 0)


if __name__ == "__main__":
    main()
