"""Bias and variance of the critic's value estimates against Monte-Carlo returns.

The stochastic policy runs once over every segment of an env. At each visited
state the critic's estimate Q(s_t, a_t) (min of the twins) is compared with the
discounted soft return that followed:

    G_t = r_t + gamma (G_{t+1} - alpha log pi(a_{t+1} | s_{t+1})),

the Monte-Carlo sample of the soft Q the critic is trained towards. Only states
with at least H steps left in their episode count, where gamma^H <= tolerance,
so the cut-off tail changes G by at most ``tolerance`` times the value scale.
Bias is mean(Q - G) and variance is var(Q - G), in units of the scaled reward.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from finrl_lab.agents.trace_sac.agent import TraceSAC
from finrl_lab.agents.trace_sac.rollout import SegmentRollout, rollout_segments
from finrl_lab.envs.crypto import CryptoTradingEnv


def soft_monte_carlo_returns(
    rewards: np.ndarray,
    log_pi: np.ndarray,
    alpha: float,
    gamma: float,
) -> np.ndarray:
    """Return G_t [S] of one episode (see the module docstring); G_{S-1} = r_{S-1}."""
    returns = np.empty(len(rewards))
    g = 0.0
    for t in range(len(rewards) - 1, -1, -1):
        if t == len(rewards) - 1:
            g = rewards[t]
        else:
            g = rewards[t] + gamma * (g - alpha * log_pi[t + 1])
        returns[t] = g
    return returns


def horizon_for(gamma: float, tolerance: float) -> int:
    """Return the smallest H with gamma^H <= tolerance (0 for gamma = 0)."""
    if gamma <= 0.0:
        return 0
    return math.ceil(math.log(tolerance) / math.log(gamma))


def value_errors(
    rollouts: Sequence[SegmentRollout],
    alpha: float,
    gamma: float,
    tolerance: float = 0.01,
) -> tuple[np.ndarray, np.ndarray]:
    """Return (estimates, Monte-Carlo returns) at the states far enough from an end.

    An episode that ended by ruin counts whole: its return after the end is 0.
    """
    horizon = horizon_for(gamma, tolerance)
    estimates, returns = [], []
    for rollout in rollouts:
        g = soft_monte_carlo_returns(rollout.rewards, rollout.log_pi, alpha, gamma)
        usable = len(g) if rollout.terminated else max(0, len(g) - horizon)
        estimates.append(rollout.q[:usable])
        returns.append(g[:usable])
    return np.concatenate(estimates), np.concatenate(returns)


def value_diagnostics(
    agent: TraceSAC,
    env: CryptoTradingEnv,
    *,
    tolerance: float = 0.01,
    seed: int = 0,
) -> dict[str, float]:
    """Roll out the stochastic policy over ``env``'s segments and compare values.

    :return: ``value_bias`` (mean of Q - G), ``value_variance`` (var of Q - G),
        ``value_rmse``, ``return_std`` (std of G, the scale to judge them by) and
        ``value_states`` (how many states counted). NaN when no state is far
        enough from its episode's end; make segments longer or lower gamma.
    """
    rollouts = rollout_segments(agent, env, deterministic=False, seed=seed, with_q=True)
    alpha = float(agent.alpha)
    estimates, returns = value_errors(rollouts, alpha, agent.config.gamma, tolerance)
    if len(returns) == 0:
        nan = float("nan")
        return {
            "value_bias": nan,
            "value_variance": nan,
            "value_rmse": nan,
            "return_std": nan,
            "value_states": 0.0,
        }
    errors = estimates - returns
    return {
        "value_bias": float(errors.mean()),
        "value_variance": float(errors.var()),
        "value_rmse": float(np.sqrt(np.mean(errors**2))),
        "return_std": float(returns.std()),
        "value_states": float(len(returns)),
    }


def plot_value_diagnostics(
    history: Sequence[dict[str, float]], path: str | Path, title: str = ""
) -> None:
    """Plot bias with a one-standard-deviation band of the errors against steps.

    ``history`` rows need ``step``, ``value_bias`` and ``value_variance``.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    steps = np.array([row["step"] for row in history], float)
    bias = np.array([row["value_bias"] for row in history], float)
    spread = np.sqrt(np.array([row["value_variance"] for row in history], float))
    figure, axis = plt.subplots(figsize=(6, 3.5))
    axis.plot(steps, bias, marker="o", label="bias mean(Q - G)")
    axis.fill_between(steps, bias - spread, bias + spread, alpha=0.25, label="± std")
    axis.axhline(0.0, color="black", linewidth=0.8)
    axis.set_xlabel("environment steps")
    axis.set_ylabel("scaled reward units")
    axis.set_title(title or "critic error against Monte-Carlo soft returns")
    axis.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
