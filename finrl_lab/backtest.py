"""Backtesting: run any agent over a market window through one ledger and metrics.

Weights agents (the classic baselines) hand over all their target weights at
once; policy agents are rolled through :class:`PortfolioEnv` one bar at a time and
their target weights are collected. Either way the weights go through
:func:`finrl_lab.ledger.simulate` and :func:`finrl_lab.metrics.compute_metrics`,
so every agent is measured the same way.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from finrl_lab.agents.base import Agent, PolicyAgent, WeightsAgent
from finrl_lab.agents.classic import CLASSIC_AGENTS
from finrl_lab.errors import ConfigError
from finrl_lab.ledger import LedgerPath, simulate
from finrl_lab.market import Market
from finrl_lab.metrics import compute_metrics

log = logging.getLogger(__name__)

WEIGHT_TOLERANCE = 1e-9


@dataclass
class BacktestResult:
    """One agent's backtest over one market window.

    :param agent: agent name, as in the metrics table.
    :param times: valuation times, [S + 1]; ``times[0]`` is the first decision.
    :param tickers: the global pool, matching the weight columns after cash.
    :param targets: target weights at each decision, cash first, [S, N + 1].
    :param path: values, turnover and costs from the ledger.
    :param metrics: :func:`compute_metrics` of the value path.
    :param seconds: wall time the agent took to produce its weights.
    """

    agent: str
    times: pd.DatetimeIndex
    tickers: tuple[str, ...]
    targets: np.ndarray
    path: LedgerPath
    metrics: dict[str, float]
    seconds: float = 0.0
    extra: dict = field(default_factory=dict)

    def values_series(self) -> pd.Series:
        return pd.Series(self.path.values, index=self.times, name=self.agent)

    def weights_frame(self) -> pd.DataFrame:
        """Target weights by decision time, one column for cash and each ticker."""
        return pd.DataFrame(
            self.targets, index=self.times[:-1], columns=["cash", *self.tickers]
        )


def make_agent(name: str) -> Agent:
    """Build a classic baseline by name with its default parameters."""
    spec = CLASSIC_AGENTS.get(name)
    if spec is None:
        raise ConfigError(
            f"unknown agent {name!r}", f"use one of {', '.join(CLASSIC_AGENTS)}"
        )
    return spec.cls()


def check_weights(weights: np.ndarray, market: Market, agent: str) -> None:
    """Raise if weights are off the simplex or hold an untradable asset.

    A violation is a bug in the agent, not a user error.
    """
    expected = (market.steps, market.n_assets + 1)
    if weights.shape != expected:
        raise RuntimeError(f"{agent}: weights shape {weights.shape} != {expected}")
    if not np.isfinite(weights).all() or (weights < -WEIGHT_TOLERANCE).any():
        raise RuntimeError(f"{agent}: weights are negative or not finite")
    sums = weights.sum(axis=1)
    if np.abs(sums - 1.0).max() > 1e-6:
        row = int(np.argmax(np.abs(sums - 1.0)))
        raise RuntimeError(f"{agent}: weights at step {row} sum to {sums[row]}")
    blocked = ~market.tradable[market.first : market.last]
    if (weights[:, 1:][blocked] > WEIGHT_TOLERANCE).any():
        raise RuntimeError(
            f"{agent}: weight on an asset outside the pool or without a bar"
        )


def run_weights_agent(
    agent: WeightsAgent, market: Market, cost_rate: float, initial_value: float = 1.0
) -> BacktestResult:
    """Backtest an agent that returns all its target weights at once."""
    began = time.perf_counter()
    targets = agent.target_weights(market)
    seconds = time.perf_counter() - began
    check_weights(targets, market, agent.name)
    targets = np.clip(targets, 0.0, None)
    targets /= targets.sum(axis=1, keepdims=True)
    return _result(agent.name, market, targets, cost_rate, initial_value, seconds)


def run_policy_agent(
    agent: PolicyAgent, env, deterministic: bool = True
) -> BacktestResult:
    """Roll a policy agent through a PortfolioEnv from its window's first bar.

    The environment's own value path is kept in ``extra["env_values"]``; it equals
    the ledger's path for the same weights (a test checks this).
    """
    market: Market = env.market
    began = time.perf_counter()
    obs, info = env.reset(options={"start_row": market.first})
    targets, env_values = [], [info["value"]]
    done = False
    while not done:
        action = agent.act(obs, deterministic=deterministic)
        obs, _, terminated, truncated, info = env.step(action)
        targets.append(info["target_weights"])
        env_values.append(info["value"])
        done = terminated or truncated
    seconds = time.perf_counter() - began
    targets = np.asarray(targets)
    if len(targets) < market.steps:
        # The episode ended in ruin: the rest of the window is held in cash.
        pad = np.zeros((market.steps - len(targets), targets.shape[1]))
        pad[:, 0] = 1.0
        targets = np.vstack([targets, pad])
    result = _result(
        agent.name, market, targets, env.cost_rate, env.initial_value, seconds
    )
    result.extra["env_values"] = np.asarray(env_values)
    return result


def _result(
    name: str,
    market: Market,
    targets: np.ndarray,
    cost_rate: float,
    initial_value: float,
    seconds: float,
) -> BacktestResult:
    rows = slice(market.first, market.last)
    path = simulate(targets, market.relatives[rows], cost_rate, initial_value)
    metrics = compute_metrics(path.values, market.periods_per_year, path.turnover)
    return BacktestResult(
        agent=name,
        times=market.valuation_times,
        tickers=market.tickers,
        targets=targets,
        path=path,
        metrics=metrics,
        seconds=seconds,
    )


def backtest_agents(
    market: Market,
    agents: Sequence[str | Agent],
    cost_rate: float = 0.001,
    initial_value: float = 1.0,
) -> list[BacktestResult]:
    """Backtest several weights agents over one market window."""
    results = []
    for entry in agents:
        agent = make_agent(entry) if isinstance(entry, str) else entry
        if not isinstance(agent, WeightsAgent):
            raise ConfigError(
                f"agent {agent.name!r} acts on observations",
                "run it with run_policy_agent and a PortfolioEnv",
            )
        result = run_weights_agent(agent, market, cost_rate, initial_value)
        log.info("%s: %.3f s", agent.name, result.seconds)
        results.append(result)
    return results
