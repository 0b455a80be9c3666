"""Experiment configs: the YAML schema, its defaults and its validation.

An experiment config is a mapping with these sections (every key has a default;
``finrl-lab config show`` prints them all):

- ``version``: schema version of the config, :data:`CONFIG_VERSION`.
- ``data``: ``source`` (``sp500``, a path or a cache reference), ``interval``
  (bar size, e.g. ``1d``), ``market`` (``equity`` or ``crypto``) and
  ``sort_dates`` (sort a file written newest first instead of rejecting it).
- ``pool``: ``name`` (the customizable pool to trade) and ``global`` (the global
  pool the observation covers; null for the pool's parent).
- ``splits``: ``train``, ``valid`` and ``test`` as ``[start, end]`` dates, or
  ``preset`` and ``index`` to use a split from :data:`finrl_lab.data.splits.PRESETS`.
- ``env``: environment options; the trainer of ``agent.name`` defines and checks
  them.
- ``agent``: ``name`` picks the trainer; the other keys belong to that trainer.
- ``optimizer``: ``name`` and options for :func:`finrl_lab.optim.build_optimizer`.
- ``seeds``: a list of integer seeds; each one is a separate training run.
- ``device``: ``auto``, ``cpu`` or ``cuda``.
- ``threads``: torch's CPU threads (``torch.set_num_threads``); null keeps
  torch's default. Small networks often train fastest on one thread.
- ``budget``: ``steps`` (environment steps per seed), ``checkpoint_every``
  (steps between checkpoints) and ``keep_checkpoints`` (how many to keep).
- ``evaluation``: ``every`` (steps between validation runs), ``metric`` (the
  validation metric that picks the best checkpoint) and ``baselines`` (classic
  agents shown beside the test metrics).
- ``logging``: ``tensorboard``, ``csv`` and ``progress`` switches.
- ``output``: folder that receives run folders.
"""

from __future__ import annotations

import copy
import datetime
from pathlib import Path
from typing import Any

import yaml

from finrl_lab.agents.classic import CLASSIC_AGENTS
from finrl_lab.errors import ConfigError
from finrl_lab.metrics import METRIC_NAMES

CONFIG_VERSION = 1
DEVICES = ("auto", "cpu", "cuda")

# Validation metrics where a smaller value is better; for all others larger is.
LOWER_IS_BETTER = ("annual_volatility", "max_drawdown", "avg_turnover")

COMMON_DEFAULTS: dict[str, Any] = {
    "version": CONFIG_VERSION,
    "data": {
        "source": "sp500",
        "interval": "1d",
        "market": "equity",
        "sort_dates": False,
    },
    "pool": {"name": "sp20", "global": None},
    "splits": {
        "train": [None, "2014-12-31"],
        "valid": ["2015-01-01", "2017-12-31"],
        "test": ["2018-01-01", None],
    },
    "env": {},
    "agent": {"name": "ppo"},
    "optimizer": {"name": "adamw", "lr": 3e-4},
    "seeds": [0],
    "device": "auto",
    "threads": None,
    "budget": {"steps": 20_000, "checkpoint_every": 5_000, "keep_checkpoints": 2},
    "evaluation": {
        "every": 5_000,
        "metric": "sharpe",
        "baselines": list(CLASSIC_AGENTS),
    },
    "logging": {"tensorboard": True, "csv": True, "progress": True},
    "output": "runs",
}

# Sections whose keys this module checks; ``env`` and ``agent`` are checked by
# the trainer, ``optimizer`` by :mod:`finrl_lab.optim`.
_CHECKED_SECTIONS = ("data", "pool", "budget", "evaluation", "logging")
_SPLIT_KEYS = ("train", "valid", "test", "preset", "index")


