"""Trace-SAC learner: SAC whose critic regresses on soft Retrace targets.

One :meth:`TraceSAC.update` takes a batch of n-step chunks and runs, in order:
the temperature step (automatic entropy tuning), the critic step on the chunk
targets of :mod:`finrl_lab.agents.trace_sac.targets`, the actor step (every
``policy_delay`` updates) and the Polyak update of the target critics.
"""

from __future__ import annotations

import copy
import dataclasses
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from finrl_lab.agents.trace_sac.networks import build_networks, squashed_log_prob
from finrl_lab.agents.trace_sac.replay import ChunkBatch
from finrl_lab.agents.trace_sac.targets import (
    TRACES,
    soft_retrace_returns,
    trace_coefficients,
)
from finrl_lab.errors import ConfigError

try:
    from finrl_lab.optim import build_optimizer
except ImportError:  # pragma: no cover - the optim package ships with finrl_lab

    def build_optimizer(model: nn.Module, config: dict | None) -> torch.optim.Optimizer:
        """Fall back to AdamW while ``finrl_lab.optim`` is missing."""
        lr = (config or {}).get("lr", 3e-4)
        return torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.0)


@dataclass
class TraceSACConfig:
    """Hyperparameters of Trace-SAC (the ``agent`` block of a config, less ``name``).

    :param trace: ``retrace``, ``qlambda``, ``nstep``, ``treebackup`` or ``is``.
    :param n_step: chunk length n; n = 1 is SAC.
    :param lam: lambda of the trace coefficient.
    :param c_bar: clip of the importance ratio in ``retrace``.
    :param gamma: discount per bar.
    :param tau: Polyak rate of the target critics.
    :param batch_size: chunks per update.
    :param hidden_sizes: MLP head widths of actor and critics.
    :param encoder: ``{"kind": "mlp"|"lstm"|"transformer", "hidden", "layers",
        "heads"}``.
    :param actor_optimizer: config for :func:`finrl_lab.optim.build_optimizer`.
    :param critic_optimizer: same, for the twin critics.
    :param alpha_lr: learning rate of log alpha (Adam).
    :param alpha_init: initial temperature.
    :param target_entropy: entropy target of the temperature step; ``auto`` is
        minus the action dimension.
    :param auto_alpha: tune alpha (True) or keep ``alpha_init``.
    :param policy_delay: critic updates per actor update.
    :param train_all_steps: sample ``batch_size // n_step`` chunks and train on
        every valid step: Q(s_k, a_k) regresses on G_k, whose trace runs to the
        chunk's end (n - k steps), and the actor and temperature use every s_k.
        An update then costs about as much as SAC's at the same batch size.
        False (default): ``batch_size`` chunks, training on s_0 with n-step traces.
    :param grad_clip: max gradient norm of actor and critics; None for no clip.
    """

    trace: str = "retrace"
    n_step: int = 16
    lam: float = 1.0
    c_bar: float = 1.0
    gamma: float = 0.99
    tau: float = 0.005
    batch_size: int = 256
    hidden_sizes: list[int] = field(default_factory=lambda: [256, 256])
    encoder: dict[str, Any] = field(default_factory=lambda: {"kind": "mlp"})
    actor_optimizer: dict[str, Any] = field(
        default_factory=lambda: {"name": "adamw", "lr": 3e-4}
    )
    critic_optimizer: dict[str, Any] = field(
        default_factory=lambda: {"name": "adamw", "lr": 3e-4}
    )
    alpha_lr: float = 3e-4
    alpha_init: float = 0.1
    target_entropy: float | str = "auto"
    auto_alpha: bool = True
    policy_delay: int = 1
    train_all_steps: bool = False
    grad_clip: float | None = None

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> TraceSACConfig:
        """Build from a dict; raise ConfigError naming any unknown or bad key."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ConfigError(
                f"unknown trace_sac agent keys {unknown}",
                f"use some of {', '.join(sorted(known))}",
            )
        config = cls(**values)
        config.check()
        return config

    def check(self) -> None:
        """Raise ConfigError on an out-of-range value."""
        if self.trace not in TRACES:
            raise ConfigError(
                f"unknown agent.trace {self.trace!r}", f"use one of {', '.join(TRACES)}"
            )
        checks = [
            ("n_step", self.n_step >= 1, "use 1 or more"),
            ("lam", 0.0 <= self.lam <= 1.0, "use a value in [0, 1]"),
            ("c_bar", self.c_bar > 0, "use a value above 0"),
            ("gamma", 0.0 <= self.gamma < 1.0, "use a value in [0, 1)"),
            ("tau", 0.0 < self.tau <= 1.0, "use a value in (0, 1]"),
            ("batch_size", self.batch_size >= 1, "use 1 or more"),
            ("alpha_init", self.alpha_init > 0, "use a value above 0"),
            ("policy_delay", self.policy_delay >= 1, "use 1 or more"),
        ]
        for name, ok, hint in checks:
            if not ok:
                raise ConfigError(f"invalid agent.{name} {getattr(self, name)!r}", hint)


class TraceSAC:
    """Actor, twin critics with targets, temperature and their optimizers.

    :param config: hyperparameters.
    :param lookback: L; ``n_features``: F of the env's observation.
    :param device: ``cpu`` or ``cuda``.
    """

    def __init__(
        self,
        config: TraceSACConfig,
        lookback: int,
        n_features: int,
        device: str | torch.device = "cpu",
    ) -> None:
        self.config = config
        self.device = torch.device(device)
        self.lookback, self.n_features = lookback, n_features
        self.actor, self.critic = build_networks(
            config.encoder, config.hidden_sizes, lookback, n_features
        )
        self.actor.to(self.device)
        self.critic.to(self.device)
        self.critic_target = copy.deepcopy(self.critic).requires_grad_(False)
        self.actor_optimizer = build_optimizer(self.actor, config.actor_optimizer)
        self.critic_optimizer = build_optimizer(self.critic, config.critic_optimizer)
        self.log_alpha = torch.tensor(
            math.log(config.alpha_init), device=self.device, requires_grad=True
        )
        # NOTE: log alpha is one scalar, so it uses torch Adam directly rather
        # than the project optimizers, which route per network.
        self.alpha_optimizer = torch.optim.Adam([self.log_alpha], lr=config.alpha_lr)
        entropy = config.target_entropy
        self.target_entropy = -1.0 if entropy == "auto" else float(entropy)
        self.updates = 0
        self._online = list(self.critic.parameters())
        self._target = list(self.critic_target.parameters())

    @property
    def alpha(self) -> Tensor:
        """Current temperature (a detached scalar tensor)."""
        return self.log_alpha.detach().exp()

    # -- acting ---------------------------------------------------------------

    def _tensors(self, observation: dict[str, np.ndarray]) -> tuple[Tensor, Tensor]:
        features = torch.as_tensor(observation["features"], device=self.device)
        account = torch.as_tensor(observation["account"], device=self.device)
        if features.dim() == 2:
            features, account = features[None], account[None]
        return features, account

    @torch.no_grad()
    def act(
        self, observation: dict[str, np.ndarray], deterministic: bool = False
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Return (action, pre-squash u, log mu) for one observation or a batch.

        ``action`` = tanh(u) in [-1, 1]; the deterministic action uses the mean.
        """
        features, account = self._tensors(observation)
        dist = self.actor.distribution(features, account)
        u = dist.mean if deterministic else dist.sample()
        log_mu = squashed_log_prob(dist, u)
        return torch.tanh(u).cpu().numpy(), u.cpu().numpy(), log_mu.cpu().numpy()

    @torch.no_grad()
    def q_values(
        self, observation: dict[str, np.ndarray], action: np.ndarray
    ) -> Tensor:
        """Return min_j Q_j(s, a) [B] of the online critics."""
        features, account = self._tensors(observation)
        a = torch.as_tensor(action, device=self.device, dtype=torch.float32)
        return self.critic(features, account, a.reshape(len(features), -1)).min(0)[0]

    # -- learning -------------------------------------------------------------

    @torch.no_grad()
    def compute_targets(self, batch: ChunkBatch) -> Tensor:
        """Return the soft Retrace targets G [B, n] of a batch of chunks."""
        cfg = self.config
        batch_size, n = batch.rewards.shape
        alpha = self.alpha
        next_features = batch.next_features.flatten(0, 1)
        next_account = batch.next_account.flatten(0, 1)
        dist = self.actor.distribution(next_features, next_account)
        u_sampled = dist.sample()
        log_pi_sampled = squashed_log_prob(dist, u_sampled)
        encodings = self.critic_target.encode(next_features, next_account)
        if n == 1:
            q_sampled = self.critic_target.heads_at(encodings, torch.tanh(u_sampled))
            next_value = q_sampled.min(0)[0] - alpha * log_pi_sampled
            zeros = torch.zeros_like(batch.rewards)
            return soft_retrace_returns(
                batch.rewards,
                batch.terminated,
                torch.ones_like(batch.rewards),
                next_value.view(batch_size, 1),
                zeros,
                zeros,
                cfg.gamma,
            )
        # Entry k of the next-step tensors belongs to s_{k+1}; the logged action
        # a_{k+1} is the next slot's, and the last entry is never used.
        u_next = torch.cat([batch.u[:, 1:], batch.u[:, -1:]], dim=1).flatten(0, 1)
        log_mu_next = torch.cat([batch.log_mu[:, 1:], batch.log_mu[:, -1:]], dim=1)
        actions = torch.cat([torch.tanh(u_sampled), torch.tanh(u_next)])
        doubled = [torch.cat([e, e]) for e in encodings]
        q_both = self.critic_target.heads_at(doubled, actions).min(0)[0]
        q_sampled, q_logged = q_both.split(batch_size * n)
        next_value = (q_sampled - alpha * log_pi_sampled).view(batch_size, n)
        log_pi_next = squashed_log_prob(dist, u_next).view(batch_size, n)
        traces = trace_coefficients(
            cfg.trace, log_pi_next, log_mu_next, cfg.lam, cfg.c_bar
        )
        return soft_retrace_returns(
            batch.rewards,
            batch.terminated,
            batch.chunk_end,
            next_value,
            q_logged.view(batch_size, n),
            traces,
            cfg.gamma,
        )

    def chunks_per_batch(self) -> int:
        """Return how many chunks one update samples.

        ``batch_size`` chunks, or ``batch_size // n_step`` with
        ``train_all_steps``, where every step of a chunk is a training pair.
        """
        cfg = self.config
        if cfg.train_all_steps:
            return max(1, cfg.batch_size // cfg.n_step)
        return cfg.batch_size

    def update(self, batch: ChunkBatch) -> dict[str, Tensor]:
        """Run one gradient update; return detached losses and diagnostics."""
        cfg = self.config
        if cfg.train_all_steps:
            features = batch.features.flatten(0, 1)
            account = batch.account.flatten(0, 1)
            u_logged = batch.u.flatten(0, 1)
            weight = batch.valid.flatten()
        else:
            features, account = batch.features[:, 0], batch.account[:, 0]
            u_logged = batch.u[:, 0]
            weight = torch.ones_like(batch.rewards[:, 0])
        count = weight.sum()

        u_new, log_pi = self.actor.sample(features, account)
        entropy_gap = (log_pi.detach() + self.target_entropy) * weight
        alpha_loss = -(self.log_alpha * entropy_gap).sum() / count
        if cfg.auto_alpha:
            self.alpha_optimizer.zero_grad(set_to_none=True)
            alpha_loss.backward()
            self.alpha_optimizer.step()
        alpha = self.alpha

        targets = self.compute_targets(batch)
        target = targets.flatten() if cfg.train_all_steps else targets[:, 0]
        q = self.critic(features, account, torch.tanh(u_logged))
        # Sum over the twin critics, mean over the training pairs.
        critic_loss = 0.5 * (((q - target) ** 2) * weight).sum() / count
        self.critic_optimizer.zero_grad(set_to_none=True)
        critic_loss.backward()
        if cfg.grad_clip is not None:
            nn.utils.clip_grad_norm_(self.critic.parameters(), cfg.grad_clip)
        self.critic_optimizer.step()

        info = {
            "critic_loss": critic_loss.detach(),
            "alpha_loss": alpha_loss.detach(),
            "alpha": alpha,
            "entropy": -(log_pi.detach() * weight).sum() / count,
            "target_mean": targets[:, 0].mean(),
        }
        if self.updates % cfg.policy_delay == 0:
            q_new = self.critic(features, account, torch.tanh(u_new)).min(0)[0]
            actor_loss = ((alpha * log_pi - q_new) * weight).sum() / count
            self.actor_optimizer.zero_grad(set_to_none=True)
            actor_loss.backward()
            if cfg.grad_clip is not None:
                nn.utils.clip_grad_norm_(self.actor.parameters(), cfg.grad_clip)
            self.actor_optimizer.step()
            info["actor_loss"] = actor_loss.detach()

        with torch.no_grad():
            torch._foreach_lerp_(self._target, self._online, cfg.tau)
        self.updates += 1
        return info

    # -- persistence ----------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        """Return every tensor and optimizer state needed to resume training."""
        return {
            "actor": self.actor.state_dict(),
            "critic": self.critic.state_dict(),
            "critic_target": self.critic_target.state_dict(),
            "log_alpha": self.log_alpha.detach().cpu(),
            "actor_optimizer": self.actor_optimizer.state_dict(),
            "critic_optimizer": self.critic_optimizer.state_dict(),
            "alpha_optimizer": self.alpha_optimizer.state_dict(),
            "updates": self.updates,
            "config": dataclasses.asdict(self.config),
            "shape": (self.lookback, self.n_features),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned."""
        self.actor.load_state_dict(state["actor"])
        self.critic.load_state_dict(state["critic"])
        self.critic_target.load_state_dict(state["critic_target"])
        with torch.no_grad():
            self.log_alpha.copy_(state["log_alpha"].to(self.device))
        self.actor_optimizer.load_state_dict(state["actor_optimizer"])
        self.critic_optimizer.load_state_dict(state["critic_optimizer"])
        self.alpha_optimizer.load_state_dict(state["alpha_optimizer"])
        self.updates = int(state["updates"])

    def save(self, path: str | Path) -> None:
        """Write the state to ``path`` (a temporary name, then renamed)."""
        target = Path(path)
        tmp = target.with_name(target.name + ".tmp")
        torch.save(self.state_dict(), tmp)
        tmp.replace(target)

    @classmethod
    def load(cls, path: str | Path, device: str | torch.device = "cpu") -> TraceSAC:
        """Build a learner from a file that :meth:`save` wrote."""
        state = torch.load(path, map_location=device, weights_only=False)
        lookback, n_features = state["shape"]
        agent = cls(
            TraceSACConfig(**state["config"]), lookback, n_features, device=device
        )
        agent.load_state_dict(state)
        return agent
