"""stable-baselines3 agents (PPO, A2C, SAC, TD3, DDPG) on PortfolioEnv.

Every agent uses ``MultiInputPolicy`` on PortfolioEnv's Dict observation and
trains on :class:`~finrl_lab.envs.batched.BatchedPortfolioEnv` over the training
window, with the project optimizer from the ``optimizer`` section plugged in
through ``policy_kwargs`` (:func:`finrl_lab.optim.sb3_optimizer_kwargs`) and the
optimizer's ``lr`` given as SB3's ``learning_rate``.

Training is supervised at rollout boundaries, after each policy update and
before the next rollout. Every ``evaluation.every`` steps the deterministic
policy is backtested on the validation window, and the best one by
``evaluation.metric`` is kept in ``checkpoints/best.pt``. Every
``budget.checkpoint_every`` steps the full training state (networks,
optimizers, counters, the batched env, the replay buffer and every random
state) goes to ``checkpoints/step-N.pt``. Resuming from
one of those continues exactly where the killed run stood, so it ends with the
same numbers as a run that was never stopped. The best checkpoint is evaluated
once on the test window, through the same backtest path as the baselines.
"""

from __future__ import annotations

import inspect
import logging
import time
from typing import Any

import numpy as np
import torch
from stable_baselines3 import A2C, DDPG, PPO, SAC, TD3
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.buffers import DictReplayBuffer
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.noise import NormalActionNoise
from stable_baselines3.common.off_policy_algorithm import OffPolicyAlgorithm
from stable_baselines3.common.utils import get_device
from stable_baselines3.common.vec_env import DummyVecEnv

from finrl_lab.agents.base import PolicyAgent
from finrl_lab.backtest import BacktestResult, backtest_agents, run_policy_agent
from finrl_lab.envs.batched import BatchedPortfolioEnv
from finrl_lab.envs.portfolio import PortfolioEnv
from finrl_lab.errors import ConfigError
from finrl_lab.market import build_market
from finrl_lab.optim import sb3_optimizer_kwargs
from finrl_lab.training.checkpoint import (
    BEST_NAME,
    CHECKPOINT_DIR,
    load_checkpoint,
    prune_checkpoints,
    save_checkpoint,
    step_checkpoint_path,
)
from finrl_lab.training.config import LOWER_IS_BETTER, check_keys
from finrl_lab.training.experiment import load_experiment_panel, window_dates
from finrl_lab.training.logger import TrainingProgress
from finrl_lab.training.registry import (
    EvaluationOutcome,
    EvaluationRequest,
    RunContext,
    TrainOutcome,
    register_evaluator,
    register_trainer,
)
from finrl_lab.training.seeding import capture_rng_state, restore_rng_state

log = logging.getLogger(__name__)

ALGORITHMS: dict[str, type[BaseAlgorithm]] = {
    "ppo": PPO,
    "a2c": A2C,
    "sac": SAC,
    "td3": TD3,
    "ddpg": DDPG,
}

# PortfolioEnv options; n_envs is the batch size of the training env.
ENV_DEFAULTS: dict[str, Any] = {
    "lookback": 10,
    "features": "close",
    "cost_rate": 0.001,
    "reward": "log_return",
    "reward_scale": 1.0,
    "action_mode": "simplex",
    "softmax_temperature": 0.05,
    "episode_length": 252,
    "initial_value": 1.0,
    "ruin_fraction": 0.0,
    "n_envs": 8,
}

_OFF_POLICY_DEFAULTS = {
    "buffer_size": 100_000,
    "learning_starts": 1_000,
    "batch_size": 256,
    "train_freq": 1,
    "gradient_steps": 1,
    "gamma": 0.99,
    "tau": 0.005,
    "net_arch": [64, 64],
    "activation": "relu",
}

