"""Training episodes of EarnMore, simulated side by side on arrays.

Each of ``n_envs`` episodes starts at a random day of the training window with
all cash and a random pool (a mask over the global pool), and runs
``episode_length`` days. Accounting follows :mod:`finrl_lab.ledger`: target
weights set at day t earn ``close[t+1] / close[t]``, and rebalancing from the
drifted weights costs ``cost_rate`` times the risky turnover. Weight that the
policy gives a stock outside its pool is held as cash, so it earns nothing;
the reward is the daily log change of value, net of costs, times
``reward_scale``.
"""

from __future__ import annotations

import numpy as np

from finrl_lab.agents.earnmore.masks import sample_mask_ratios, sample_visible
from finrl_lab.agents.earnmore.settings import EarnMoreSettings


class TrainingEpisodes:
    """State of the parallel training episodes: day, pool and drifted weights.

    :param relatives: price relatives [T - 1, N] of the global pool.
    :param available: bool [T, N], True where a stock has a bar.
    :param first: first decision row an episode may start at.
    :param last: last valuation row; decisions happen before it.
    :param settings: masking, episode length and reward scale.
    :param cost_rate: cost per unit of risky turnover, as a fraction.
    :param rng: the generator for start days and masks.
    """

    def __init__(
        self,
        relatives: np.ndarray,
        available: np.ndarray,
        first: int,
        last: int,
        settings: EarnMoreSettings,
        cost_rate: float,
        rng: np.random.Generator,
    ) -> None:
        self.relatives = relatives
        self.available = available
        self.first = first
        self.last = last
        self.settings = settings
        self.cost_rate = cost_rate
        self.rng = rng
        self.length = min(settings.episode_length, last - first)
        n_envs, n_stocks = settings.n_envs, available.shape[1]
        self.day = np.zeros(n_envs, dtype=np.int64)
        self.steps_left = np.zeros(n_envs, dtype=np.int64)
        self.pool = np.ones((n_envs, n_stocks), dtype=bool)
        self.weights = np.zeros((n_envs, n_stocks + 1))
        self._reset(np.arange(n_envs))

    @property
    def visible(self) -> np.ndarray:
        """bool [E, N]: stocks in each episode's pool that have a bar today."""
        return self.pool & self.available[self.day]

    def _draw_pools(self, count: int, days: np.ndarray) -> np.ndarray:
        s = self.settings
        available = self.available[days]
        if not s.masking:
            return np.ones_like(available)
        ratios = sample_mask_ratios(
            self.rng,
            count,
            s.mask_ratio_mean,
            s.mask_ratio_std,
            s.mask_ratio_min,
            s.mask_ratio_max,
        )
        return sample_visible(self.rng, available, ratios)

    def _reset(self, envs: np.ndarray) -> None:
        if len(envs) == 0:
            return
        latest = self.last - self.length
        self.day[envs] = self.rng.integers(self.first, latest + 1, size=len(envs))
        self.steps_left[envs] = self.length
        self.pool[envs] = self._draw_pools(len(envs), self.day[envs])
        self.weights[envs] = 0.0
        self.weights[envs, 0] = 1.0

    def step(self, targets: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Hold ``targets`` [E, N + 1] for one day; return rewards [E] and the
        drifted weights [E, N + 1] at the next day, then start new episodes
        where one ended (and draw new pools if masks change every day).
        """
        held = np.array(targets, dtype=np.float64)
        outside = ~self.visible
        held[:, 0] += np.where(outside, held[:, 1:], 0.0).sum(axis=1)
        held[:, 1:][outside] = 0.0
        traded = np.abs(held[:, 1:] - self.weights[:, 1:]).sum(axis=1)
        relatives = np.ones_like(held)
        relatives[:, 1:] = self.relatives[self.day]
        gross = held * relatives
        growth = gross.sum(axis=1)
        net = (1.0 - self.cost_rate * traded) * growth
        rewards = np.log(np.maximum(net, 1e-12)) * self.settings.reward_scale
        drifted = gross / growth[:, None]

        self.weights = drifted
        self.day += 1
        self.steps_left -= 1
        ended = np.flatnonzero(self.steps_left <= 0)
        self._reset(ended)
        if self.settings.mask_resample == "step" and self.settings.masking:
            running = np.flatnonzero(self.steps_left < self.length)
            self.pool[running] = self._draw_pools(len(running), self.day[running])
        return rewards, drifted
