"""EarnMore training speed and memory: gradient updates per second, peak memory.

Two pools: the 28-stock Dow Jones pool (the real files when present beside the
repository, with Alpha158 features; synthetic otherwise) and a synthetic pool of
500 stocks with 102 features per day. Each pool runs in its own subprocess so
that its peak resident memory (CPU) or peak allocated memory (CUDA) is its own.
The target is a 500-stock pool training within 8 GiB on CPU.

The reference in the same run is EarnMore's original replay design, which
stores the state and next-state windows [N, D, F] of every transition; the
table compares its size with the index replay used here, at the same capacity.

Run from the repository root::

    OMP_NUM_THREADS=1 python benchmarks/earnmore_speed.py            # CPU
    python benchmarks/earnmore_speed.py --device cuda --updates 200  # GPU

Prints a table and writes ``benchmarks/results/earnmore_speed.json``.
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

from finrl_lab.agents.earnmore.learner import EarnMoreLearner
from finrl_lab.agents.earnmore.masks import sample_mask_ratios, sample_visible
from finrl_lab.agents.earnmore.model import EarnMoreModel
from finrl_lab.agents.earnmore.replay import IndexReplay
from finrl_lab.agents.earnmore.settings import EarnMoreSettings

RESULT = Path("benchmarks/results/earnmore_speed.json")
DJ30 = Path("../shared/data/us_stocks/earnmore_dj30")
CAPACITY = 100_000
GIB = 1024**3


def load_features(case: str, days: int) -> tuple[np.ndarray, list[str], str]:
    """Return features [T, N, F], their names and where they came from."""
    if case == "dj30" and DJ30.exists():
        from finrl_lab.agents.earnmore.dataset import compute_raw_features
        from finrl_lab.data.features import Normalizer
        from finrl_lab.data.local import load_panel
        from finrl_lab.data.pools import resolve_pool

        tickers = resolve_pool("dj30").tickers
        panel = load_panel(DJ30).select(tickers).between("2008-03-19", None)
        raw, names = compute_raw_features(panel, "alpha158")
        scaled = Normalizer.for_features(names).fit(raw, slice(0, 2400)).transform(raw)
        values = np.nan_to_num(scaled).astype(np.float32)
        return values, names, "real Dow Jones files, alpha158"
    n_stocks = 28 if case == "dj30" else 500
    rng = np.random.default_rng(0)
    values = rng.normal(size=(days, n_stocks, 99)).astype(np.float32)
    calendar = np.stack(
        [np.arange(days) % 5, np.arange(days) % 28 + 1, np.arange(days) % 12 + 1],
        axis=-1,
    ).astype(np.float32)
    values = np.concatenate(
        [values, np.broadcast_to(calendar[:, None, :], (days, n_stocks, 3))], axis=-1
    )
    names = [f"x{i}" for i in range(99)] + ["weekday", "day", "month"]
    return values, names, "synthetic normal features"


def run_case(case: str, device: str, updates: int, days: int) -> dict:
    """Time ``updates`` gradient updates on one pool; return the figures."""
    torch.manual_seed(0)
    features, names, origin = load_features(case, days)
    n_days, n_stocks, n_features = features.shape
    settings = EarnMoreSettings()
    model = EarnMoreModel(names, n_stocks, settings).to(device)
    features_t = torch.as_tensor(features, device=device)
    available = torch.ones(n_days, n_stocks, dtype=torch.bool, device=device)
    learner = EarnMoreLearner(
        model, settings, {"name": "adamw", "lr": 1e-4}, features_t, available
    )
    rng = np.random.default_rng(0)
    replay = IndexReplay(CAPACITY, n_stocks)
    fill = 4096
    ratios = sample_mask_ratios(rng, fill)
    visible = sample_visible(rng, np.ones((fill, n_stocks), dtype=bool), ratios)
    weights = rng.dirichlet(np.ones(n_stocks + 1), size=fill)
    replay.add(
        rng.integers(settings.lookback, n_days - 1, size=fill),
        visible,
        weights,
        weights,
        rng.normal(size=fill),
        weights,
    )
    model.train()
    for _ in range(5):
        learner.update(replay.sample(rng, settings.batch_size))
    if device == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    block_rates = []
    block = max(updates // 5, 1)
    for _ in range(5):
        began = time.perf_counter()
        for _ in range(block):
            learner.update(replay.sample(rng, settings.batch_size))
        if device == "cuda":
            torch.cuda.synchronize()
        block_rates.append(block / (time.perf_counter() - began))
    peak_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    window_bytes = n_stocks * settings.lookback * n_features * 4
    return {
        "case": case,
        "origin": origin,
        "device": device,
        "stocks": n_stocks,
        "days": n_days,
        "features": n_features,
        "batch_size": settings.batch_size,
        "updates_timed": block * 5,
        "updates_per_second_median": float(np.median(block_rates)),
        "updates_per_second_blocks": block_rates,
        "peak_rss_gib": peak_rss / GIB,
        "peak_cuda_gib": torch.cuda.max_memory_allocated() / GIB
        if device == "cuda"
        else None,
        "feature_array_gib": features.nbytes / GIB,
        "index_replay_gib": replay.nbytes() / GIB,
        "window_replay_gib": CAPACITY * 2 * window_bytes / GIB,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    parser.add_argument("--updates", type=int, default=50, help="timed updates")
    parser.add_argument("--days", type=int, default=3700, help="synthetic days")
    parser.add_argument("--case", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.case:
        print(json.dumps(run_case(args.case, args.device, args.updates, args.days)))
        return
    results = []
    for case in ("dj30", "sp500-synthetic"):
        command = [
            sys.executable,
            __file__,
            "--case",
            case,
            "--device",
            args.device,
            "--updates",
            str(args.updates),
            "--days",
            str(args.days),
        ]
        output = subprocess.run(command, check=True, capture_output=True, text=True)
        results.append(json.loads(output.stdout.strip().splitlines()[-1]))
    print(
        f"{'pool':<16} {'stocks':>6} {'updates/s':>10} {'peak GiB':>9} "
        f"{'index replay GiB':>17} {'window replay GiB':>18} {'ratio':>7}"
    )
    for r in results:
        peak = r["peak_cuda_gib"] if r["device"] == "cuda" else r["peak_rss_gib"]
        ratio = r["window_replay_gib"] / r["index_replay_gib"]
        print(
            f"{r['case']:<16} {r['stocks']:>6} {r['updates_per_second_median']:>10.2f}"
            f" {peak:>9.2f} {r['index_replay_gib']:>17.3f}"
            f" {r['window_replay_gib']:>18.1f} {ratio:>7.0f}"
        )
    record = {
        "machine": {
            "cpu": platform.processor() or platform.machine(),
            "threads": torch.get_num_threads(),
            "torch": torch.__version__,
            "python": platform.python_version(),
        },
        "results": results,
    }
    RESULT.parent.mkdir(parents=True, exist_ok=True)
    RESULT.write_text(json.dumps(record, indent=1))
    print(f"saved {RESULT}")


if __name__ == "__main__":
    main()
