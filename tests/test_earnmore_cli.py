"""EarnMore end to end through ``finrl-lab train`` and ``finrl-lab evaluate``."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from finrl_lab.cli import main

TINY = {
    "data": {"source": "sp500"},
    "pool": {"name": "sp20", "global": "sp20"},
    "splits": {
        "train": [None, "2015-12-31"],
        "valid": ["2016-01-01", "2016-06-30"],
        "test": ["2016-07-01", "2016-12-31"],
    },
    "env": {
        "features": "close",
        "data_start": "2014-06-01",
        "eval_pools": ["sp20-tech"],
    },
    "agent": {
        "name": "earnmore",
        "dim": 8,
        "decoder_dim": 8,
        "hidden": 8,
        "heads": 2,
        "n_envs": 2,
        "horizon": 16,
        "updates_per_horizon": 4,
        "batch_size": 16,
        "learning_starts": 32,
        "episode_length": 32,
    },
    "seeds": [0],
    "device": "cpu",
    "budget": {"steps": 64, "checkpoint_every": 64, "keep_checkpoints": 1},
    "evaluation": {"every": 32, "metric": "sharpe", "baselines": ["market", "ew"]},
    "logging": {"progress": False, "tensorboard": False},
}


def write_config(folder: Path, **changes) -> Path:
    config = {**TINY, **changes}
    path = folder / "tiny_earnmore.yaml"
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("earnmore")
    config = write_config(folder)
    code = main(["train", "--config", str(config), "--out", str(folder / "runs")])
    assert code == 0
    (run,) = (folder / "runs").iterdir()
    return run


def test_train_writes_metrics_for_every_pool(trained_run):
    record = json.loads((trained_run / "seed0" / "metrics.json").read_text())
    pools = record["extra"]["pools"]
    assert set(pools) == {"sp20", "sp20-tech"}
    for entry in pools.values():
        assert set(entry["baselines"]) == {"market", "ew"}
        assert entry["metrics"]["max_drawdown"] >= 0.0
    assert record["extra"]["gradient_updates"] == 4 * 2
    assert (trained_run / "seed0" / "checkpoints" / "best.pt").is_file()


def test_evaluate_on_named_and_listed_pools(trained_run, capsys):
    for pool in ("sp20-financial", "AAPL,JPM,KO"):
        code = main(["evaluate", "--checkpoint", str(trained_run), "--pool", pool])
        assert code == 0
    written = sorted((trained_run / "evaluations").iterdir())
    assert len(written) == 2
    record = json.loads(written[-1].read_text())
    assert record["seeds"]["0"]["metrics"]["total_return"] > -1.0
    assert "market" in record["baselines"]


def test_evaluate_rejects_ticker_outside_global_pool(trained_run, capsys):
    code = main(["evaluate", "--checkpoint", str(trained_run), "--pool", "AAPL,ZZZZ"])
    assert code == 2
    error = capsys.readouterr().err
    assert "ZZZZ" in error
    assert error.count("\n") == 1


@pytest.mark.parametrize(
    ("key", "value", "expected"),
    [
        ("agent", {"name": "earnmore", "temperature": -1}, "temperature"),
        ("agent", {"name": "earnmore", "mask_ratio": 0.7}, "mask_ratio"),
        ("env", {"eval_pools": ["dj30-tech"]}, "not in the global pool"),
        ("env", {"features": "volume"}, "env.features"),
    ],
)
def test_bad_config_exits_two(tmp_path, capsys, key, value, expected):
    config = write_config(tmp_path, **{key: value})
    code = main(["train", "--config", str(config), "--out", str(tmp_path / "runs")])
    assert code == 2
    assert expected in capsys.readouterr().err
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())


def test_resume_matches_uninterrupted_run(tmp_path):
    budget = {"steps": 64, "checkpoint_every": 32, "keep_checkpoints": 2}
    config = write_config(tmp_path, budget=budget)
    runs = tmp_path / "runs"
    assert main(["train", "--config", str(config), "--out", str(runs)]) == 0
    (run,) = runs.iterdir()
    seed_dir = run / "seed0"
    finished = json.loads((seed_dir / "metrics.json").read_text())
    # Pretend the run was killed after its first periodic checkpoint.
    (seed_dir / "metrics.json").unlink()
    (seed_dir / "checkpoints" / "step-000000064.pt").unlink()
    assert main(["train", "--resume", str(run)]) == 0
    resumed = json.loads((seed_dir / "metrics.json").read_text())
    assert resumed["test_metrics"] == finished["test_metrics"]
    assert resumed["validation"] == finished["validation"]
