"""The ``trace_sac`` trainer: Trace-SAC on near-stationary crypto segments.

The data file is cut into segments (``env.segmentation``), each split by whole
days into train, validation and test parts. Training episodes are drawn across
the train parts. Every ``evaluation.every`` steps the deterministic policy runs
over all validation parts, and the checkpoint best by ``evaluation.metric`` is
kept. Every ``agent.diagnostics_every`` steps the critic's bias and variance
against Monte-Carlo returns are measured on the train parts. At the end the best
checkpoint runs once over all test parts, whose value paths are chained in time
order and compared with buying and holding the asset over the same parts.

The config's ``splits`` dates bound the span that is segmented, from the train
start to the test end. Inside that span the segment parts, not those dates,
separate train, validation and test rows.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import logging
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from finrl_lab.agents.trace_sac.agent import TraceSAC, TraceSACConfig
from finrl_lab.agents.trace_sac.diagnostics import (
    plot_value_diagnostics,
    value_diagnostics,
)
from finrl_lab.agents.trace_sac.networks import squashed_log_prob
from finrl_lab.agents.trace_sac.replay import ChunkReplay
from finrl_lab.agents.trace_sac.rollout import chain_values, rollout_segments
from finrl_lab.data.panel import Panel, interval_seconds
from finrl_lab.envs.crypto import FILLS, CryptoTradingEnv, load_crypto_panel
from finrl_lab.envs.segmentation import (
    METHODS,
    Segment,
    make_segments,
    summarize_segments,
)
from finrl_lab.errors import ConfigError
from finrl_lab.metrics import compute_metrics
from finrl_lab.training.checkpoint import (
    BEST_NAME,
    CHECKPOINT_DIR,
    load_checkpoint,
    prune_checkpoints,
    save_checkpoint,
    step_checkpoint_path,
)
from finrl_lab.training.config import check_keys
from finrl_lab.training.registry import (
    EvaluationOutcome,
    EvaluationRequest,
    RunContext,
    TrainOutcome,
    register_evaluator,
    register_trainer,
)
from finrl_lab.training.seeding import seed_everything

log = logging.getLogger(__name__)

# Keys of the agent section beyond the learner's hyperparameters.
TRAINING_DEFAULTS: dict[str, Any] = {
    "buffer_size": 100_000,
    "learning_starts": 1_000,
    "diagnostics_every": 5_000,
    "diagnostics_tolerance": 0.01,
}
ENV_DEFAULTS: dict[str, Any] = {
    "lookback": 32,
    "features": None,
    "fee_bps": 4.0,
    "spread_bps": 2.0,
    "fill": "next_open",
    "long_limit": 1.0,
    "short_limit": 1.0,
    "reward_scale": "auto",
    "episode_length": None,
    "segmentation": {
        "method": "fixed",
        "block_days": 30.0,
        "min_days": 20.0,
        "penalty": None,
        "proportions": [20, 5, 5],
    },
}


def _agent_defaults() -> dict[str, Any]:
    learner = dataclasses.asdict(TraceSACConfig())
    # None: use the config's top-level ``optimizer`` section.
    learner["actor_optimizer"] = None
    learner["critic_optimizer"] = None
    return {**learner, **TRAINING_DEFAULTS}


def trace_sac_defaults(name: str) -> dict[str, Any]:
    """Return trace_sac's default ``pool``, ``env``, ``agent`` and ``evaluation``.

    The data section keeps the common default, so ``config show`` works without
    a crypto file. A real run names its candle file in ``data.source``.
    """
    return {
        "pool": {"name": None, "global": None},
        "env": ENV_DEFAULTS,
        "agent": _agent_defaults(),
        "evaluation": {"baselines": []},
    }


def learner_config(config: dict[str, Any]) -> TraceSACConfig:
    """Build the learner's hyperparameters from the ``agent`` section."""
    agent = {k: v for k, v in config["agent"].items() if k != "name"}
    for key in TRAINING_DEFAULTS:
        agent.pop(key, None)
    for key in ("actor_optimizer", "critic_optimizer"):
        if agent.get(key) is None:
            agent[key] = dict(config["optimizer"])
    return TraceSACConfig.from_dict(agent)