AGENT_DEFAULTS: dict[str, dict[str, Any]] = {
    "ppo": {
        "n_steps": 256,
        "batch_size": 256,
        "n_epochs": 4,
        "gamma": 0.99,
        "gae_lambda": 0.95,
        "clip_range": 0.2,
        "ent_coef": 0.0,
        "net_arch": [64, 64],
        "activation": "tanh",
    },
    "a2c": {
        "n_steps": 16,
        "gamma": 0.99,
        "gae_lambda": 1.0,
        "ent_coef": 0.0,
        "net_arch": [64, 64],
        "activation": "tanh",
    },
    "sac": dict(_OFF_POLICY_DEFAULTS),
    "td3": {**_OFF_POLICY_DEFAULTS, "action_noise_std": 0.1},
    "ddpg": {**_OFF_POLICY_DEFAULTS, "action_noise_std": 0.1},
}

ACTIVATIONS = {"tanh": torch.nn.Tanh, "relu": torch.nn.ReLU, "elu": torch.nn.ELU}

# Constructor arguments the trainer sets itself; the config may not pass them.
_MANAGED = {
    "policy",
    "env",
    "learning_rate",
    "policy_kwargs",
    "seed",
    "device",
    "verbose",
    "tensorboard_log",
    "_init_setup_model",
    "action_noise",
    "replay_buffer_class",
    "replay_buffer_kwargs",
    "rollout_buffer_class",
    "rollout_buffer_kwargs",
    "monitor_wrapper",
}
_OWN_KEYS = ("name", "net_arch", "activation", "action_noise_std")


def defaults(name: str) -> dict[str, Any]:
    """Return the default ``agent`` and ``env`` sections for an SB3 agent.

    The off-policy agents default to the softmax action mode: their deterministic
    actors start with outputs near zero, and under the simplex mode a policy whose
    outputs all fall to zero or below holds only cash and stops learning.
    """
    env = dict(ENV_DEFAULTS)
    if name in ("sac", "td3", "ddpg"):
        env["action_mode"] = "softmax"
    return {"agent": dict(AGENT_DEFAULTS[name]), "env": env}


def check_agent_types(name: str, section: dict[str, Any]) -> None:
    """Raise ConfigError when a key of ``section`` has another type than its default.

    Numbers must be numbers (an integer default takes an integer), lists must be
    lists and strings strings. Keys without a project default are left to
    stable-baselines3.
    """
    for key, value in section.items():
        default = AGENT_DEFAULTS[name].get(key)
        if default is None or key == "name":
            continue
        if isinstance(default, bool):
            valid = isinstance(value, bool)
        elif isinstance(default, int):
            valid = isinstance(value, int) and not isinstance(value, bool)
        elif isinstance(default, float):
            valid = isinstance(value, int | float) and not isinstance(value, bool)
        else:
            valid = isinstance(value, type(default))
        if not valid:
            raise ConfigError(
                f"agent.{key} is {value!r}, but {name} needs a "
                f"{type(default).__name__} like {default!r}",
                f"set agent.{key} to a {type(default).__name__}",
            )


def allowed_agent_keys(name: str) -> list[str]:
    """Return the ``agent`` keys accepted for ``name``: SB3 arguments and ours."""
    parameters = inspect.signature(ALGORITHMS[name].__init__).parameters
    sb3_keys = [key for key in parameters if key not in _MANAGED and key != "self"]
    keys = [key for key in _OWN_KEYS if key != "action_noise_std"]
    if name in ("td3", "ddpg"):
        keys.append("action_noise_std")
    return keys + sb3_keys


