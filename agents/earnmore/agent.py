"""The trained EarnMore policy as a project agent, its checkpoints and backtests.

A checkpoint contains everything needed to manage any subset of the training
global pool later: the model weights, the settings, the global pool's tickers
in training order, the feature set and the normaliser fitted on the training
rows. It is a plain ``torch.save`` of tensors, numbers, strings and lists, read
back with ``torch.load(weights_only=True)``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from finrl_lab.agents.base import PolicyAgent
from finrl_lab.agents.earnmore.dataset import (
    check_in_global_pool,
    compute_raw_features,
    scale_features,
)
from finrl_lab.agents.earnmore.model import EarnMoreModel
from finrl_lab.agents.earnmore.settings import EarnMoreSettings
from finrl_lab.backtest import BacktestResult, run_policy_agent
from finrl_lab.data.features import Normalizer
from finrl_lab.data.pools import Pool, resolve_pool
from finrl_lab.envs.portfolio import PortfolioEnv
from finrl_lab.errors import ConfigError
from finrl_lab.io import atomic_path

CHECKPOINT_FORMAT = "finrl_lab.earnmore/1"


class EarnMoreAgent(PolicyAgent):
    """Acts on PortfolioEnv observations with a trained :class:`EarnMoreModel`.

    The environment's ``features`` must be the scaled feature array the model
    was trained on (see :func:`make_env`) and its ``action_mode`` ``weights``:
    the action is the target weights, exactly 0 outside the observation's mask.

    :param model: the trained model.
    :param settings: the settings it was trained with.
    :param tickers: the global pool, in the model's stock order.
    :param feature_set: feature set name; ``feature_names`` its columns.
    :param normalizer: scaling fitted on the training rows, or None.
    :param extra: data and split records kept in the checkpoint.
    """

    name = "earnmore"

    def __init__(
        self,
        model: EarnMoreModel,
        settings: EarnMoreSettings,
        tickers: tuple[str, ...],
        feature_set: str,
        feature_names: list[str],
        normalizer: Normalizer | None,
        extra: dict[str, Any] | None = None,
    ) -> None:
        self.model = model
        self.settings = settings
        self.tickers = tuple(tickers)
        self.feature_set = feature_set
        self.feature_names = list(feature_names)
        self.normalizer = normalizer
        self.extra = dict(extra or {})
        self.device = next(model.parameters()).device

    def act(
        self, observation: dict[str, np.ndarray], deterministic: bool = True
    ) -> np.ndarray:
        """Return target weights [N + 1] for one PortfolioEnv observation."""
        device = self.device
        windows = torch.as_tensor(observation["features"], device=device)[None]
        visible = torch.as_tensor(observation["mask"], device=device).bool()[None]
        weights = torch.as_tensor(observation["weights"], device=device)[None]
        self.model.eval()
        target = self.model.portfolio_weights(
            windows.float(), visible, weights.float(), deterministic
        )
        return target[0].double().cpu().numpy()

    # -- checkpoints ----------------------------------------------------------------

    def checkpoint(self, extra_state: dict[str, Any] | None = None) -> dict[str, Any]:
        """Return the checkpoint dict that :meth:`save` writes."""
        return {
            "format": CHECKPOINT_FORMAT,
            "settings": self.settings.to_dict(),
            "tickers": list(self.tickers),
            "feature_set": self.feature_set,
            "feature_names": self.feature_names,
            "normalizer": None
            if self.normalizer is None
            else self.normalizer.state_dict(),
            "model": self.model.state_dict(),
            "extra": self.extra,
            **(extra_state or {}),
        }

    def save(self, path: str | Path, extra_state: dict[str, Any] | None = None) -> None:
        """Write the checkpoint to ``path`` atomically."""
        with atomic_path(Path(path)) as temporary:
            torch.save(self.checkpoint(extra_state), temporary)

    def load(self, path: str | Path) -> None:
        """Load model weights from a checkpoint of the same global pool and sizes."""
        state = read_checkpoint(path)
        if tuple(state["tickers"]) != self.tickers:
            raise ConfigError(
                f"checkpoint {path} was trained on another global pool",
                "load it with EarnMoreAgent.from_file instead",
            )
        self.model.load_state_dict(state["model"])

    @classmethod
    def from_file(cls, path: str | Path, device: str = "cpu") -> EarnMoreAgent:
        """Load an agent from a file written by :meth:`save` or by the trainer.

        :raises ConfigError: the file is missing or not an EarnMore checkpoint.
        """
        return cls.from_record(read_checkpoint(path), device)

    @classmethod
    def from_record(cls, state: dict[str, Any], device: str = "cpu") -> EarnMoreAgent:
        """Rebuild an agent from a loaded checkpoint mapping."""
        if state.get("format") != CHECKPOINT_FORMAT:
            raise ConfigError(
                f"checkpoint format {state.get('format')!r} is not "
                f"{CHECKPOINT_FORMAT!r}",
                "use a checkpoint written by the earnmore trainer",
            )
        settings = EarnMoreSettings.from_dict(state["settings"])
        tickers = tuple(state["tickers"])
        model = EarnMoreModel(state["feature_names"], len(tickers), settings)
        model.load_state_dict(state["model"])
        model.to(device).eval()
        normalizer = (
            None
            if state["normalizer"] is None
            else Normalizer.from_state_dict(state["normalizer"])
        )
        return cls(
            model,
            settings,
            tickers,
            state["feature_set"],
            state["feature_names"],
            normalizer,
            state.get("extra"),
        )


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    """Read an EarnMore checkpoint with ``torch.load(weights_only=True)``.

    :raises ConfigError: the file is missing, unreadable or of another format.
    """
    path = Path(path)
    if not path.is_file():
        raise ConfigError(
            f"checkpoint {path} does not exist",
            "pass a run folder or a .pt file written by the earnmore trainer",
        )
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except (RuntimeError, OSError, EOFError) as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ConfigError(f"cannot read checkpoint {path}: {first}") from None
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
        found = state.get("format") if isinstance(state, dict) else type(state)
        raise ConfigError(
            f"checkpoint {path} has format {found!r}, not {CHECKPOINT_FORMAT!r}",
            "retrain with this version of finrl_lab",
        )
    return state


@dataclass
class PoolBacktest:
    """A backtest of one pool over one window, with the pool it used."""

    pool: Pool
    result: BacktestResult


def make_env(
    agent: EarnMoreAgent,
    panel,
    pool: str | Pool,
    start: object,
    end: object,
    cost_rate: float,
    features: np.ndarray | None = None,
) -> PortfolioEnv:
    """Build the PortfolioEnv in which ``agent`` manages ``pool``.

    :param panel: prices of the agent's global pool (columns in its order),
        starting at the row its features start.
    :param pool: the customizable pool; every ticker must be in the global pool.
    :param features: scaled features [T, N, F] of ``panel``; computed with the
        agent's normaliser when None.
    :raises PoolError: a ticker of the pool was not in the training global pool.
    """
    chosen = resolve_pool(pool) if not isinstance(pool, Pool) else pool
    check_in_global_pool(chosen, agent.tickers, agent.extra.get("global_pool", "GSP"))
    if features is None:
        raw, _ = compute_raw_features(panel, agent.feature_set)
        features = scale_features(raw, agent.feature_names, agent.normalizer)
    return PortfolioEnv(
        panel,
        chosen,
        global_pool=list(agent.tickers),
        start=start,
        end=end,
        lookback=agent.settings.lookback,
        features=features,
        cost_rate=cost_rate,
        action_mode="weights",
    )


def backtest_pool(
    agent: EarnMoreAgent,
    panel,
    pool: str | Pool,
    start: object,
    end: object,
    cost_rate: float,
    features: np.ndarray | None = None,
) -> PoolBacktest:
    """Roll the agent through ``pool`` over ``start .. end`` with the project ledger."""
    env = make_env(agent, panel, pool, start, end, cost_rate, features)
    result = run_policy_agent(agent, env, deterministic=True)
    chosen = resolve_pool(pool) if not isinstance(pool, Pool) else pool
    return PoolBacktest(chosen, result)
