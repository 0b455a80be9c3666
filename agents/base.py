"""The agent protocol shared by classic baselines and learning agents.

Every agent can be backtested through :mod:`finrl_lab.backtest`:

- a :class:`WeightsAgent` (the classic baselines, run by ``run_weights_agent``)
  returns target weights for all
  decision bars of a :class:`~finrl_lab.market.Market` at once, reading only bars
  at or before each decision (tests check this causality by truncating the data);
- a :class:`PolicyAgent` (learning agents, run by ``run_policy_agent``) acts on one
  environment observation at a time and is rolled through
  :class:`~finrl_lab.envs.portfolio.PortfolioEnv`.

Both produce weights that go through the same ledger and the same metrics.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any

import numpy as np

from finrl_lab.market import Market


class Agent:
    """Common base: a name, optional training, and saving of parameters."""

    name: str = "agent"

    def fit(self, market: Market, **kwargs: Any) -> None:  # noqa: B027
        """Train on a market window; classic baselines have nothing to train."""

    def save(self, path: str | Path) -> None:  # noqa: B027
        """Save the agent's parameters; agents without parameters save nothing."""

    def load(self, path: str | Path) -> None:  # noqa: B027
        """Load parameters written by :meth:`save`."""


class WeightsAgent(Agent, ABC):
    """An agent that computes its target weights from prices for a whole window."""

    @abstractmethod
    def target_weights(self, market: Market) -> np.ndarray:
        """Return target weights [S, N + 1] (cash first) for decision rows
        ``market.first .. market.last - 1``.

        Row k may use prices at rows ``<= market.first + k`` only. Weights must be
        zero for assets where ``market.tradable`` is False at that row.
        """


class PolicyAgent(Agent, ABC):
    """An agent that maps one observation of PortfolioEnv to an action."""

    @abstractmethod
    def act(
        self, observation: dict[str, np.ndarray], deterministic: bool = True
    ) -> np.ndarray:
        """Return an action in the environment's action space."""