def validate(config: dict[str, Any]) -> None:
    """Check the ``agent`` and ``env`` sections of an SB3 experiment."""
    name = config["agent"]["name"]
    agent = config["agent"]
    check_keys(agent, dict.fromkeys(allowed_agent_keys(name)), "agent")
    check_agent_types(name, agent)
    check_keys(config["env"], ENV_DEFAULTS, "env")
    if agent["activation"] not in ACTIVATIONS:
        raise ConfigError(
            f"unknown agent.activation {agent['activation']!r}",
            f"use one of {', '.join(ACTIVATIONS)}",
        )
    net_arch = agent["net_arch"]
    if not isinstance(net_arch, list) or not all(
        isinstance(width, int) and width > 0 for width in net_arch
    ):
        raise ConfigError(
            f"agent.net_arch {net_arch!r} must be a list of layer widths",
            "write it like [64, 64]",
        )
    env = config["env"]
    for key in ("n_envs", "lookback"):
        if not isinstance(env[key], int) or env[key] < 1:
            raise ConfigError(f"env.{key} {env[key]!r} must be an integer >= 1")
    if env["episode_length"] is not None and (
        not isinstance(env["episode_length"], int) or env["episode_length"] < 2
    ):
        raise ConfigError(
            f"env.episode_length {env['episode_length']!r} must be an integer >= 2",
            "or null for the whole training window",
        )
    if not isinstance(env["features"], str):
        raise ConfigError(
            f"env.features {env['features']!r} must be a feature set name",
            "use close, ohlc or a set of finrl_lab.data.features",
        )
    if name in ("ppo", "a2c") and agent["n_steps"] * env["n_envs"] < 2:
        raise ConfigError("agent.n_steps * env.n_envs must be at least 2")
    # Building the three envs checks the remaining env options against the
    # data (feature set, episode length against the training window).
    for window in ("train", "valid", "test"):
        make_env(config, window)


# -- environments ---------------------------------------------------------------


def make_env(
    config: dict[str, Any],
    window: str,
    *,
    pool: str | None = None,
    start: str | None = None,
    end: str | None = None,
) -> PortfolioEnv:
    """Build PortfolioEnv on a window of the config's data.

    The training env uses ``env.episode_length``; validation and test envs run
    their whole window as one episode.
    """
    options = {k: v for k, v in config["env"].items() if k != "n_envs"}
    first, last = window_dates(config, window)
    if window != "train":
        options["episode_length"] = None
    panel = load_experiment_panel(config)
    global_pool = config["pool"]["global"]
    if pool is not None and global_pool is None:
        # An evaluation pool sits inside the global pool the model was trained on.
        global_pool = list(build_market(panel, config["pool"]["name"]).tickers)
    return PortfolioEnv(
        panel,
        pool or config["pool"]["name"],
        global_pool=global_pool,
        start=start or first,
        end=end or last,
        **options,
    )


class SB3PolicyAgent(PolicyAgent):
    """A stable-baselines3 model as a project policy agent."""

    def __init__(self, model: BaseAlgorithm, name: str) -> None:
        self.model = model
        self.name = name

    def act(
        self, observation: dict[str, np.ndarray], deterministic: bool = True
    ) -> np.ndarray:
        action, _ = self.model.predict(observation, deterministic=deterministic)
        return action


# -- model ----------------------------------------------------------------------


def build_model(
    config: dict[str, Any],
    env: Any,
    seed: int,
    device: str,
    *,
    for_inference: bool = False,
) -> BaseAlgorithm:
    """Build the SB3 model the config describes, seeded and on ``device``.

    :param for_inference: shrink the replay buffer to one slot; the model is
        only used to act.
    """
    name = config["agent"]["name"]
    agent = dict(config["agent"])
    agent.pop("name")
    policy_kwargs = {
        "net_arch": list(agent.pop("net_arch")),
        "activation_fn": ACTIVATIONS[agent.pop("activation")],
        **sb3_optimizer_kwargs(config["optimizer"]),
    }
    noise_std = agent.pop("action_noise_std", None)
    extra: dict[str, Any] = {}
    n_actions = env.action_space.shape[0]
    if noise_std:
        extra["action_noise"] = NormalActionNoise(
            np.zeros(n_actions), np.full(n_actions, float(noise_std))
        )
    if for_inference and name in ("sac", "td3", "ddpg"):
        agent["buffer_size"] = 1
        agent["learning_starts"] = 0
    elif for_inference:
        agent["n_steps"] = 2
        if "batch_size" in agent:
            agent["batch_size"] = 2
    try:
        return ALGORITHMS[name](
            "MultiInputPolicy",
            env,
            learning_rate=float(config["optimizer"].get("lr", 3e-4)),
            policy_kwargs=policy_kwargs,
            seed=seed,
            device=device,
            verbose=0,
            **agent,
            **extra,
        )
    except (ValueError, TypeError, AssertionError) as exc:
        raise ConfigError(
            f"stable-baselines3 rejected the {name} settings: {exc}",
            "fix the agent section",
        ) from None


