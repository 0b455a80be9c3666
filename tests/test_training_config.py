"""Experiment configs and checkpoints: defaults, validation, one-line CLI errors."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import yaml

from finrl_lab.cli import main
from finrl_lab.errors import ConfigError
from finrl_lab.training.checkpoint import (
    config_fingerprint,
    load_checkpoint,
    save_checkpoint,
)
from finrl_lab.training.config import (
    CONFIG_VERSION,
    merge,
    parse_override,
    parse_seeds,
    resolve_config,
)
from finrl_lab.training.registry import (
    _SPECS,
    _TRAINERS,
    EvaluationOutcome,
    TrainOutcome,
    get_trainer_spec,
    register_evaluator,
    register_trainer,
    register_validator,
)

REPO = Path(__file__).resolve().parents[1]
TINY = REPO / "configs" / "experiments" / "tiny_ppo.yaml"


def tiny(tmp_path: Path, change: dict) -> Path:
    config = merge(yaml.safe_load(TINY.read_text()), change)
    config["output"] = str(tmp_path / "runs")
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


BAD_CONFIGS = {
    "unknown agent": ({"agent": {"name": "dqn"}}, "unknown agent 'dqn'"),
    "unknown optimizer": (
        {"optimizer": {"name": "sgdx"}},
        "unknown optimizer name 'sgdx'",
    ),
    "unknown optimizer key": (
        {"optimizer": {"momentum": 0.9}},
        "unknown optimizer key 'momentum'",
    ),
    "unknown agent key": (
        {"agent": {"n_stepz": 5}},
        "unknown key 'n_stepz' in config section 'agent'",
    ),
    "unknown env key": (
        {"env": {"lookbak": 5}},
        "unknown key 'lookbak' in config section 'env'",
    ),
    "unknown section": ({"trainer": {}}, "unknown config section 'trainer'"),
    "unknown budget key": (
        {"budget": {"epochs": 3}},
        "unknown key 'epochs' in config section 'budget'",
    ),
    "pool not in data": ({"pool": {"name": "dj30"}}, "pool.name 'dj30' names"),
    "test overlaps training": (
        {"splits": {"test": ["2015-06-01", "2016-12-31"]}},
        "overlap",
    ),
    "window outside data": (
        {"splits": {"test": ["2016-07-01", "2030-01-01"]}},
        "after the last bar",
    ),
    "unknown metric": ({"evaluation": {"metric": "alpha"}}, "evaluation.metric"),
    "unknown baseline": (
        {"evaluation": {"baselines": ["buyhold"]}},
        "unknown baseline 'buyhold'",
    ),
    "negative steps": ({"budget": {"steps": -5}}, "budget.steps -5"),
    "bad seed": ({"seeds": ["x"]}, "invalid seed 'x'"),
    "bad version": ({"version": 7}, "config version 7"),
    "bad activation": ({"agent": {"activation": "gelu"}}, "agent.activation"),
    "bad action mode": ({"env": {"action_mode": "sigmoid"}}, "action mode"),
}


@pytest.mark.parametrize("case", list(BAD_CONFIGS))
def test_bad_config_one_line_exit_2(tmp_path, capsys, case):
    change, expected = BAD_CONFIGS[case]
    config = tiny(tmp_path, change)
    assert main(["train", "--config", str(config)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ")
    assert expected in err
    assert err.count("\n") == 1
    assert not (tmp_path / "runs").exists()


def test_cuda_without_gpu_exit_2(tmp_path, capsys):
    if torch.cuda.is_available():
        pytest.skip("a CUDA device is present")
    config = tiny(tmp_path, {})
    assert main(["train", "--config", str(config), "--device", "cuda"]) == 2
    assert "no CUDA device" in capsys.readouterr().err
    assert not (tmp_path / "runs").exists()


def test_missing_config_file_exit_2(tmp_path, capsys):
    assert main(["train", "--config", str(tmp_path / "nope.yaml")]) == 2
    assert "not found" in capsys.readouterr().err


def test_resume_non_run_folder_exit_2(tmp_path, capsys):
    assert main(["train", "--resume", str(tmp_path)]) == 2
    assert "is not a run folder" in capsys.readouterr().err


def test_defaults_fill_every_section():
    config = resolve_config({"agent": {"name": "sac"}})
    assert config["version"] == CONFIG_VERSION
    assert config["agent"]["buffer_size"] == 100_000
    assert config["env"]["n_envs"] == 8
    assert config["optimizer"] == {"name": "adamw", "lr": 3e-4}
    assert config["seeds"] == [0]


def test_user_values_override_defaults():
    config = resolve_config(
        {"agent": {"name": "ppo", "n_steps": 64}, "env": {"lookback": 3}}
    )
    assert config["agent"]["n_steps"] == 64
    assert config["agent"]["batch_size"] == 256
    assert config["env"]["lookback"] == 3
    assert config["env"]["cost_rate"] == 0.001


def test_split_preset_replaces_default_dates():
    config = resolve_config({"splits": {"preset": "earnmore", "index": 1}})
    assert config["splits"] == {"preset": "earnmore", "index": 1}


def test_unquoted_yaml_dates_become_text():
    raw = yaml.safe_load(
        "splits: {train: [null, 2014-12-31], valid: [2015-01-01, 2015-12-31],"
        " test: [2016-01-01, null]}"
    )
    config = resolve_config(raw)
    assert config["splits"]["valid"] == ["2015-01-01", "2015-12-31"]


def test_parse_seeds_forms():
    assert parse_seeds("0,1, 2") == [0, 1, 2]
    assert parse_seeds(4) == [4]
    assert parse_seeds([3, 5]) == [3, 5]
    with pytest.raises(ConfigError, match="repeat"):
        parse_seeds("1,1")
    with pytest.raises(ConfigError, match="no seeds"):
        parse_seeds("")


def test_parse_override_nests_keys():
    assert parse_override("agent.n_steps=128") == {"agent": {"n_steps": 128}}
    assert parse_override("seeds=[0, 1]") == {"seeds": [0, 1]}
    with pytest.raises(ConfigError, match="section.key=value"):
        parse_override("agent.n_steps")


def test_config_show_prints_agent_defaults(capsys):
    assert main(["config", "show", "--agent", "td3"]) == 0
    shown = yaml.safe_load(capsys.readouterr().out)
    assert shown["agent"]["name"] == "td3"
    assert shown["agent"]["action_noise_std"] == 0.1
    assert shown["budget"]["checkpoint_every"] == 5_000


def test_train_help_shows_defaults(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["train", "--help"])
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    assert "checkpoint_every: 5000" in text
    assert "metric: sharpe" in text


# -- checkpoints ----------------------------------------------------------------


def test_checkpoint_round_trip(tmp_path):
    config = resolve_config({})
    payload = {"step": 7, "weights": torch.arange(3.0), "rng": {"a": (1, 2)}}
    path = save_checkpoint(tmp_path / "c.pt", payload, config)
    loaded = load_checkpoint(path, config)
    assert loaded["step"] == 7
    assert torch.equal(loaded["weights"], torch.arange(3.0))
    assert loaded["fingerprint"] == config_fingerprint(config)
    assert [p.name for p in tmp_path.iterdir()] == ["c.pt"]


def test_checkpoint_other_version_rejected(tmp_path):
    config = resolve_config({})
    path = tmp_path / "old.pt"
    save_checkpoint(path, {"step": 1}, config)
    record = torch.load(path, weights_only=True)
    record["config_version"] = CONFIG_VERSION + 1
    torch.save(record, path)
    with pytest.raises(ConfigError, match="written with config version"):
        load_checkpoint(path, config)


def test_checkpoint_other_settings_rejected(tmp_path):
    config = resolve_config({})
    path = save_checkpoint(tmp_path / "c.pt", {"step": 1}, config)
    changed = resolve_config({"env": {"lookback": 3}})
    with pytest.raises(ConfigError, match="other settings"):
        load_checkpoint(path, changed)
    more_steps = resolve_config({"budget": {"steps": 99_999}})
    assert load_checkpoint(path, more_steps)["step"] == 1


class _Arbitrary:
    pass


def test_checkpoint_with_objects_refused(tmp_path):
    path = tmp_path / "unsafe.pt"
    torch.save({"config_version": CONFIG_VERSION, "thing": _Arbitrary()}, path)
    with pytest.raises(ConfigError, match="cannot be loaded safely"):
        load_checkpoint(path)


def test_non_checkpoint_file_refused(tmp_path):
    path = tmp_path / "weights.pt"
    torch.save({"w": torch.zeros(2)}, path)
    with pytest.raises(ConfigError, match="not a finrl-lab checkpoint"):
        load_checkpoint(path)


# -- registry -------------------------------------------------------------------


def test_registered_validator_and_evaluator_are_used(tmp_path):
    def train(config, context):
        return TrainOutcome(test_metrics={})

    def validate(config):
        if config["env"].get("fee_bps", 0) < 0:
            raise ConfigError("env.fee_bps must be >= 0")

    def evaluate(request):
        return EvaluationOutcome(metrics={})

    register_trainer("toy_agent", defaults={"env": {"fee_bps": 4.0}})(train)
    try:
        register_validator("toy_agent")(validate)
        register_evaluator("toy_agent")(evaluate)
        spec = get_trainer_spec("toy_agent")
        assert spec.train is train
        assert spec.evaluate is evaluate
        assert resolve_config({"agent": {"name": "toy_agent"}})["env"] == {
            "fee_bps": 4.0
        }
        with pytest.raises(ConfigError, match="fee_bps"):
            resolve_config({"agent": {"name": "toy_agent"}, "env": {"fee_bps": -1}})
    finally:
        _TRAINERS.pop("toy_agent", None)
        _SPECS.pop("toy_agent", None)


def test_resume_rejects_changed_options(tmp_path, capsys):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    config = resolve_config(yaml.safe_load(TINY.read_text()))
    (run_dir / "config.yaml").write_text(yaml.safe_dump(config))
    assert main(["train", "--resume", str(run_dir), "--pool", "sp20"]) == 2
    err = capsys.readouterr().err
    assert "--pool cannot change a run being resumed" in err