def validate_trace_sac(config: dict[str, Any]) -> None:
    """Check the ``data``, ``env`` and ``agent`` sections of a trace_sac config."""
    env = config["env"]
    check_keys(env, ENV_DEFAULTS, "env")
    check_keys(env["segmentation"], ENV_DEFAULTS["segmentation"], "env.segmentation")
    if env["segmentation"]["method"] not in METHODS:
        raise ConfigError(
            f"unknown env.segmentation.method {env['segmentation']['method']!r}",
            f"use one of {', '.join(METHODS)}",
        )
    if env["fill"] not in FILLS:
        raise ConfigError(
            f"unknown env.fill {env['fill']!r}", f"use one of {', '.join(FILLS)}"
        )
    scale = env["reward_scale"]
    if scale != "auto" and (
        isinstance(scale, bool) or not isinstance(scale, int | float) or scale <= 0
    ):
        raise ConfigError(
            f"invalid env.reward_scale {scale!r}", "use 'auto' or a positive number"
        )
    if not isinstance(env["lookback"], int) or env["lookback"] < 1:
        raise ConfigError(f"invalid env.lookback {env['lookback']!r}", "use 1 or more")
    check_keys(config["agent"], {"name": None, **_agent_defaults()}, "agent")
    learner_config(config)
    for key in ("buffer_size", "learning_starts", "diagnostics_every"):
        value = config["agent"][key]
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ConfigError(f"agent.{key} {value!r} must be an integer >= 1")


# -- data and envs ------------------------------------------------------------


def load_trace_sac_panel(config: dict[str, Any]) -> Panel:
    """Load the one asset to trade and cut it to the splits' span.

    A candle file in ``data.source`` is read with :func:`load_crypto_panel`,
    which sorts rows by time. Any other source goes through the data layer, and
    the asset is ``pool.name`` (one ticker) or the dataset's first ticker, kept
    on the bars where it trades.
    """
    data = config["data"]
    source = Path(str(data["source"])).expanduser()
    if source.is_file():
        panel = load_crypto_panel(source)
        if interval_seconds(panel.interval) != interval_seconds(data["interval"]):
            raise ConfigError(
                f"data.interval is {data['interval']!r} but the bars in {source} "
                f"are {panel.interval} apart",
                f"set data.interval: {panel.interval}",
            )
        if data["market"] != panel.market:
            panel = dataclasses.replace(panel, market=data["market"])
    else:
        from finrl_lab.data.local import resolve_data

        full = resolve_data(
            data["source"], interval=data["interval"], market=data["market"]
        )
        ticker = config["pool"]["name"] or full.tickers[0]
        one = full.select([ticker])
        rows = one.available[:, 0]
        panel = dataclasses.replace(
            one,
            timestamps=one.timestamps[rows],
            values=one.values[rows],
            available=one.available[rows],
        )
    start = config["splits"]["train"][0]
    end = config["splits"]["test"][1]
    return panel.between(start, end) if (start or end) else panel


def build_segments(config: dict[str, Any], panel: Panel) -> list[Segment]:
    """Segment the panel with the ``env.segmentation`` settings."""
    seg = config["env"]["segmentation"]
    close = panel.values[:, 0, panel.fields.index("close")]
    return make_segments(
        panel.timestamps,
        close,
        method=seg["method"],
        proportions=seg["proportions"],
        first_row=config["env"]["lookback"],
        block_days=seg["block_days"],
        min_days=seg["min_days"],
        penalty=seg["penalty"],
    )


