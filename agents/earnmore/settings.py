"""EarnMore's hyperparameters: the ``agent`` section of an experiment config.

Every key has a default; an unknown key or a value out of range raises
:class:`~finrl_lab.errors.ConfigError` naming it. ``masking: false`` and
``reweighting: false`` select the two ablations of the method.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any

from finrl_lab.errors import ConfigError

MASK_RESAMPLING = ("episode", "step")


@dataclass(frozen=True)
class EarnMoreSettings:
    """Network sizes, the masking scheme and SAC.

    The budget is the config's ``budget.steps``: training days simulated, summed
    over the ``n_envs`` episodes; each collection round of ``n_envs * horizon``
    days is followed by ``updates_per_horizon`` gradient updates.

    :param lookback: D, days in each stock's window (EarnMore: 10).
    :param dim: encoder token width E (EarnMore: 64).
    :param decoder_dim: width of rho and the reconstruction decoder.
    :param depth: encoder Transformer blocks (EarnMore: 1).
    :param heads: attention heads.
    :param hidden: width of the actor's and critics' per-row MLPs.
    :param temperature: T of the re-weighting softmax (EarnMore: 0.1).
    :param reweighting: False replaces T by 1, the "without re-weighting" ablation.
    :param masking: False trains on the whole pool with no random masks and no
        reconstruction, the "without masking" ablation; evaluation still gives
        stocks outside the pool zero weight.
    :param mask_ratio_mean: mean of the truncated normal of the masked fraction.
    :param mask_ratio_std: its standard deviation.
    :param mask_ratio_min: lower truncation of the masked fraction.
    :param mask_ratio_max: upper truncation of the masked fraction.
    :param mask_resample: ``episode`` draws a mask per training episode (a pool
        is held for an episode, so turnover costs stay meaningful); ``step``
        draws a fresh mask every day, as EarnMore's code does.
    :param mask_penalty: weight of the loss ``sum of weights on masked stocks``
        under the deterministic policy, added to the actor loss.
    :param gamma: discount factor per day.
    :param tau: soft update rate of the target critics.
    :param batch_size: transitions per gradient update.
    :param buffer_size: replay capacity in transitions.
    :param n_envs: training episodes simulated side by side.
    :param horizon: days collected per environment between update rounds.
    :param updates_per_horizon: gradient updates after each collection round.
    :param learning_starts: transitions collected before the first update.
    :param episode_length: days per training episode, from a random start day.
    :param reward_scale: factor on the daily log return used as reward.
    :param init_log_alpha: initial log of the entropy temperature alpha
        (EarnMore: -1).
    :param alpha_lr: Adam learning rate of log alpha. It is larger than the
        networks' so that alpha can reach the target entropy within a short
        budget; at 1e-4 the policy's noise stayed at its upper clamp.
    :param target_entropy_scale: target entropy is ``-scale * (N + 1)``.
    :param grad_clip: maximum gradient norm per network update.
    """

    lookback: int = 10
    dim: int = 64
    decoder_dim: int = 64
    depth: int = 1
    heads: int = 4
    mlp_ratio: float = 4.0
    hidden: int = 64
    temperature: float = 0.1
    reweighting: bool = True
    masking: bool = True
    mask_ratio_mean: float = 0.7
    mask_ratio_std: float = 0.1
    mask_ratio_min: float = 0.6
    mask_ratio_max: float = 0.8
    mask_resample: str = "episode"
    mask_penalty: float = 1.0
    gamma: float = 0.99
    tau: float = 0.005
    batch_size: int = 64
    buffer_size: int = 100_000
    n_envs: int = 4
    horizon: int = 32
    updates_per_horizon: int = 32
    learning_starts: int = 256
    episode_length: int = 128
    reward_scale: float = 100.0
    init_log_alpha: float = -5.0
    alpha_lr: float = 1e-2
    target_entropy_scale: float = 1.0
    grad_clip: float = 3.0

    @property
    def effective_temperature(self) -> float:
        """The softmax temperature: ``temperature``, or 1 without re-weighting."""
        return self.temperature if self.reweighting else 1.0

    def to_dict(self) -> dict[str, Any]:
        """Return the settings as a plain dict, for configs and checkpoints."""
        return asdict(self)

    @classmethod
    def from_dict(cls, block: dict[str, Any] | None) -> EarnMoreSettings:
        """Build settings from an ``agent`` block; ``name`` is ignored.

        :raises ConfigError: an unknown key or an invalid value.
        """
        block = {k: v for k, v in (block or {}).items() if k != "name"}
        known = {f.name: f for f in fields(cls)}
        unknown = sorted(set(block) - set(known))
        if unknown:
            raise ConfigError(
                f"unknown EarnMore setting(s) {', '.join(unknown)}",
                f"valid keys are {', '.join(known)}",
            )
        values = {}
        for key, value in block.items():
            kind = type(known[key].default)
            try:
                if kind is bool:
                    if not isinstance(value, bool):
                        raise ValueError("expected true or false")
                    values[key] = value
                else:
                    values[key] = kind(value)
            except (TypeError, ValueError):
                raise ConfigError(
                    f"EarnMore setting {key}={value!r} is not a {kind.__name__}",
                    f"give {key} as a {kind.__name__}",
                ) from None
        settings = cls(**values)
        settings.check()
        return settings

    def check(self) -> None:
        """Raise ConfigError for values out of range."""
        positive = (
            "lookback dim decoder_dim depth heads hidden batch_size buffer_size "
            "n_envs horizon updates_per_horizon episode_length"
        ).split()
        for key in positive:
            if getattr(self, key) < 1:
                raise ConfigError(f"EarnMore setting {key}={getattr(self, key)} < 1")
        if self.dim % self.heads or self.decoder_dim % self.heads:
            raise ConfigError(
                f"dim {self.dim} and decoder_dim {self.decoder_dim} must be "
                f"multiples of heads {self.heads}"
            )
        if self.alpha_lr <= 0:
            raise ConfigError(f"alpha_lr {self.alpha_lr} must be positive")
        if self.temperature <= 0:
            raise ConfigError(f"temperature {self.temperature} must be positive")
        if not (
            0.0 <= self.mask_ratio_min <= self.mask_ratio_mean <= self.mask_ratio_max
            and self.mask_ratio_max < 1.0
        ):
            raise ConfigError(
                f"mask ratios min {self.mask_ratio_min}, mean {self.mask_ratio_mean}, "
                f"max {self.mask_ratio_max} are not ordered within [0, 1)",
                "use 0 <= mask_ratio_min <= mask_ratio_mean <= mask_ratio_max < 1",
            )
        if self.mask_resample not in MASK_RESAMPLING:
            raise ConfigError(
                f"mask_resample {self.mask_resample!r} is unknown",
                f"use one of {', '.join(MASK_RESAMPLING)}",
            )
        if not 0.0 < self.gamma <= 1.0 or not 0.0 < self.tau <= 1.0:
            raise ConfigError(
                f"gamma {self.gamma} and tau {self.tau} must be in (0, 1]"
            )