def load_yaml(path: str | Path) -> dict[str, Any]:
    """Read a YAML config file into a mapping; raise ConfigError if unreadable."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file {str(path)!r} not found", "check the path")
    try:
        loaded = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        first_line = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ConfigError(
            f"config file {str(path)!r} is not valid YAML: {first_line}",
            "fix the syntax",
        ) from None
    if loaded is None:
        return {}
    if not isinstance(loaded, dict):
        raise ConfigError(
            f"config file {str(path)!r} contains a {type(loaded).__name__}, "
            "not a mapping",
            "write sections such as 'agent:' at the top level",
        )
    return loaded


def merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """Return ``base`` updated by ``override``, merging nested mappings key by key."""
    merged = copy.deepcopy(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def parse_override(text: str) -> dict[str, Any]:
    """Turn ``section.key=value`` into a nested mapping; the value is YAML."""
    path, sep, raw = text.partition("=")
    if not sep or not path.strip():
        raise ConfigError(f"invalid override {text!r}", "write it as section.key=value")
    value = yaml.safe_load(raw) if raw.strip() else None
    node: dict[str, Any] = {}
    keys = path.strip().split(".")
    cursor = node
    for key in keys[:-1]:
        cursor[key] = {}
        cursor = cursor[key]
    cursor[keys[-1]] = value
    return node


def parse_seeds(value: Any) -> list[int]:
    """Accept ``3``, ``"0,1,2"`` or ``[0, 1, 2]``; return a list of distinct ints."""
    if isinstance(value, bool):
        raise ConfigError(f"invalid seeds {value!r}", "give integers such as 0,1,2")
    if isinstance(value, int):
        items: list[Any] = [value]
    elif isinstance(value, str):
        items = [part.strip() for part in value.split(",") if part.strip()]
    elif isinstance(value, list | tuple):
        items = list(value)
    else:
        raise ConfigError(f"invalid seeds {value!r}", "give integers such as 0,1,2")
    seeds = []
    for item in items:
        try:
            seed = int(item)
        except (TypeError, ValueError):
            raise ConfigError(
                f"invalid seed {item!r}", "give integers such as 0,1,2"
            ) from None
        if isinstance(item, float) or seed < 0:
            raise ConfigError(f"invalid seed {item!r}", "seeds are integers >= 0")
        seeds.append(seed)
    if not seeds:
        raise ConfigError("no seeds given", "give at least one seed, such as 0")
    if len(set(seeds)) != len(seeds):
        raise ConfigError(f"seeds {seeds} repeat a value", "list each seed once")
    return seeds


def resolve_config(raw: dict[str, Any]) -> dict[str, Any]:
    """Fill in defaults (common ones, then the trainer's) and validate the result.

    Validation loads the data to check the pools and windows against it, then
    calls the trainer's validator.

    :param raw: the user's config, possibly partial.
    :return: the full config with every default written out.
    :raises ConfigError: an unknown section, key, agent or optimizer, or an
        invalid value; the message names the key and the fix.
    """
    from finrl_lab.training.registry import get_trainer_spec

    unknown = sorted(set(raw) - set(COMMON_DEFAULTS))
    if unknown:
        raise ConfigError(
            f"unknown config section {unknown[0]!r}",
            f"valid sections: {', '.join(COMMON_DEFAULTS)}",
        )
    agent = raw.get("agent", {})
    if not isinstance(agent, dict):
        raise ConfigError(
            f"config section 'agent' is a {type(agent).__name__}",
            "write it as a mapping with a 'name' key",
        )
    name = str(agent.get("name", COMMON_DEFAULTS["agent"]["name"]))
    spec = get_trainer_spec(name)
    defaults = merge(COMMON_DEFAULTS, spec.defaults_for(name))
    if "splits" in raw:
        # A split given by preset replaces the default dates rather than merging.
        defaults["splits"] = {}
    config = merge(defaults, raw)
    config["agent"]["name"] = name
    validate_common(config)
    from finrl_lab.training.experiment import check_data

    check_data(config)
    if spec.validate is not None:
        spec.validate(config)
    return config


def validate_common(config: dict[str, Any]) -> None:
    """Check every section except ``env`` and ``agent``; raise ConfigError."""
    if config["version"] != CONFIG_VERSION:
        raise ConfigError(
            f"config version {config['version']!r} is not supported",
            f"this finrl-lab reads version {CONFIG_VERSION}; update the file",
        )
    for section in (*_CHECKED_SECTIONS, "env", "agent", "optimizer", "splits"):
        if not isinstance(config[section], dict):
            raise ConfigError(
                f"config section {section!r} must be a mapping, "
                f"not {type(config[section]).__name__}"
            )
    for section in _CHECKED_SECTIONS:
        check_keys(config[section], COMMON_DEFAULTS[section], section)
    check_keys(config["splits"], dict.fromkeys(_SPLIT_KEYS), "splits")
    config["seeds"] = parse_seeds(config["seeds"])
    if config["device"] not in DEVICES:
        raise ConfigError(
            f"unknown device {config['device']!r}", f"use one of {', '.join(DEVICES)}"
        )
    if config["threads"] is not None:
        require_positive_int(config["threads"], "threads")
    budget = config["budget"]
    for key in ("steps", "checkpoint_every", "keep_checkpoints"):
        require_positive_int(budget[key], f"budget.{key}")
    evaluation = config["evaluation"]
    require_positive_int(evaluation["every"], "evaluation.every")
    if evaluation["metric"] not in METRIC_NAMES:
        raise ConfigError(
            f"unknown evaluation.metric {evaluation['metric']!r}",
            f"use one of {', '.join(METRIC_NAMES)}",
        )
    for baseline in evaluation["baselines"]:
        if baseline not in CLASSIC_AGENTS:
            raise ConfigError(
                f"unknown baseline {baseline!r} in evaluation.baselines",
                f"use some of {', '.join(CLASSIC_AGENTS)}",
            )
    check_optimizer(config["optimizer"])
    split_from_config(config)


def check_keys(section: dict[str, Any], allowed: dict[str, Any], where: str) -> None:
    """Raise ConfigError naming the first key of ``section`` not in ``allowed``."""
    unknown = sorted(set(section) - set(allowed))
    if unknown:
        raise ConfigError(
            f"unknown key {unknown[0]!r} in config section {where!r}",
            f"valid keys: {', '.join(allowed)}",
        )


def require_positive_int(value: Any, where: str) -> None:
    """Raise ConfigError unless ``value`` is an integer >= 1."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"{where} {value!r} must be an integer >= 1")


def check_optimizer(optimizer: dict[str, Any]) -> None:
    """Validate the optimizer section with :mod:`finrl_lab.optim`."""
    from finrl_lab.optim import resolve_config as resolve_optimizer

    resolve_optimizer(optimizer)
    lr = optimizer.get("lr", 3e-4)
    if isinstance(lr, bool) or not isinstance(lr, int | float) or lr <= 0:
        raise ConfigError(f"optimizer.lr {lr!r} must be a positive number")


def split_from_config(config: dict[str, Any]):
    """Return the :class:`~finrl_lab.data.splits.DateSplit` the config names.

    :raises ConfigError: a date is invalid, or the windows overlap or are out of
        order (so the test window can never share a bar with training).
    """
    from finrl_lab.data.splits import DateSplit, get_preset

    splits = config["splits"]
    if "preset" in splits:
        presets = get_preset(splits["preset"])
        index = splits.get("index", 0)
        if not isinstance(index, int) or not 0 <= index < len(presets):
            raise ConfigError(
                f"splits.index {index!r} is outside 0 .. {len(presets) - 1}",
                f"preset {splits['preset']!r} has {len(presets)} splits",
            )
        return presets[index]
    for key in ("train", "valid", "test"):
        window = splits.get(key)
        if isinstance(window, list | tuple):
            # YAML reads an unquoted 2015-01-01 as a date; keep dates as text.
            splits[key] = [_date_text(value) for value in window]
    missing = [key for key in ("train", "valid", "test") if key not in splits]
    if missing:
        raise ConfigError(
            f"config section 'splits' has no {missing[0]!r} window",
            "give train, valid and test as [start, end], or a preset",
        )
    return DateSplit(
        train=tuple(splits["train"]),
        valid=tuple(splits["valid"]),
        test=tuple(splits["test"]),
    )


def _date_text(value: Any) -> Any:
    if isinstance(value, datetime.date):
        return value.isoformat()
    return value


def check_version(found: Any, where: str) -> None:
    """Raise ConfigError if a stored config or checkpoint has another version."""
    if found != CONFIG_VERSION:
        raise ConfigError(
            f"{where} was written with config version {found!r}, but this "
            f"finrl-lab reads version {CONFIG_VERSION}",
            "train again with this version, or use the finrl-lab that wrote it",
        )


def defaults_for_agent(name: str) -> dict[str, Any]:
    """Return the full default config for one agent, as ``config show`` prints it."""
    return resolve_config({"agent": {"name": name}})


def dump_yaml(config: dict[str, Any]) -> str:
    """Return the config as YAML in section order."""
    return yaml.safe_dump(config, sort_keys=False, default_flow_style=None)