def build_envs(
    config: dict[str, Any], panel: Panel, segments: list[Segment]
) -> tuple[dict[str, CryptoTradingEnv], float]:
    """Return the train, valid and test envs and the reward scale they use.

    Features are standardised, and an ``auto`` reward scale is set to one over
    the standard deviation of per-bar log returns, on the train parts only.
    """
    env_config = config["env"]
    train_rows = np.zeros(len(panel.timestamps), dtype=bool)
    for segment in segments:
        train_rows[segment.train[0] : segment.train[1] + 1] = True
    scale = env_config["reward_scale"]
    if scale == "auto":
        close = panel.values[:, 0, panel.fields.index("close")]
        returns = np.diff(np.log(close))[train_rows[1:] & train_rows[:-1]]
        scale = 1.0 / float(np.std(returns))
    common = {
        "lookback": env_config["lookback"],
        "features": env_config["features"],
        "fit_rows": train_rows,
        "fee_bps": env_config["fee_bps"],
        "spread_bps": env_config["spread_bps"],
        "fill": env_config["fill"],
        "long_limit": env_config["long_limit"],
        "short_limit": env_config["short_limit"],
        "reward_scale": scale,
    }
    envs = {
        "train": CryptoTradingEnv(
            panel,
            segments=[s.train for s in segments],
            episode_length=env_config["episode_length"],
            **common,
        )
    }
    for part in ("valid", "test"):
        envs[part] = CryptoTradingEnv(
            panel, segments=[getattr(s, part) for s in segments], **common
        )
    return envs, float(scale)


def evaluate_parts(
    agent: TraceSAC, env: CryptoTradingEnv, periods_per_year: float
) -> tuple[dict[str, float], dict[str, float], np.ndarray]:
    """Run the deterministic policy over every part; return agent and B&H metrics.

    Buy and hold is the close-price path of the same parts, chained, without
    costs. Also returns the agent's chained value path.
    """
    rollouts = rollout_segments(agent, env, deterministic=True)
    values = chain_values([r.values for r in rollouts])
    turnover = np.concatenate([r.turnover for r in rollouts])
    metrics = _plain(compute_metrics(values, periods_per_year, turnover))
    positions = np.concatenate([r.positions for r in rollouts])
    metrics["avg_position"] = float(np.mean(positions))
    prices = [
        env.close_price[start : start + len(r.values)]
        for (start, _), r in zip(env.segments, rollouts, strict=True)
    ]
    hold = _plain(compute_metrics(chain_values(prices), periods_per_year))
    return metrics, hold, values


def _plain(metrics: dict[str, Any]) -> dict[str, float]:
    return {k: float(v) for k, v in metrics.items()}


# -- training loop --------------------------------------------------------------


