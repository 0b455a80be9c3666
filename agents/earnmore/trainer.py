"""The ``earnmore`` trainer: train once on the global pool, evaluate on any pool.

``finrl-lab train`` calls :func:`train_earnmore` once per seed. Config sections
read here (see :mod:`finrl_lab.training.config` for the common ones):

- ``pool``: ``global`` is the pool the model is trained on (``name`` when
  null); ``name`` and ``env.eval_pools`` are the pools backtested on the
  validation and test windows, each a subset of the global pool;
- ``env``: ``cost_rate`` (fraction, default 0.001; 0 is the EarnMore paper's
  cost-free setting), ``features`` (``auto``, ``alpha158``, ``close`` or
  ``ohlc``), ``data_start`` and ``eval_pools`` (see :data:`ENV_DEFAULTS`);
- ``agent``: ``name: earnmore`` and any :class:`EarnMoreSettings` key;
  ``masking: false`` and ``reweighting: false`` give the two ablations;
- ``budget.steps``: training days simulated over all parallel episodes;
- ``evaluation``: ``every`` (steps between validations), ``metric`` (averaged
  over the eval pools on the validation window, picks ``best.pt``) and
  ``baselines`` (classic agents backtested beside it on the test window).

Only the checkpoint chosen on validation is backtested on the test window,
once, at the end. ``finrl-lab evaluate --checkpoint RUN --pool POOL`` runs
:func:`evaluate_earnmore` on any subset of the training global pool.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from finrl_lab.agents.earnmore.agent import EarnMoreAgent, backtest_pool, make_env
from finrl_lab.agents.earnmore.dataset import (
    ENV_DEFAULTS,
    DataSpec,
    PreparedData,
    check_in_global_pool,
    load_global_panel,
    prepare_data,
)
from finrl_lab.agents.earnmore.episodes import TrainingEpisodes
from finrl_lab.agents.earnmore.learner import EarnMoreLearner
from finrl_lab.agents.earnmore.model import EarnMoreModel, gather_windows
from finrl_lab.agents.earnmore.policy import reweight
from finrl_lab.agents.earnmore.replay import IndexReplay
from finrl_lab.agents.earnmore.settings import EarnMoreSettings
from finrl_lab.backtest import BacktestResult, backtest_agents, run_policy_agent
from finrl_lab.data.pools import resolve_pool
from finrl_lab.envs.portfolio import PortfolioEnv
from finrl_lab.training.checkpoint import (
    BEST_NAME,
    CHECKPOINT_DIR,
    load_checkpoint,
    prune_checkpoints,
    save_checkpoint,
    step_checkpoint_path,
)
from finrl_lab.training.config import LOWER_IS_BETTER, check_keys
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


def defaults(name: str) -> dict[str, Any]:
    """Return the default ``agent``, ``env`` and ``budget`` sections of EarnMore."""
    return {
        "agent": EarnMoreSettings().to_dict(),
        "env": dict(ENV_DEFAULTS),
        "budget": {"steps": 8192, "checkpoint_every": 4096},
        "evaluation": {"every": 2048},
    }


def validate(config: dict[str, Any]) -> None:
    """Check the ``agent`` and ``env`` sections and the pools; raise ConfigError."""
    agent = {k: v for k, v in config["agent"].items() if k != "name"}
    check_keys(agent, EarnMoreSettings().to_dict(), "agent")
    EarnMoreSettings.from_dict(agent)
    DataSpec.from_config(config)


@register_trainer("earnmore", validate=validate, defaults=defaults)
def train_earnmore(config: dict[str, Any], context: RunContext) -> TrainOutcome:
    """Train EarnMore for one seed; return its test metrics on every eval pool."""
    settings = EarnMoreSettings.from_dict(config["agent"])
    spec = DataSpec.from_config(config)
    # NOTE: every tensor follows context.device, but training has only been
    # run on CPU so far.
    device = torch.device(context.device)
    rng = np.random.default_rng(context.seed)
    run_dir = Path(context.run_dir)

    data = prepare_data(spec)
    agent = _new_agent(data, spec, settings, device)
    features = torch.as_tensor(data.features, device=device)
    available = torch.as_tensor(data.available, device=device)
    learner = EarnMoreLearner(
        agent.model, settings, config["optimizer"], features, available
    )
    first, last = data.train_rows
    episodes = TrainingEpisodes(
        data.relatives, data.available, first, last, settings, spec.cost_rate, rng
    )
    replay = IndexReplay(settings.buffer_size, data.panel.n_assets)
    loop = _Progress(
        config["evaluation"]["every"], config["budget"]["checkpoint_every"]
    )
    if context.resume_from is not None:
        record = load_checkpoint(context.resume_from, config, str(device))
        _restore(record, agent, learner, episodes, replay, rng, loop)
        log.info("resumed from %s at step %d", context.resume_from, loop.steps)

    budget = config["budget"]
    evaluation = config["evaluation"]
    best_path = run_dir / CHECKPOINT_DIR / BEST_NAME
    days_per_round = settings.n_envs * settings.horizon
    while loop.steps < budget["steps"]:
        _collect(agent.model, episodes, replay, features, settings)
        loop.steps += days_per_round
        if replay.size >= settings.learning_starts:
            began = time.perf_counter()
            agent.model.train()
            losses = [
                learner.update(replay.sample(rng, settings.batch_size))
                for _ in range(settings.updates_per_horizon)
            ]
            loop.updates += settings.updates_per_horizon
            loop.update_seconds += time.perf_counter() - began
            loop.latest = {
                key: float(torch.stack([row[key] for row in losses]).mean())
                for key in losses[0]
            }
        done = loop.steps >= budget["steps"]
        if loop.steps >= loop.next_eval or done:
            loop.next_eval += evaluation["every"]
            _validate_and_select(agent, data, spec, config, loop, context, best_path)
        if loop.steps >= loop.next_checkpoint or done:
            loop.next_checkpoint += budget["checkpoint_every"]
            state = _training_state(agent, learner, episodes, replay, rng, loop)
            save_checkpoint(step_checkpoint_path(run_dir, loop.steps), state, config)
            prune_checkpoints(run_dir, budget["keep_checkpoints"])

    record = load_checkpoint(best_path, config, str(device))
    best = EarnMoreAgent.from_record(record, str(device))
    tests = _test(best, data, spec, evaluation["baselines"])
    trade = spec.eval_pools[0].name
    agent_name = _agent_label(settings)
    return TrainOutcome(
        test_metrics=tests[trade]["metrics"],
        baseline_metrics=tests[trade]["baselines"],
        best_checkpoint=best_path,
        validation=loop.validation,
        extra={
            "test_window": tests[trade]["window"],
            "agent_variant": agent_name,
            "best_step": record["step"],
            "pools": {
                name: {"metrics": t["metrics"], "baselines": t["baselines"]}
                for name, t in tests.items()
            },
            "gradient_updates": loop.updates,
            "update_seconds": loop.update_seconds,
            "training_days": loop.steps,
            "split": spec.split.name,
            "cost_rate": spec.cost_rate,
        },
    )


class _Progress:
    """Counters of one training run, saved in periodic checkpoints."""

    def __init__(self, eval_every: int, checkpoint_every: int) -> None:
        self.steps = 0
        self.updates = 0
        self.update_seconds = 0.0
        self.next_eval = eval_every
        self.next_checkpoint = checkpoint_every
        self.best_value: float | None = None
        self.validation: list[tuple[int, float]] = []
        self.latest: dict[str, float] = {}

    def state(self) -> dict[str, Any]:
        return {
            "steps": self.steps,
            "updates": self.updates,
            "update_seconds": self.update_seconds,
            "next_eval": self.next_eval,
            "next_checkpoint": self.next_checkpoint,
            "best_value": self.best_value,
            "validation": [list(item) for item in self.validation],
        }

    def load_state(self, state: dict[str, Any]) -> None:
        for key in ("steps", "updates", "next_eval", "next_checkpoint"):
            setattr(self, key, int(state[key]))
        self.update_seconds = float(state["update_seconds"])
        self.best_value = state["best_value"]
        self.validation = [(int(s), float(v)) for s, v in state["validation"]]


def _agent_label(settings: EarnMoreSettings) -> str:
    if not settings.masking:
        return "earnmore-no-masking"
    if not settings.reweighting:
        return "earnmore-no-reweighting"
    return "earnmore"


def _new_agent(
    data: PreparedData,
    spec: DataSpec,
    settings: EarnMoreSettings,
    device: torch.device,
) -> EarnMoreAgent:
    model = EarnMoreModel(data.feature_names, data.panel.n_assets, settings).to(device)
    extra = {"global_pool": spec.global_pool.name, "split": spec.split.name}
    return EarnMoreAgent(
        model,
        settings,
        data.panel.tickers,
        data.feature_set,
        data.feature_names,
        data.normalizer,
        extra,
    )


@torch.no_grad()
def _collect(
    model: EarnMoreModel,
    episodes: TrainingEpisodes,
    replay: IndexReplay,
    features: torch.Tensor,
    settings: EarnMoreSettings,
) -> None:
    """Simulate ``horizon`` days of every training episode into the replay."""
    model.eval()
    device = features.device
    for _ in range(settings.horizon):
        days = episodes.day.copy()
        visible = episodes.visible
        weights = episodes.weights.astype(np.float32)
        windows = gather_windows(
            features, torch.as_tensor(days, device=device), settings.lookback
        )
        visible_t = torch.as_tensor(visible, device=device)
        weights_t = torch.as_tensor(weights, device=device)
        rho = model.representation(windows, visible_t)
        logits, _ = model.actor.sample(rho, weights_t)
        # Training actions give weight to every stock; the episode keeps the
        # weight of stocks outside the pool as cash and the mask penalty
        # teaches the actor to avoid them.
        targets = reweight(logits, model.temperature).cpu().numpy()
        rewards, drifted = episodes.step(targets)
        replay.add(days, visible, weights, targets, rewards, drifted)


def _validate_and_select(
    agent: EarnMoreAgent,
    data: PreparedData,
    spec: DataSpec,
    config: dict[str, Any],
    loop: _Progress,
    context: RunContext,
    best_path: Path,
) -> None:
    """Backtest every eval pool on the validation window; keep the best model."""
    metric = config["evaluation"]["metric"]
    start, end = spec.split.valid
    scores = {}
    for pool in spec.eval_pools:
        run = backtest_pool(
            agent, data.panel, pool, start, end, spec.cost_rate, data.features
        )
        scores[pool.name] = float(run.result.metrics[metric])
    value = float(np.mean(list(scores.values())))
    loop.validation.append((loop.steps, value))
    row = {f"train/{k}": v for k, v in loop.latest.items()}
    row.update({f"valid/{metric}/{k}": v for k, v in scores.items()})
    row[f"valid/{metric}"] = value
    row["train/updates"] = loop.updates
    row["train/updates_per_second"] = loop.updates / max(loop.update_seconds, 1e-9)
    if context.logger is not None:
        context.logger.log_many(row, loop.steps)
    log.info(
        "step %d: validation %s %.3f, %d updates at %.1f/s",
        loop.steps,
        metric,
        value,
        loop.updates,
        row["train/updates_per_second"],
    )
    if _is_improvement(value, loop.best_value, metric):
        loop.best_value = value
        payload = agent.checkpoint({"step": loop.steps, "validation": value})
        save_checkpoint(best_path, payload, config)


def _is_improvement(value: float, best: float | None, metric: str) -> bool:
    # The first value always counts, so that best.pt exists; NaN never beats it.
    if best is None:
        return True
    if not np.isfinite(value):
        return False
    if not np.isfinite(best):
        return True
    return value < best if metric in LOWER_IS_BETTER else value > best


def _test(
    agent: EarnMoreAgent,
    data: PreparedData,
    spec: DataSpec,
    baselines: list[str],
) -> dict[str, dict[str, Any]]:
    """Backtest the chosen agent and the baselines on the test window, per pool."""
    start, end = spec.split.test
    out: dict[str, dict[str, Any]] = {}
    for pool in spec.eval_pools:
        env = make_env(
            agent, data.panel, pool, start, end, spec.cost_rate, data.features
        )
        out[pool.name] = _backtest_env(agent, env, baselines)
    return out


def _backtest_env(
    agent: EarnMoreAgent, env: PortfolioEnv, baselines: list[str]
) -> dict[str, Any]:
    result = run_policy_agent(agent, env, deterministic=True)
    others: list[BacktestResult] = backtest_agents(
        env.market, baselines, env.cost_rate, env.initial_value
    )
    times = env.market.valuation_times
    return {
        "metrics": _plain(result.metrics),
        "baselines": {b.agent: _plain(b.metrics) for b in others},
        "window": (str(times[0].date()), str(times[-1].date())),
    }


def _plain(metrics: dict[str, Any]) -> dict[str, float]:
    return {k: float(v) for k, v in metrics.items()}


# -- periodic checkpoints and resume ------------------------------------------------


def _training_state(
    agent: EarnMoreAgent,
    learner: EarnMoreLearner,
    episodes: TrainingEpisodes,
    replay: IndexReplay,
    rng: np.random.Generator,
    loop: _Progress,
) -> dict[str, Any]:
    size = replay.size
    return {
        **agent.checkpoint({"step": loop.steps}),
        "learner": learner.state_dict(),
        "progress": loop.state(),
        "episodes": {
            "day": torch.from_numpy(episodes.day.copy()),
            "steps_left": torch.from_numpy(episodes.steps_left.copy()),
            "pool": torch.from_numpy(episodes.pool.copy()),
            "weights": torch.from_numpy(episodes.weights.copy()),
        },
        "replay": {
            "size": size,
            "cursor": replay.cursor,
            **{
                name: torch.from_numpy(getattr(replay, name)[:size].copy())
                for name in replay.FIELDS
            },
        },
        "generator": _generator_state(rng),
        "rng": capture_rng_state(),
    }


def _restore(
    record: dict[str, Any],
    agent: EarnMoreAgent,
    learner: EarnMoreLearner,
    episodes: TrainingEpisodes,
    replay: IndexReplay,
    rng: np.random.Generator,
    loop: _Progress,
) -> None:
    agent.model.load_state_dict(record["model"])
    learner.load_state_dict(record["learner"])
    loop.load_state(record["progress"])
    for name, value in record["episodes"].items():
        setattr(episodes, name, value.numpy().copy())
    stored = record["replay"]
    size = int(stored["size"])
    for name in replay.FIELDS:
        getattr(replay, name)[:size] = stored[name].numpy()
    replay.size = size
    replay.cursor = int(stored["cursor"])
    rng.bit_generator.state = _generator_from_state(record["generator"])
    restore_rng_state(record["rng"])


def _generator_state(rng: np.random.Generator) -> dict[str, Any]:
    # PCG64 keeps 128-bit integers; store them as text for a weights-only load.
    state = rng.bit_generator.state
    return {
        "bit_generator": state["bit_generator"],
        "state": str(state["state"]["state"]),
        "inc": str(state["state"]["inc"]),
        "has_uint32": int(state["has_uint32"]),
        "uinteger": int(state["uinteger"]),
    }


def _generator_from_state(stored: dict[str, Any]) -> dict[str, Any]:
    return {
        "bit_generator": stored["bit_generator"],
        "state": {"state": int(stored["state"]), "inc": int(stored["inc"])},
        "has_uint32": stored["has_uint32"],
        "uinteger": stored["uinteger"],
    }


# -- evaluation of a trained model on any pool --------------------------------------


def evaluate_earnmore(request: EvaluationRequest) -> EvaluationOutcome:
    """Backtest a trained EarnMore checkpoint on any subset of its global pool.

    The pool is ``request.pool`` (a name, a YAML file or ``A,B,C``) or the
    run's ``pool.name``; the window is the run's test window unless
    ``request.start`` or ``request.end`` is given.

    :raises PoolError: a ticker of the pool was not in the training global pool.
    """
    config = request.config
    spec = DataSpec.from_config(config)
    record = load_checkpoint(request.checkpoint, config, "cpu")
    agent = EarnMoreAgent.from_record(record, request.device)
    pool = resolve_pool(request.pool or config["pool"]["name"])
    check_in_global_pool(pool, agent.tickers, spec.global_pool.name)
    panel = load_global_panel(spec, agent.tickers)
    start, end = spec.split.test
    env = make_env(
        agent, panel, pool, request.start or start, request.end or end, spec.cost_rate
    )
    outcome = _backtest_env(agent, env, config["evaluation"]["baselines"])
    return EvaluationOutcome(
        metrics=outcome["metrics"],
        baseline_metrics=outcome["baselines"],
        window=outcome["window"],
        extra={"pool": pool.name, "tickers": list(pool.tickers)},
    )


register_evaluator("earnmore")(evaluate_earnmore)
