"""Trace-SAC networks, updates, diagnostics and the trainer through the real CLI."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from finrl_lab.agents.trace_sac.agent import TraceSAC, TraceSACConfig
from finrl_lab.agents.trace_sac.diagnostics import (
    horizon_for,
    soft_monte_carlo_returns,
)
from finrl_lab.agents.trace_sac.networks import WindowEncoder
from finrl_lab.agents.trace_sac.replay import ChunkReplay
from finrl_lab.cli import main as cli_main

LOOKBACK, FEATURES = 6, 3


@pytest.mark.parametrize("kind", ["mlp", "lstm", "transformer"])
def test_encoder_is_per_sample(kind):
    torch.manual_seed(0)
    encoder = WindowEncoder(kind, LOOKBACK, FEATURES, hidden=8, layers=2, heads=2)
    features = torch.randn(5, LOOKBACK, FEATURES)
    account = torch.randn(5, 2)
    batched = encoder(features, account)
    assert batched.shape == (5, encoder.out_dim)
    # Each sample's encoding ignores the rest of the batch (the reference code's
    # LSTM ran across the batch).
    alone = encoder(features[2:3], account[2:3])
    torch.testing.assert_close(batched[2:3], alone, rtol=1e-5, atol=1e-6)


def test_lstm_reads_time_order():
    torch.manual_seed(0)
    encoder = WindowEncoder("lstm", LOOKBACK, FEATURES, hidden=8)
    features = torch.randn(1, LOOKBACK, FEATURES)
    account = torch.zeros(1, 2)
    reversed_time = features.flip(1)
    assert not torch.allclose(
        encoder(features, account), encoder(reversed_time, account)
    )


def _filled_replay(steps: int = 64) -> ChunkReplay:
    replay = ChunkReplay(128, LOOKBACK, FEATURES)
    rng = np.random.default_rng(0)
    for i in range(steps):
        observation = {
            "features": rng.normal(size=(LOOKBACK, FEATURES)).astype(np.float32),
            "account": rng.normal(size=2).astype(np.float32),
        }
        replay.add(
            observation,
            rng.normal(size=1),
            -1.0,
            rng.normal(),
            False,
            i % 20 == 19,
            observation,
        )
    return replay


@pytest.mark.parametrize(
    ("kind", "all_steps"), [("mlp", False), ("mlp", True), ("lstm", False)]
)
def test_update_moves_targets_by_tau(kind, all_steps):
    torch.manual_seed(0)
    config = TraceSACConfig(
        n_step=4,
        batch_size=8,
        hidden_sizes=[16],
        encoder={"kind": kind, "hidden": 8},
        train_all_steps=all_steps,
        tau=0.1,
    )
    agent = TraceSAC(config, LOOKBACK, FEATURES)
    before = [p.clone() for p in agent.critic_target.parameters()]
    info = agent.update(
        _filled_replay().sample(agent.chunks_per_batch(), 4, np.random.default_rng(1))
    )
    assert all(torch.isfinite(v) for v in info.values())
    for old, target, online in zip(
        before, agent.critic_target.parameters(), agent.critic.parameters(), strict=True
    ):
        torch.testing.assert_close(target, old + 0.1 * (online - old))
    assert agent.chunks_per_batch() == (2 if all_steps else 8)


def test_monte_carlo_soft_return_hand_computed():
    # gamma 0.5, alpha 0.1: G2 = 3; G1 = 2 + 0.5*(3 - 0.1*log_pi2) = 3.45;
    # G0 = 1 + 0.5*(3.45 - 0.1*log_pi1) = 2.625.
    g = soft_monte_carlo_returns(
        np.array([1.0, 2.0, 3.0]), np.array([9.0, 2.0, 1.0]), alpha=0.1, gamma=0.5
    )
    np.testing.assert_allclose(g, [2.625, 3.45, 3.0])
    assert horizon_for(0.99, 0.01) == 459
    assert 0.99**459 <= 0.01 < 0.99**458


def write_candles(path: Path, days: int = 40, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    rows = days * 24
    close = 100 * np.exp(np.cumsum(rng.normal(0, 0.01, rows)))
    frame = pd.DataFrame(
        {
            "date": pd.date_range("2024-01-01", periods=rows, freq="1h", tz="UTC"),
            "open": close * np.exp(rng.normal(0, 0.002, rows)),
            "high": close * 1.01,
            "low": close * 0.99,
            "close": close,
            "volume": rng.uniform(1, 10, rows),
        }
    )
    frame.to_csv(path, index=False)
    return path


def tiny_config(tmp_path: Path) -> Path:
    data = write_candles(tmp_path / "candles.csv")
    text = f"""
data: {{source: {data}, interval: 1h, market: crypto}}
splits:
  train: [null, "2024-01-25"]
  valid: ["2024-01-26", "2024-01-30"]
  test: ["2024-01-31", null]
env:
  lookback: 8
  segmentation: {{method: fixed, block_days: 10, proportions: [6, 2, 2]}}
agent:
  name: trace_sac
  n_step: 4
  gamma: 0.9
  batch_size: 16
  hidden_sizes: [16]
  learning_starts: 60
  diagnostics_every: 150
seeds: [0]
device: cpu
budget: {{steps: 150, checkpoint_every: 150, keep_checkpoints: 1}}
evaluation: {{every: 75, metric: sharpe}}
logging: {{tensorboard: false, csv: true, progress: false}}
output: {tmp_path / "runs"}
"""
    path = tmp_path / "tiny.yaml"
    path.write_text(text)
    return path


def test_cli_train_end_to_end(tmp_path, capsys):
    config = tiny_config(tmp_path)
    assert cli_main(["train", "--config", str(config)]) == 0
    runs = list((tmp_path / "runs").iterdir())
    assert len(runs) == 1
    seed_dir = runs[0] / "seed0"
    record = json.loads((seed_dir / "metrics.json").read_text())
    assert set(record["test_metrics"]) >= {"sharpe", "total_return", "max_drawdown"}
    assert "buy_and_hold" in record["baseline_metrics"]
    assert np.isfinite(record["extra"]["value_bias"])
    assert np.isfinite(record["extra"]["value_variance"])
    assert (seed_dir / "value_diagnostics.png").is_file()
    assert (seed_dir / "checkpoints" / "best.pt").is_file()
    # 4 blocks of 10 days, 2 test days each, hourly bars.
    assert record["extra"]["test_bars"] == 4 * 48
    assert "buy_and_hold" in capsys.readouterr().out

    # The evaluator reproduces the test metrics from the best checkpoint.
    assert cli_main(["evaluate", "--checkpoint", str(runs[0])]) == 0
    evaluation = next((runs[0] / "evaluations").iterdir())
    metrics = json.loads(evaluation.read_text())["seeds"]["0"]["metrics"]
    assert metrics["sharpe"] == pytest.approx(record["test_metrics"]["sharpe"])
    assert cli_main(["evaluate", "--checkpoint", str(runs[0]), "--pool", "x"]) == 2


@pytest.mark.parametrize(
    ("override", "named"),
    [
        ("agent.trace=retrace2", "agent.trace"),
        ("agent.n_step=0", "agent.n_step"),
        ("env.fill=same_bar", "env.fill"),
        ("env.segmentation.method=hmm", "env.segmentation.method"),
        ("agent.nsteps=4", "nsteps"),
    ],
)
def test_cli_rejects_bad_keys(tmp_path, capsys, override, named):
    config = tiny_config(tmp_path)
    code = cli_main(["train", "--config", str(config), "--set", override])
    assert code == 2
    err = capsys.readouterr().err
    assert named in err
    assert len(err.strip().splitlines()) == 1
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())