@register_trainer("trace_sac", defaults=trace_sac_defaults, validate=validate_trace_sac)
def train_trace_sac(config: dict[str, Any], context: RunContext) -> TrainOutcome:
    """Train Trace-SAC for ``budget.steps`` env steps and evaluate on the test parts."""
    agent_config = config["agent"]
    panel = load_trace_sac_panel(config)
    segments = build_segments(config, panel)
    close = panel.values[:, 0, panel.fields.index("close")]
    summary = summarize_segments(segments, panel.timestamps, close)
    context.run_dir.mkdir(parents=True, exist_ok=True)
    summary.to_csv(context.run_dir / "segments.csv")
    envs, scale = build_envs(config, panel, segments)
    env = envs["train"]
    periods = panel.periods_per_year
    log.info(
        "trace_sac seed %d: %d segments, %d train bars, reward scale %.1f",
        context.seed,
        len(segments),
        int(summary["train_bars"].sum()),
        scale,
    )

    learner = learner_config(config)
    agent = TraceSAC(learner, env.lookback, len(env.feature_names), context.device)
    replay = ChunkReplay(
        agent_config["buffer_size"],
        env.lookback,
        len(env.feature_names),
        device=context.device,
    )
    rng = np.random.default_rng(context.seed)
    checkpoints = context.run_dir / CHECKPOINT_DIR
    checkpoints.mkdir(parents=True, exist_ok=True)
    best_path = checkpoints / BEST_NAME

    start_step = 0
    best_score = -np.inf
    if context.resume_from is not None:
        state = load_checkpoint(context.resume_from, config, context.device)
        agent.load_state_dict(state["learner"])
        start_step = int(state["step"])
        best_score = float(state.get("best_score", -np.inf))
        # NOTE: the replay is not checkpointed, so a resumed run refills it.
        log.info("resumed from %s at step %d", context.resume_from, start_step)

    budget = config["budget"]
    every = config["evaluation"]["every"]
    metric = config["evaluation"]["metric"]
    lower_better = metric in ("annual_volatility", "max_drawdown", "avg_turnover")
    validation: list[tuple[int, float]] = []
    diagnostics: list[dict[str, float]] = []
    observation, _ = env.reset(seed=context.seed)
    started = time.perf_counter()
    updates = 0
    for step in range(start_step, budget["steps"]):
        if step < agent_config["learning_starts"]:
            u = rng.standard_normal(1).astype(np.float32)
            dist = torch.distributions.Normal(torch.zeros(1), torch.ones(1))
            log_mu = float(squashed_log_prob(dist, torch.as_tensor(u)[None])[0])
            action = np.tanh(u)
        else:
            actions, us, log_mus = agent.act(observation)
            action, u, log_mu = actions[0], us[0], float(log_mus[0])
        next_observation, reward, terminated, truncated, _ = env.step(action)
        replay.add(
            observation, u, log_mu, reward, terminated, truncated, next_observation
        )
        observation = next_observation
        if terminated or truncated:
            observation, _ = env.reset()

        if step + 1 >= agent_config["learning_starts"]:
            batch = replay.sample(agent.chunks_per_batch(), learner.n_step, rng)
            info = agent.update(batch)
            updates += 1
            if context.logger is not None and (step + 1) % 1000 == 0:
                values = {f"train/{k}": float(v) for k, v in info.items()}
                elapsed = time.perf_counter() - started
                values["train/steps_per_second"] = (step + 1 - start_step) / elapsed
                context.logger.log_many(values, step + 1)

        done = step + 1 == budget["steps"]
        if (step + 1) % agent_config["diagnostics_every"] == 0 or done:
            row = value_diagnostics(
                agent,
                env,
                tolerance=agent_config["diagnostics_tolerance"],
                seed=context.seed,
            )
            row["step"] = float(step + 1)
            diagnostics.append(row)
            if context.logger is not None:
                context.logger.log_many(
                    {f"value/{k}": v for k, v in row.items() if k != "step"}, step + 1
                )
        if (step + 1) % every == 0 or done:
            metrics, _, _ = evaluate_parts(agent, envs["valid"], periods)
            score = metrics[metric]
            validation.append((step + 1, score))
            if context.logger is not None:
                context.logger.log_many(
                    {f"valid/{k}": v for k, v in metrics.items()}, step + 1
                )
            ranked = -score if lower_better else score
            if np.isfinite(ranked) and ranked > best_score or not best_path.exists():
                best_score = ranked
                save_checkpoint(
                    best_path, {"learner": agent.state_dict(), "step": step + 1}, config
                )
        if (step + 1) % budget["checkpoint_every"] == 0 or done:
            save_checkpoint(
                step_checkpoint_path(context.run_dir, step + 1),
                {
                    "learner": agent.state_dict(),
                    "step": step + 1,
                    "best_score": float(best_score),
                },
                config,
            )
            prune_checkpoints(context.run_dir, budget["keep_checkpoints"])

    elapsed = time.perf_counter() - started
    best = load_checkpoint(best_path, config, context.device)
    agent.load_state_dict(best["learner"])
    test_metrics, hold_metrics, test_values = evaluate_parts(
        agent, envs["test"], periods
    )
    final_diag = diagnostics[-1] if diagnostics else {}
    extra = {
        "value_bias": final_diag.get("value_bias", float("nan")),
        "value_variance": final_diag.get("value_variance", float("nan")),
        "return_std": final_diag.get("return_std", float("nan")),
        "reward_scale": scale,
        "best_step": int(best["step"]),
        "train_seconds": elapsed,
        "updates_per_second": updates / elapsed if elapsed > 0 else float("nan"),
        "segments": len(segments),
        "test_bars": int(len(test_values) - 1),
        # The test parts are not contiguous: the pair spans all of them.
        "test_window": [
            f"{panel.timestamps[segments[0].test[0]]:%Y-%m-%d %H:%M}",
            f"{panel.timestamps[segments[-1].test[1]]:%Y-%m-%d %H:%M} "
            f"({len(segments)} test parts)",
        ],
    }
    if diagnostics:
        plot_value_diagnostics(
            diagnostics,
            context.run_dir / "value_diagnostics.png",
            f"trace_sac ({learner.trace}, n={learner.n_step}), seed {context.seed}",
        )
    (context.run_dir / "value_diagnostics.json").write_text(
        json.dumps(diagnostics, indent=1)
    )
    np.save(context.run_dir / "test_values.npy", test_values)
    return TrainOutcome(
        test_metrics=test_metrics,
        baseline_metrics={"buy_and_hold": hold_metrics},
        best_checkpoint=best_path,
        validation=validation,
        extra=extra,
    )