def capture_model_state(model: BaseAlgorithm, env: BatchedPortfolioEnv) -> dict:
    """Return everything needed to continue training exactly, as safe types."""
    state_dicts, variables = model._get_torch_save_params()
    state: dict[str, Any] = {
        "parameters": model.get_parameters(),
        "variables": {
            name: _attribute(model, name).detach().cpu().clone() for name in variables
        },
        "num_timesteps": int(model.num_timesteps),
        "n_updates": int(model._n_updates),
        "episode_num": int(model._episode_num),
        "last_obs": {
            k: torch.from_numpy(np.array(v)) for k, v in model._last_obs.items()
        },
        "last_episode_starts": torch.from_numpy(np.array(model._last_episode_starts)),
        "action_space_rng": model.action_space.np_random.bit_generator.state,
        "env": env.get_state(),
        "rng": capture_rng_state(),
    }
    if isinstance(model, OffPolicyAlgorithm):
        state["replay_buffer"] = _replay_buffer_state(model.replay_buffer)
    return state


def restore_model_state(
    model: BaseAlgorithm, env: BatchedPortfolioEnv, state: dict
) -> None:
    """Put a state from :func:`capture_model_state` back into model and env."""
    model.set_parameters(state["parameters"], exact_match=True, device=model.device)
    for name, tensor in state["variables"].items():
        _attribute(model, name).data.copy_(tensor.to(model.device))
    model.num_timesteps = state["num_timesteps"]
    model._n_updates = state["n_updates"]
    model._episode_num = state["episode_num"]
    model._last_obs = {k: v.numpy() for k, v in state["last_obs"].items()}
    model._last_episode_starts = state["last_episode_starts"].numpy()
    model.action_space.np_random.bit_generator.state = state["action_space_rng"]
    env.set_state(state["env"])
    if "replay_buffer" in state:
        _restore_replay_buffer(model.replay_buffer, state["replay_buffer"])
    restore_rng_state(state["rng"])


def _attribute(model: BaseAlgorithm, dotted: str) -> Any:
    value: Any = model
    for part in dotted.split("."):
        value = getattr(value, part)
    return value


