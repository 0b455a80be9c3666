"""End-to-end training runs through the CLI: outputs, seeds, resume, evaluate."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from finrl_lab.cli import main
from finrl_lab.metrics import METRIC_NAMES
from finrl_lab.training import sb3_trainer
from finrl_lab.training.checkpoint import load_checkpoint

REPO = Path(__file__).resolve().parents[1]
TINY = REPO / "configs" / "experiments" / "tiny_ppo.yaml"


@pytest.fixture(autouse=True, scope="module")
def one_torch_thread():
    # Tiny networks train faster on one thread than on a shared, loaded CPU.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def write_config(tmp_path: Path, agent: str = "ppo", **sections) -> Path:
    config = yaml.safe_load(TINY.read_text())
    if agent != "ppo":
        config["agent"] = {"name": agent, "net_arch": [16]}
        if agent in ("sac", "td3", "ddpg"):
            config["agent"].update(learning_starts=64, batch_size=32, buffer_size=600)
        else:
            config["agent"]["n_steps"] = 8
    config["output"] = str(tmp_path / "runs")
    config["logging"]["tensorboard"] = False
    config.update(sections)
    path = tmp_path / f"{agent}.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def only_run(root: Path) -> Path:
    runs = [p for p in root.iterdir() if not p.name.startswith(".")]
    assert len(runs) == 1, runs
    return runs[0]


def seed_metrics(run_dir: Path, seed: int = 0) -> dict:
    return json.loads((run_dir / f"seed{seed}" / "metrics.json").read_text())


def test_train_cli_writes_run_folder(tmp_path, capsys):
    config = write_config(
        tmp_path, logging={"tensorboard": True, "csv": True, "progress": False}
    )
    assert main(["train", "--config", str(config)]) == 0
    printed = capsys.readouterr().out
    run_dir = only_run(tmp_path / "runs")
    assert run_dir.name.startswith("ppo-sp20-tech-seed0-")
    assert "ppo seed 0" in printed
    assert "market" in printed
    assert "ew" in printed
    assert "test window 2016-07-01" in printed

    stored = yaml.safe_load((run_dir / "config.yaml").read_text())
    assert stored["agent"]["n_steps"] == 32
    assert stored["env"]["cost_rate"] == 0.001  # a default written out
    environment = json.loads((run_dir / "environment.json").read_text())
    assert "torch" in environment["packages"]
    assert json.loads((run_dir / "status.json").read_text())["state"] == "complete"

    metrics = seed_metrics(run_dir)
    assert set(metrics["test_metrics"]) == set(METRIC_NAMES)
    assert set(metrics["baseline_metrics"]) == {"market", "ew"}
    steps = [step for step, _ in metrics["validation"]]
    assert steps == [128, 256, 384]

    # The best checkpoint is the validation maximum; the test never chooses.
    best = load_checkpoint(run_dir / "seed0" / "checkpoints" / "best.pt")
    finite = [(v, s) for s, v in metrics["validation"] if np.isfinite(v)]
    assert best["step"] == max(finite)[1]
    assert metrics["extra"]["best_step"] == best["step"]

    scalars = (run_dir / "seed0" / "logs" / "scalars.csv").read_text()
    assert "valid/sharpe" in scalars
    assert "train/policy_gradient_loss" in scalars
    events = list((run_dir / "seed0" / "logs" / "tensorboard").glob("events.*"))
    assert events


def test_same_seed_repeats_and_other_seed_differs(tmp_path):
    first = tmp_path / "first"
    second = tmp_path / "second"
    first.mkdir()
    second.mkdir()
    config_a = write_config(first, output=str(first / "runs"), seeds=[0, 1])
    config_b = write_config(second, output=str(second / "runs"), seeds=[0])
    assert main(["train", "--config", str(config_a)]) == 0
    assert main(["train", "--config", str(config_b)]) == 0
    run_a, run_b = only_run(first / "runs"), only_run(second / "runs")
    assert run_a.name.startswith("ppo-sp20-tech-seed0+1-")
    seed0_a = seed_metrics(run_a, 0)
    seed0_b = seed_metrics(run_b, 0)
    seed1_a = seed_metrics(run_a, 1)
    assert seed0_a["test_metrics"] == seed0_b["test_metrics"]
    assert seed0_a["validation"] == seed0_b["validation"]
    assert seed0_a["validation"] != seed1_a["validation"]

    summary = json.loads((run_a / "summary.json").read_text())
    sharpe = [seed0_a["test_metrics"]["sharpe"], seed1_a["test_metrics"]["sharpe"]]
    assert summary["mean"]["sharpe"] == pytest.approx(np.mean(sharpe))
    assert summary["std"]["sharpe"] == pytest.approx(np.std(sharpe, ddof=1))


def kill_after_first_checkpoint(monkeypatch) -> list[int]:
    saved: list[int] = []
    original = sb3_trainer._Supervisor.save

    def save_then_stop(self, step):
        original(self, step)
        saved.append(step)
        raise KeyboardInterrupt

    monkeypatch.setattr(sb3_trainer._Supervisor, "save", save_then_stop)
    return saved


@pytest.mark.parametrize("agent", list(sb3_trainer.ALGORITHMS))
def test_resume_after_kill_matches_uninterrupted(tmp_path, monkeypatch, agent):
    whole, killed = tmp_path / "whole", tmp_path / "killed"
    whole.mkdir()
    killed.mkdir()
    config_whole = write_config(whole, agent, output=str(whole / "runs"))
    config_killed = write_config(killed, agent, output=str(killed / "runs"))
    assert main(["train", "--config", str(config_whole)]) == 0

    with monkeypatch.context() as patch:
        saved = kill_after_first_checkpoint(patch)
        assert main(["train", "--config", str(config_killed)]) == 130
    assert saved == [128]
    run_dir = only_run(killed / "runs")
    assert json.loads((run_dir / "status.json").read_text())["state"] == "failed"
    assert not (run_dir / "seed0" / "metrics.json").exists()

    assert main(["train", "--resume", str(run_dir)]) == 0
    resumed = seed_metrics(run_dir)
    uninterrupted = seed_metrics(only_run(whole / "runs"))
    assert resumed["test_metrics"] == uninterrupted["test_metrics"]
    assert resumed["validation"] == uninterrupted["validation"]
    assert json.loads((run_dir / "status.json").read_text())["state"] == "complete"


def test_evaluate_reproduces_test_metrics(tmp_path, capsys):
    config = write_config(tmp_path)
    assert main(["train", "--config", str(config)]) == 0
    run_dir = only_run(tmp_path / "runs")
    capsys.readouterr()
    assert main(["evaluate", "--checkpoint", str(run_dir), "--device", "cpu"]) == 0
    assert "ppo seed 0" in capsys.readouterr().out
    records = list((run_dir / "evaluations").glob("*.json"))
    assert len(records) == 1
    evaluated = json.loads(records[0].read_text())
    trained = seed_metrics(run_dir)
    assert evaluated["seeds"]["0"]["metrics"] == pytest.approx(trained["test_metrics"])
    for name, metrics in trained["baseline_metrics"].items():
        assert evaluated["baselines"][name] == pytest.approx(metrics)


def test_evaluate_other_pool_and_window(tmp_path):
    config = write_config(tmp_path)
    assert main(["train", "--config", str(config)]) == 0
    run_dir = only_run(tmp_path / "runs")
    args = [
        "evaluate",
        "--checkpoint",
        str(run_dir / "seed0"),
        "--pool",
        "sp20-financial",
        "--start",
        "2017-01-01",
        "--end",
        "2017-06-30",
    ]
    assert main(args) == 0
    record = json.loads(next((run_dir / "evaluations").glob("*.json")).read_text())
    assert record["pool"] == "sp20-financial"
    window = record["seeds"]["0"]["window"]
    assert window[0].startswith("2017-01")
    assert window[1].startswith("2017-06")
    trained = seed_metrics(run_dir)["test_metrics"]
    assert record["seeds"]["0"]["metrics"] != trained


def test_evaluate_ticker_list_inside_global_pool(tmp_path, capsys):
    config = write_config(tmp_path)
    assert main(["train", "--config", str(config)]) == 0
    run_dir = only_run(tmp_path / "runs")
    capsys.readouterr()
    assert main(["evaluate", "--checkpoint", str(run_dir), "--pool", "AAPL,KO"]) == 0
    record = json.loads(next((run_dir / "evaluations").glob("*.json")).read_text())
    assert record["pool"] == "AAPL,KO"
    capsys.readouterr()
    args = ["evaluate", "--checkpoint", str(run_dir), "--pool", "AAPL,ZZZZ"]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ")
    assert "ZZZZ" in err
    assert main(["evaluate", "--checkpoint", str(run_dir), "--pool", ""]) == 2


def test_agent_value_of_wrong_type_exit_2(tmp_path, capsys):
    config = write_config(tmp_path)
    code = main(["train", "--config", str(config), "--set", "agent.gamma=high"])
    assert code == 2
    err = capsys.readouterr().err
    assert "agent.gamma is 'high'" in err
    assert len(err.strip().splitlines()) == 1
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())


def test_broken_run_config_exit_2(tmp_path, capsys):
    config = write_config(tmp_path)
    assert main(["train", "--config", str(config)]) == 0
    run_dir = only_run(tmp_path / "runs")
    (run_dir / "config.yaml").write_text("agent: [unclosed\n")
    capsys.readouterr()
    assert main(["train", "--resume", str(run_dir)]) == 2
    assert "is not valid YAML" in capsys.readouterr().err
    assert main(["evaluate", "--checkpoint", str(run_dir)]) == 2


def test_empty_pool_option_exit_2(tmp_path, capsys):
    config = write_config(tmp_path)
    assert main(["train", "--config", str(config), "--pool", ""]) == 2
    assert "--pool is empty" in capsys.readouterr().err


def test_off_policy_agents_default_to_softmax():
    from finrl_lab.training.sb3_trainer import defaults

    for name in ("sac", "td3", "ddpg"):
        assert defaults(name)["env"]["action_mode"] == "softmax"
    assert defaults("ppo")["env"]["action_mode"] == "simplex"