@register_evaluator("trace_sac")
def evaluate_trace_sac(request: EvaluationRequest) -> EvaluationOutcome:
    """Evaluate a checkpoint on the run's test parts, or on one date window.

    With ``--start``/``--end`` the deterministic policy trades the rows from the
    first bar at or after ``start`` to the last bar at or before ``end`` as one
    episode. Features keep the run's training-row standardisation.
    """
    config = request.config
    if request.pool is not None:
        raise ConfigError(
            f"trace_sac trades one asset, so --pool {request.pool!r} does not apply",
            "leave out --pool",
        )
    panel = load_trace_sac_panel(config)
    segments = build_segments(config, panel)
    envs, _ = build_envs(config, panel, segments)
    env = envs["test"]
    state = load_checkpoint(request.checkpoint, config, request.device)
    agent = TraceSAC(
        learner_config(config), env.lookback, len(env.feature_names), request.device
    )
    agent.load_state_dict(state["learner"])
    stamps = panel.timestamps
    if request.start is not None or request.end is not None:
        start_row = 0
        end_row = len(stamps) - 1
        if request.start is not None:
            start_row = int(stamps.searchsorted(pd.Timestamp(request.start, tz="UTC")))
        if request.end is not None:
            end_stamp = pd.Timestamp(request.end, tz="UTC") + pd.Timedelta(days=1)
            end_row = int(stamps.searchsorted(end_stamp)) - 1
        start_row = max(start_row, env.lookback)
        if end_row <= start_row:
            raise ConfigError(
                f"window {request.start} .. {request.end} contains no decision bar in "
                f"{config['data']['source']} ({stamps[0]:%Y-%m-%d} .. "
                f"{stamps[-1]:%Y-%m-%d})",
                "pick dates inside the data, after the first lookback bars",
            )
        env = copy.copy(env)
        env.segments = [(start_row, end_row)]
        window = (
            f"{stamps[start_row]:%Y-%m-%d %H:%M}",
            f"{stamps[end_row]:%Y-%m-%d %H:%M}",
        )
    else:
        window = (
            f"{stamps[segments[0].test[0]]:%Y-%m-%d %H:%M}",
            f"{stamps[segments[-1].test[1]]:%Y-%m-%d %H:%M} "
            f"({len(segments)} test parts)",
        )
    metrics, hold, _ = evaluate_parts(agent, env, panel.periods_per_year)
    return EvaluationOutcome(metrics, {"buy_and_hold": hold}, window=window)


def resolve_trace_sac_config(raw: dict[str, Any]) -> dict[str, Any]:
    """Fill in defaults and validate a trace_sac config without the runner's data check.

    ``finrl_lab.training.config.resolve_config`` also loads the data with the
    data layer's loader, which rejects files whose rows are not sorted by time
    (the Bitfinex export is newest first). The trainer reads data with
    :func:`load_crypto_panel`, which sorts, so scripts resolve configs here.
    """
    from finrl_lab.training.config import COMMON_DEFAULTS, merge, validate_common

    defaults = merge(COMMON_DEFAULTS, trace_sac_defaults("trace_sac"))
    if "splits" in raw:
        defaults["splits"] = {}
    config = merge(defaults, raw)
    config["agent"]["name"] = "trace_sac"
    validate_common(config)
    validate_trace_sac(config)
    return config


def run_directly(config: dict[str, Any], run_dir: str | Path, seed: int = 0) -> Any:
    """Resolve ``config`` and train one seed on CPU without the CLI (scripts, tests)."""
    resolved = resolve_trace_sac_config(config)
    context = RunContext(run_dir=Path(run_dir), seed=seed, device="cpu")
    seed_everything(seed)
    return train_trace_sac(resolved, context)