def _replay_buffer_state(buffer: DictReplayBuffer) -> dict[str, Any]:
    filled = buffer.buffer_size if buffer.full else buffer.pos

    def cut(array: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(np.array(array[:filled]))

    return {
        "pos": int(buffer.pos),
        "full": bool(buffer.full),
        "observations": {k: cut(v) for k, v in buffer.observations.items()},
        "next_observations": {k: cut(v) for k, v in buffer.next_observations.items()},
        "actions": cut(buffer.actions),
        "rewards": cut(buffer.rewards),
        "dones": cut(buffer.dones),
        "timeouts": cut(buffer.timeouts),
    }


def _restore_replay_buffer(buffer: DictReplayBuffer, state: dict[str, Any]) -> None:
    filled = len(state["actions"])
    if filled > buffer.buffer_size:
        raise ConfigError(
            f"the checkpoint's replay buffer contains {filled} steps, more than "
            f"agent.buffer_size {buffer.buffer_size}",
            "resume with the run's own config",
        )
    for key, value in state["observations"].items():
        buffer.observations[key][:filled] = value.numpy()
    for key, value in state["next_observations"].items():
        buffer.next_observations[key][:filled] = value.numpy()
    for key in ("actions", "rewards", "dones", "timeouts"):
        getattr(buffer, key)[:filled] = state[key].numpy()
    buffer.pos = state["pos"]
    buffer.full = state["full"]


# -- the training run -----------------------------------------------------------


class _Supervisor(BaseCallback):
    """Validation, best-checkpoint selection and periodic checkpoints."""

    def __init__(
        self,
        config: dict[str, Any],
        context: RunContext,
        train_env: BatchedPortfolioEnv,
        progress: TrainingProgress,
    ) -> None:
        super().__init__()
        self.config = config
        self.context = context
        self.train_env = train_env
        self.progress = progress
        self.valid_env = make_env(config, "valid")
        evaluation, budget = config["evaluation"], config["budget"]
        self.metric = evaluation["metric"]
        self.eval_every = evaluation["every"]
        self.checkpoint_every = budget["checkpoint_every"]
        self.next_eval = self.eval_every
        self.next_checkpoint = self.checkpoint_every
        self.validation: list[tuple[int, float]] = []
        self.best_value: float | None = None
        self.best_step: int | None = None
        self.checkpoint_dir = context.run_dir / CHECKPOINT_DIR

    # state saved with each checkpoint
    def state(self) -> dict[str, Any]:
        return {
            "next_eval": self.next_eval,
            "next_checkpoint": self.next_checkpoint,
            "validation": [list(item) for item in self.validation],
            "best_value": self.best_value,
            "best_step": self.best_step,
        }

    def load_state(self, state: dict[str, Any]) -> None:
        self.next_eval = state["next_eval"]
        self.next_checkpoint = state["next_checkpoint"]
        self.validation = [(int(s), float(v)) for s, v in state["validation"]]
        self.best_value = state["best_value"]
        self.best_step = state["best_step"]

    def _on_step(self) -> bool:
        self.progress.update(self.num_timesteps)
        return True

    def _on_rollout_start(self) -> None:
        step = self.model.num_timesteps
        if step >= self.next_eval:
            self.validate(step)
            self.next_eval = (step // self.eval_every + 1) * self.eval_every
        if step >= self.next_checkpoint:
            self.next_checkpoint = (
                step // self.checkpoint_every + 1
            ) * self.checkpoint_every
            self.save(step)

    def _on_training_end(self) -> None:
        step = self.model.num_timesteps
        if not self.validation or self.validation[-1][0] != step:
            self.validate(step)
        self.save(step)

    def validate(self, step: int) -> None:
        """Backtest the deterministic policy on the validation window."""
        agent = SB3PolicyAgent(self.model, self.config["agent"]["name"])
        result = run_policy_agent(agent, self.valid_env)
        value = float(result.metrics[self.metric])
        self.validation.append((step, value))
        logger = self.context.logger
        if logger is not None:
            logger.log_many(
                {f"valid/{k}": float(v) for k, v in result.metrics.items()}, step
            )
        self.progress.set_validation(self.metric, value, step)
        if self.is_improvement(value):
            self.best_value, self.best_step = value, step
            save_checkpoint(
                self.checkpoint_dir / BEST_NAME,
                {
                    "step": step,
                    "metric": self.metric,
                    "value": value,
                    "policy": self.model.policy.state_dict(),
                    "observation_shapes": _observation_shapes(self.model),
                },
                self.config,
            )
        log.info("step %d: validation %s %.4f", step, self.metric, value)

    def is_improvement(self, value: float) -> bool:
        """Tell whether a validation value beats the best so far.

        The first value always counts, so a best checkpoint exists even when
        every value is NaN (a policy that stays in cash has no Sharpe ratio).
        After that a NaN never wins, and any finite value beats a NaN.
        """
        best = self.best_value
        if best is None:
            return True
        if not np.isfinite(value):
            return False
        if not np.isfinite(best):
            return True
        if self.metric in LOWER_IS_BETTER:
            return value < best
        return value > best

    def save(self, step: int) -> None:
        """Write the full training state and drop the oldest checkpoints."""
        payload = capture_model_state(self.model, self.train_env)
        payload["step"] = step
        payload["supervisor"] = self.state()
        path = step_checkpoint_path(self.context.run_dir, step)
        save_checkpoint(path, payload, self.config)
        keep = self.config["budget"]["keep_checkpoints"]
        prune_checkpoints(self.context.run_dir, keep)


def _observation_shapes(model: BaseAlgorithm) -> dict[str, list[int]]:
    return {key: list(space.shape) for key, space in model.observation_space.items()}


@register_trainer(*ALGORITHMS, validate=validate, defaults=defaults)
def train(config: dict[str, Any], context: RunContext) -> TrainOutcome:
    """Train one seed of an SB3 agent; return its test metrics and baselines'."""
    name = config["agent"]["name"]
    single = make_env(config, "train")
    train_env = BatchedPortfolioEnv(single, config["env"]["n_envs"])
    model = build_model(config, train_env, context.seed, context.device)
    if context.logger is not None:
        model.set_logger(context.logger.sb3_logger())
    total = config["budget"]["steps"]
    resumed = None
    if context.resume_from is not None:
        resumed = load_checkpoint(context.resume_from, config)
    start = 0 if resumed is None else resumed["step"]
    label = f"{name} seed {context.seed}"
    progress = TrainingProgress(
        total, label, enabled=config["logging"]["progress"], start=start
    )
    supervisor = _Supervisor(config, context, train_env, progress)
    if resumed is not None:
        restore_model_state(model, train_env, resumed)
        supervisor.load_state(resumed["supervisor"])
        log.info("resumed %s seed %d at step %d", name, context.seed, start)

    began = time.perf_counter()
    with progress:
        model.learn(
            total_timesteps=max(total - start, 0),
            callback=supervisor,
            reset_num_timesteps=resumed is None,
        )
    seconds = time.perf_counter() - began
    steps_per_second = (model.num_timesteps - start) / max(seconds, 1e-9)

    best_path = context.run_dir / CHECKPOINT_DIR / BEST_NAME
    best = load_checkpoint(best_path, config, map_location=str(model.device))
    model.policy.load_state_dict(best["policy"])
    test_env = make_env(config, "test")
    result = run_policy_agent(SB3PolicyAgent(model, name), test_env)
    baselines = _baselines(config, test_env)
    return TrainOutcome(
        test_metrics={k: float(v) for k, v in result.metrics.items()},
        baseline_metrics={b.agent: _floats(b.metrics) for b in baselines},
        best_checkpoint=best_path,
        validation=list(supervisor.validation),
        extra={
            "best_step": best["step"],
            "steps": int(model.num_timesteps),
            "train_steps_per_second": steps_per_second,
            "test_window": _window_text(test_env),
        },
    )


def _baselines(config: dict[str, Any], env: PortfolioEnv) -> list[BacktestResult]:
    names = config["evaluation"]["baselines"]
    if not names:
        return []
    return backtest_agents(env.market, names, env.cost_rate, env.initial_value)


def _floats(metrics: dict[str, Any]) -> dict[str, float]:
    return {k: float(v) for k, v in metrics.items()}


def _window_text(env: PortfolioEnv) -> tuple[str, str]:
    times = env.market.valuation_times
    return (str(times[0].date()), str(times[-1].date()))


def evaluate(request: EvaluationRequest) -> EvaluationOutcome:
    """Backtest a trained checkpoint on a pool and window (default: the test window)."""
    config = request.config
    name = config["agent"]["name"]
    env = make_env(
        config, "test", pool=request.pool, start=request.start, end=request.end
    )
    record = load_checkpoint(request.checkpoint, config, map_location="cpu")
    shapes = {key: list(space.shape) for key, space in env.observation_space.items()}
    if "observation_shapes" in record and record["observation_shapes"] != shapes:
        raise ConfigError(
            f"the model was trained on observations {record['observation_shapes']}, "
            f"but pool {request.pool or config['pool']['name']!r} gives {shapes}",
            "evaluate on a pool of the same global pool (pool.global) and lookback",
        )
    policy = checkpoint_policy(record)
    if policy is None:
        raise ConfigError(
            f"checkpoint {str(request.checkpoint)!r} contains no policy weights",
            f"use the run's {BEST_NAME} or a step checkpoint",
        )
    model = build_model(
        config,
        DummyVecEnv([lambda: env]),
        request.seed,
        str(get_device(request.device)),
        for_inference=True,
    )
    model.policy.load_state_dict(policy)
    result = run_policy_agent(SB3PolicyAgent(model, name), env)
    baselines = _baselines(config, env)
    return EvaluationOutcome(
        metrics=_floats(result.metrics),
        baseline_metrics={b.agent: _floats(b.metrics) for b in baselines},
        window=_window_text(env),
    )


register_evaluator(*ALGORITHMS)(evaluate)


def checkpoint_policy(record: dict[str, Any]) -> dict[str, Any] | None:
    """Return the policy weights of a best or periodic checkpoint, or None."""
    if "policy" in record:
        return record["policy"]
    return record.get("parameters", {}).get("policy")
