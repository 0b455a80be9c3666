"""EarnMore's updates: SAC on the masked representation, mask penalty, reconstruction.

Each gradient update draws one batch of transitions, each with its own mask,
and runs, in EarnMore's order:

1. the twin critics toward ``r + gamma * (min Q_target(s', a') - alpha log pi(a'|s'))``;
2. the entropy temperature alpha toward the target entropy ``-(N + 1)``;
3. the actor, maximising ``min Q(s, a) - alpha log pi(a|s)``, plus
   ``mask_penalty`` times the weight the deterministic policy gives masked stocks;
4. the representation, on the reconstruction of masked stocks.

With masking on, rho is computed without gradient for the RL losses, so the
representation learns only from reconstruction, as in EarnMore. With masking
off (the ablation) there is no reconstruction, and the critic loss trains the
representation instead.
"""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import nn

from finrl_lab.agents.earnmore.model import EarnMoreModel, gather_windows
from finrl_lab.agents.earnmore.policy import reweight
from finrl_lab.agents.earnmore.settings import EarnMoreSettings
from finrl_lab.optim import build_optimizer


class EarnMoreLearner:
    """Optimizers, target critics and the entropy temperature of one model.

    :param model: the model to train, already on ``device``.
    :param settings: SAC and masking settings.
    :param optimizer_config: a :func:`finrl_lab.optim.build_optimizer` config,
        used for the representation, the actor and the critics alike.
    :param features: scaled features [T, N, F] on ``device``.
    :param available: bool [T, N] on ``device``.
    """

    def __init__(
        self,
        model: EarnMoreModel,
        settings: EarnMoreSettings,
        optimizer_config: dict | None,
        features: torch.Tensor,
        available: torch.Tensor,
    ) -> None:
        self.model = model
        self.settings = settings
        self.features = features
        self.available = available
        self.device = features.device
        self.target_critic = copy.deepcopy(model.critic).requires_grad_(False)
        self.log_alpha = nn.Parameter(
            torch.tensor(settings.init_log_alpha, device=self.device)
        )
        critic_modules: nn.Module = model.critic
        if not settings.masking:
            critic_modules = nn.ModuleList([model.critic, model.representation])
        # NOTE: the learning rate is constant; EarnMore's warm-up and step decay
        # are not implemented.
        self.critic_optimizer = build_optimizer(critic_modules, optimizer_config)
        self.actor_optimizer = build_optimizer(model.actor, optimizer_config)
        self.representation_optimizer = (
            build_optimizer(model.representation, optimizer_config)
            if settings.masking
            else None
        )
        self.alpha_optimizer = torch.optim.Adam([self.log_alpha], lr=settings.alpha_lr)
        self.target_entropy = -settings.target_entropy_scale * (model.n_stocks + 1)

    # -- batches ----------------------------------------------------------------

    def batch_tensors(self, batch: dict) -> dict[str, torch.Tensor]:
        """Move a replay batch to the device and look up its feature windows."""
        lookback = self.settings.lookback
        day = torch.as_tensor(batch["day"], device=self.device)
        visible = torch.as_tensor(batch["visible"], device=self.device)
        next_day = day + 1
        return {
            "windows": gather_windows(self.features, day, lookback),
            "next_windows": gather_windows(self.features, next_day, lookback),
            "visible": visible,
            "next_visible": visible & self.available[next_day],
            "available": self.available[day],
            "weights": torch.as_tensor(batch["weights"], device=self.device),
            "action": torch.as_tensor(batch["action"], device=self.device),
            "reward": torch.as_tensor(batch["reward"], device=self.device),
            "next_weights": torch.as_tensor(batch["next_weights"], device=self.device),
        }

    # -- one gradient update ------------------------------------------------------

    def update(self, batch: dict) -> dict[str, torch.Tensor]:
        """Run one gradient update of every part; return the losses as tensors."""
        s = self.settings
        model = self.model
        b = self.batch_tensors(batch)
        temperature = model.temperature
        alpha = self.log_alpha.exp().detach()

        with torch.no_grad():
            rho_next = model.representation(b["next_windows"], b["next_visible"])
            next_logits, next_log_prob = model.actor.sample(rho_next, b["next_weights"])
            next_action = reweight(next_logits, temperature)
            q1_next, q2_next = self.target_critic(
                rho_next, next_action, b["next_weights"]
            )
            soft_value = torch.min(q1_next, q2_next) - alpha * next_log_prob
            target = b["reward"] + s.gamma * soft_value

        # One pass with gradient serves both losses that train the
        # representation: reconstruction with masking, the critic loss without.
        rho_grad = model.representation(b["windows"], b["visible"])
        rho = rho_grad if not s.masking else rho_grad.detach()
        q1, q2 = model.critic(rho, b["action"], b["weights"])
        critic_loss = F.mse_loss(q1, target) + F.mse_loss(q2, target)
        self._step(self.critic_optimizer, critic_loss)
        rho = rho.detach()

        # Temperature.
        logits, log_prob = model.actor.sample(rho, b["weights"])
        alpha_loss = -(self.log_alpha * (log_prob.detach() + self.target_entropy))
        alpha_loss = alpha_loss.mean()
        self.alpha_optimizer.zero_grad(set_to_none=True)
        alpha_loss.backward()
        self.alpha_optimizer.step()

        # Actor, with the penalty on weight given to masked stocks.
        action = reweight(logits, temperature)
        q1_pi, q2_pi = model.critic(rho, action, b["weights"])
        actor_loss = (alpha * log_prob - torch.min(q1_pi, q2_pi)).mean()
        mean_logits, _ = model.actor(rho, b["weights"])
        greedy = reweight(mean_logits, temperature)
        masked = (~b["visible"]).to(greedy.dtype)
        penalty = (greedy[:, 1:] * masked).sum(dim=1).mean()
        total = actor_loss + s.mask_penalty * penalty if s.masking else actor_loss
        self._step(self.actor_optimizer, total)
        self._soft_update()

        losses = {
            "critic_loss": critic_loss.detach(),
            "actor_loss": actor_loss.detach(),
            "alpha": alpha,
            "mask_penalty": penalty.detach(),
            "entropy": -log_prob.detach().mean(),
        }
        if self.representation_optimizer is not None:
            reconstruction = model.representation.reconstruction_loss(
                b["windows"], b["visible"], b["available"], rho_grad
            )
            self._step(self.representation_optimizer, reconstruction)
            losses["reconstruction_loss"] = reconstruction.detach()
        return losses

    def _step(self, optimizer: torch.optim.Optimizer, loss: torch.Tensor) -> None:
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        parameters = [p for g in optimizer.param_groups for p in g["params"]]
        torch.nn.utils.clip_grad_norm_(parameters, self.settings.grad_clip)
        optimizer.step()

    def _soft_update(self) -> None:
        tau = self.settings.tau
        with torch.no_grad():
            online = list(self.model.critic.parameters())
            target = list(self.target_critic.parameters())
            torch._foreach_lerp_(target, online, tau)

    # -- checkpoints ----------------------------------------------------------------

    def state_dict(self) -> dict:
        """Return the optimizer, target-critic and temperature states."""
        state = {
            "target_critic": self.target_critic.state_dict(),
            "log_alpha": self.log_alpha.detach().clone(),
            "critic_optimizer": self.critic_optimizer.state_dict(),
            "actor_optimizer": self.actor_optimizer.state_dict(),
            "alpha_optimizer": self.alpha_optimizer.state_dict(),
        }
        if self.representation_optimizer is not None:
            state["representation_optimizer"] = (
                self.representation_optimizer.state_dict()
            )
        return state

    def load_state_dict(self, state: dict) -> None:
        """Restore what :meth:`state_dict` returned."""
        self.target_critic.load_state_dict(state["target_critic"])
        with torch.no_grad():
            self.log_alpha.copy_(state["log_alpha"])
        self.critic_optimizer.load_state_dict(state["critic_optimizer"])
        self.actor_optimizer.load_state_dict(state["actor_optimizer"])
        self.alpha_optimizer.load_state_dict(state["alpha_optimizer"])
        if self.representation_optimizer is not None:
            self.representation_optimizer.load_state_dict(
                state["representation_optimizer"]
            )
