"""PortfolioEnv: portfolio management over a global stock pool with a pool mask.

At decision bar t the agent observes a lookback window of per-asset features ending
at t, the pool-and-availability mask at t and its current (drifted) weights. Its
action becomes target weights over cash and the global pool; assets outside the
customizable pool or without a bar get exactly 0. The targets are held from t to
t+1 and earn ``close[t+1] / close[t]``; turnover between drifted and target
weights costs ``cost_rate`` per unit traded (see :mod:`finrl_lab.ledger`).

Episodes end with ``truncated=True`` at the last bar of the window (or after
``episode_length`` steps), and with ``terminated=True`` only if the portfolio
value falls to ``ruin_fraction`` of the initial value or below.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from finrl_lab.data.panel import Panel
from finrl_lab.data.pools import Pool
from finrl_lab.envs.actions import ACTION_MODES, action_to_weights
from finrl_lab.envs.observation import bar_features, lookback_windows
from finrl_lab.errors import ConfigError
from finrl_lab.ledger import turnover
from finrl_lab.market import Market, build_market

REWARDS = ("log_return", "return")


class PortfolioEnv(gym.Env):
    """Gymnasium environment for long-only portfolio management with cash.

    :param panel: market data holding at least the global pool's tickers.
    :param pool: the customizable pool (CSP) to trade: a name, a YAML file,
        ``A,B,C`` or a list of tickers.
    :param global_pool: the global pool (GSP) the observation covers; by default
        the pool's parent when the data contains it, else the pool itself.
    :param start: first decision date; the first bar with enough history by default.
    :param end: last valuation date; the last bar by default.
    :param lookback: bars in the observation window, including bar t.
    :param features: a per-bar feature set name (``close``, ``ohlc`` or one from
        :mod:`finrl_lab.data.features`) or an array [T, N, F] aligned with
        ``panel`` and the global pool.
    :param cost_rate: transaction cost per unit of turnover, as a fraction
        (default 0.001 = 10 bps).
    :param reward: ``log_return`` (log of the value change, net of costs) or
        ``return`` (simple return, net of costs).
    :param reward_scale: factor applied to the reward.
    :param action_mode: ``simplex`` (default: weights proportional to the
        positive part of actions in [-1, 1]), ``softmax`` (masked softmax with
        ``softmax_temperature``) or ``weights`` (actions in [0, 1] used as weights).
    :param episode_length: steps per episode; episodes start at a random bar
        drawn from ``reset(seed=...)``. None runs the whole window.
    :param initial_value: portfolio value at reset, in currency units.
    :param ruin_fraction: terminate when value <= this fraction of the initial value.
    """

    metadata = {"render_modes": []}

    def __init__(
        self,
        panel: Panel,
        pool: str | Sequence[str] | Pool,
        *,
        global_pool: str | Sequence[str] | Pool | None = None,
        start: object = None,
        end: object = None,
        lookback: int = 10,
        features: str | np.ndarray = "close",
        cost_rate: float = 0.001,
        reward: str = "log_return",
        reward_scale: float = 1.0,
        action_mode: str = "simplex",
        softmax_temperature: float = 0.05,
        episode_length: int | None = None,
        initial_value: float = 1.0,
        ruin_fraction: float = 0.0,
    ) -> None:
        super().__init__()
        _check_options(lookback, cost_rate, reward, action_mode, episode_length)
        self.market: Market = build_market(
            panel,
            pool,
            start=start,
            end=end,
            global_pool=global_pool,
            min_history=lookback,
        )
        self.lookback = lookback
        self.cost_rate = float(cost_rate)
        self.reward_kind = reward
        self.reward_scale = float(reward_scale)
        self.action_mode = action_mode
        self.softmax_temperature = float(softmax_temperature)
        self.initial_value = float(initial_value)
        self.ruin_value = float(ruin_fraction) * self.initial_value

        market = self.market
        if isinstance(features, str):
            per_bar, self.feature_names = bar_features(market.panel, features)
        else:
            per_bar = _check_feature_array(features, panel, market)
            self.feature_names = [f"f{i}" for i in range(per_bar.shape[-1])]
        self._windows = lookback_windows(per_bar, lookback)
        n = market.n_assets
        self._allowed = np.ones((len(market.panel), n + 1), dtype=bool)
        self._allowed[:, 1:] = market.tradable
        self._mask_int = market.tradable.astype(np.int8)
        self._rel_cash = np.ones((len(market.relatives), n + 1))
        self._rel_cash[:, 1:] = market.relatives

        steps = market.steps
        self._full_window = episode_length is None
        self.episode_length = steps if episode_length is None else int(episode_length)
        if self.episode_length > steps:
            raise ConfigError(
                f"episode_length {self.episode_length} exceeds the {steps} steps "
                "in the window",
                "shorten episode_length or widen the dates",
            )

        low = -1.0 if action_mode != "weights" else 0.0
        self.action_space = spaces.Box(low, 1.0, (n + 1,), dtype=np.float32)
        self.observation_space = spaces.Dict(
            {
                "features": spaces.Box(
                    -np.inf, np.inf, (n, lookback, per_bar.shape[-1]), np.float32
                ),
                "mask": spaces.MultiBinary(n),
                "weights": spaces.Box(0.0, 1.0, (n + 1,), np.float32),
            }
        )
        self._t = market.first
        self._end = market.last
        self._value = self.initial_value
        self._weights = _cash_only(n)
        self._done = False

    # -- Gymnasium API ----------------------------------------------------------

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        """Start an episode; ``options={"start_row": r}`` fixes the first bar.

        Without ``episode_length`` an episode runs from ``start_row`` (default the
        window's first decision) to the window's end; with it, the start is drawn
        from the seeded generator unless given.
        """
        super().reset(seed=seed)
        market = self.market
        latest_start = market.last - (1 if self._full_window else self.episode_length)
        if options and "start_row" in options:
            start = int(options["start_row"])
            if not market.first <= start <= latest_start:
                raise ConfigError(
                    f"start_row {start} is outside {market.first} .. {latest_start}"
                )
        elif self._full_window:
            start = market.first
        else:
            start = int(self.np_random.integers(market.first, latest_start + 1))
        self._t = start
        self._end = market.last if self._full_window else start + self.episode_length
        self._value = self.initial_value
        self._weights = _cash_only(market.n_assets)
        self._done = False
        return self._observation(), self._info(0.0, 0.0)

    def step(
        self, action: np.ndarray
    ) -> tuple[dict[str, np.ndarray], float, bool, bool, dict[str, Any]]:
        t = self._t
        if self._done:
            raise RuntimeError("step() called after the episode ended; call reset()")
        # A non-finite action (outside the Box) is read as its nearest bound.
        action = np.asarray(action, dtype=np.float64)
        action = np.clip(
            np.nan_to_num(action, nan=0.0, posinf=1.0, neginf=-1.0),
            self.action_space.low,
            self.action_space.high,
        )
        target = action_to_weights(
            action,
            self._allowed[t],
            self.action_mode,
            self.softmax_temperature,
        )
        traded = float(turnover(target, self._weights))
        cost = self.cost_rate * traded * self._value
        gross = target * self._rel_cash[t]
        growth = float(gross.sum())
        old_value = self._value
        self._value = (old_value - cost) * growth
        self._weights = gross / growth
        self._t = t + 1

        if self.reward_kind == "log_return":
            reward = float(np.log(max(self._value, 1e-300) / old_value))
        else:
            reward = self._value / old_value - 1.0
        terminated = self._value <= self.ruin_value
        truncated = self._t >= self._end and not terminated
        self._done = terminated or truncated
        info = self._info(traded, cost)
        info["target_weights"] = target
        return (
            self._observation(),
            reward * self.reward_scale,
            terminated,
            truncated,
            info,
        )

    # -- helpers -----------------------------------------------------------------

    def _observation(self) -> dict[str, np.ndarray]:
        t = self._t
        return {
            "features": np.array(self._windows[t - self.lookback + 1]),
            "mask": self._mask_int[t].copy(),
            "weights": self._weights.astype(np.float32),
        }

    def _info(self, traded: float, cost: float) -> dict[str, Any]:
        return {
            "row": self._t,
            "value": self._value,
            "weights": self._weights.copy(),
            "turnover": traded,
            "cost": cost,
        }

    @property
    def value(self) -> float:
        """Current portfolio value in currency units."""
        return self._value

    @property
    def weights(self) -> np.ndarray:
        """Current weights over cash and the global pool, after drift, [N + 1]."""
        return self._weights.copy()

    @property
    def holdings(self) -> np.ndarray:
        """Current value held in cash and each asset, [N + 1]."""
        return self._weights * self._value


def _cash_only(n_assets: int) -> np.ndarray:
    weights = np.zeros(n_assets + 1)
    weights[0] = 1.0
    return weights


def _check_options(
    lookback: int,
    cost_rate: float,
    reward: str,
    action_mode: str,
    episode_length: int | None,
) -> None:
    if lookback < 1:
        raise ConfigError(f"lookback {lookback} must be at least 1")
    # Turnover can reach 2, so a rate of 0.5 or more could cost the whole value.
    if not 0.0 <= cost_rate < 0.5:
        raise ConfigError(
            f"cost_rate {cost_rate} is outside [0, 0.5)",
            "give it as a fraction: 10 bps is 0.001",
        )
    if reward not in REWARDS:
        raise ConfigError(f"unknown reward {reward!r}", f"use one of {REWARDS}")
    if action_mode not in ACTION_MODES:
        raise ConfigError(
            f"unknown action mode {action_mode!r}", f"use one of {ACTION_MODES}"
        )
    if episode_length is not None and episode_length < 1:
        raise ConfigError(f"episode_length {episode_length} must be at least 1")


def _check_feature_array(
    features: np.ndarray, panel: Panel, market: Market
) -> np.ndarray:
    values = np.asarray(features, dtype=np.float32)
    positions = panel.ticker_positions(market.tickers)
    if values.ndim != 3 or values.shape[0] != len(panel):
        raise ConfigError(
            f"feature array shape {values.shape} does not match the panel "
            f"({len(panel)} bars)",
            "pass an array [T, N, F] aligned with the panel's rows and tickers",
        )
    if values.shape[1] == panel.n_assets:
        values = values[:, positions]
    values = values[: len(market.panel)]
    return np.nan_to_num(values, nan=0.0, posinf=0.0, neginf=0.0)


def make_default_portfolio_env(**kwargs: Any) -> PortfolioEnv:
    """Build PortfolioEnv on the bundled S&P 500 data and the ``sp20`` pool.

    Any keyword overrides a default; this is the entry point that
    ``gymnasium.make("finrl_lab/Portfolio-v0")`` calls.
    """
    from finrl_lab.data.local import load_bundled

    panel = kwargs.pop("panel", None) or load_bundled()
    pool = kwargs.pop("pool", "sp20")
    return PortfolioEnv(panel, pool, **kwargs)
