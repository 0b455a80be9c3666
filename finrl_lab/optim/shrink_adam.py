"""ShrinkAdam: AdamW on gradients passed through entry-wise shrinkage."""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch import Tensor
from torch.optim import Optimizer

from finrl_lab.optim.shrinkage import SHRINK_MODES, shrink_foreach

logger = logging.getLogger(__name__)

SHRINK_WHERE = ("grad", "update")


class ShrinkAdam(Optimizer):
    """AdamW whose gradients pass through an entry-wise shrinkage first.

    Each step, for a parameter with gradient g and Adam moments m, v:

    1. s = sqrt(v_hat) + eps, where v_hat is the bias-corrected second moment from
       before this step, so s is the running noise scale of each entry in
       gradient units. The first step has no scale yet and skips shrinkage.
    2. g_shrunk = psi(g; s) with the chosen ``shrink`` mode (see
       :mod:`finrl_lab.optim.shrinkage`).
    3. m and v update from g_shrunk, so an outlier enters neither moment, and
       the rest is AdamW: decoupled weight decay p <- p*(1 - lr*weight_decay),
       then p <- p - lr * m_hat / (sqrt(v_hat) + eps).

    With ``shrink_where="update"`` the gradient goes in unchanged and psi is
    applied to the Adam update m_hat/(sqrt(v_hat) + eps) with s = 1 instead.
    With ``shrink="none"`` every step equals ``torch.optim.AdamW`` (foreach).

    Args:
        params: parameters or parameter groups, tensors of any shape.
        lr: learning rate in parameter units per step (default 1e-3).
        betas: decay rates of the first and second moment (default (0.9, 0.999)).
        eps: added to sqrt(v_hat), in gradient units (default 1e-8).
        weight_decay: decoupled weight decay per unit of lr (default 1e-2).
        shrink: one of ``none``, ``bayes``, ``soft``, ``tanh``, ``hard``
            (default ``bayes``).
        threshold: lambda of ``soft``, ``tanh`` and ``hard``, in units of s
            (default 3.0, a starting guess, not tuned).
        contamination: outlier fraction eps of ``bayes`` (default 1e-3).
        cauchy_scale: outlier scale kappa of ``bayes``, in units of s (default 1.0).
        shrink_where: ``grad`` (default) or ``update``.
        compile: run the elementwise step through ``torch.compile`` (default
            False). The first step then takes seconds to compile.

    State per parameter: ``step`` (a 0-d CPU tensor), ``exp_avg`` and
    ``exp_avg_sq`` shaped like the parameter, as in AdamW.
    """

    def __init__(
        self,
        params: Iterable[Tensor] | Iterable[dict[str, Any]],
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 1e-2,
        shrink: str = "bayes",
        threshold: float = 3.0,
        contamination: float = 1e-3,
        cauchy_scale: float = 1.0,
        shrink_where: str = "grad",
        compile: bool = False,
    ) -> None:
        if lr < 0.0:
            raise ValueError(f"invalid learning rate {lr}; use lr >= 0")
        if not (0.0 <= betas[0] < 1.0 and 0.0 <= betas[1] < 1.0):
            raise ValueError(f"invalid betas {betas}; each must be in [0, 1)")
        if shrink not in SHRINK_MODES:
            raise ValueError(f"invalid shrink {shrink!r}; valid modes: {SHRINK_MODES}")
        if shrink_where not in SHRINK_WHERE:
            raise ValueError(
                f"invalid shrink_where {shrink_where!r}; valid: {SHRINK_WHERE}"
            )
        if threshold <= 0.0:
            raise ValueError(f"invalid threshold {threshold}; use threshold > 0")
        if not 0.0 <= contamination < 1.0:
            raise ValueError(f"invalid contamination {contamination}; use [0, 1)")
        defaults = {
            "lr": lr,
            "betas": betas,
            "eps": eps,
            "weight_decay": weight_decay,
            "shrink": shrink,
            "threshold": threshold,
            "contamination": contamination,
            "cauchy_scale": cauchy_scale,
            "shrink_where": shrink_where,
        }
        super().__init__(params, defaults)
        self._compiled_update: Callable[..., None] | None = None
        if compile:
            self._compiled_update = torch.compile(_shrink_adam_tensorwise)

    @torch.no_grad()
    def step(self, closure: Callable[[], float] | None = None) -> float | None:
        """Update every parameter that has a gradient; return the closure's loss."""
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()

        for group in self.param_groups:
            params: list[Tensor] = []
            grads: list[Tensor] = []
            exp_avgs: list[Tensor] = []
            exp_avg_sqs: list[Tensor] = []
            steps: list[int] = []
            for p in group["params"]:
                if p.grad is None:
                    continue
                if p.grad.is_sparse:
                    raise RuntimeError("ShrinkAdam does not support sparse gradients")
                state = self.state[p]
                if not state:
                    state["step"] = torch.tensor(0.0)
                    state["exp_avg"] = torch.zeros_like(p)
                    state["exp_avg_sq"] = torch.zeros_like(p)
                # The step count lives on the CPU, so reading it never syncs.
                state["step"] += 1
                params.append(p)
                grads.append(p.grad)
                exp_avgs.append(state["exp_avg"])
                exp_avg_sqs.append(state["exp_avg_sq"])
                steps.append(int(state["step"]))
            if params:
                self._update_group(group, params, grads, exp_avgs, exp_avg_sqs, steps)
        return loss

    def _update_group(
        self,
        group: dict[str, Any],
        params: list[Tensor],
        grads: list[Tensor],
        exp_avgs: list[Tensor],
        exp_avg_sqs: list[Tensor],
        steps: list[int],
    ) -> None:
        beta1, beta2 = group["betas"]
        if self._compiled_update is not None:
            # Step counts and lr enter as tensors, so their changing values do
            # not trigger a recompilation.
            self._compiled_update(
                params,
                grads,
                exp_avgs,
                exp_avg_sqs,
                [self.state[p]["step"] for p in params],
                torch.tensor(group["lr"], dtype=torch.float64),
                beta1=beta1,
                beta2=beta2,
                eps=group["eps"],
                weight_decay=group["weight_decay"],
                shrink=group["shrink"],
                threshold=group["threshold"],
                contamination=group["contamination"],
                cauchy_scale=group["cauchy_scale"],
                shrink_where=group["shrink_where"],
            )
            return
        _shrink_adam_update(
            params,
            grads,
            exp_avgs,
            exp_avg_sqs,
            bias_corrections1=[1.0 - beta1**t for t in steps],
            bias_corrections2=[1.0 - beta2**t for t in steps],
            first_step=[t == 1 for t in steps],
            lr=group["lr"],
            beta1=beta1,
            beta2=beta2,
            eps=group["eps"],
            weight_decay=group["weight_decay"],
            shrink=group["shrink"],
            threshold=group["threshold"],
            contamination=group["contamination"],
            cauchy_scale=group["cauchy_scale"],
            shrink_where=group["shrink_where"],
        )


def _shrink_adam_update(
    params: list[Tensor],
    grads: list[Tensor],
    exp_avgs: list[Tensor],
    exp_avg_sqs: list[Tensor],
    *,
    bias_corrections1: list[float],
    bias_corrections2: list[float],
    first_step: list[bool],
    lr: float,
    beta1: float,
    beta2: float,
    eps: float,
    weight_decay: float,
    shrink: str,
    threshold: float,
    contamination: float,
    cauchy_scale: float,
    shrink_where: str,
) -> None:
    """Apply one ShrinkAdam step to lists of tensors, in place, with foreach ops."""
    shrink_kwargs = {
        "mode": shrink,
        "threshold": threshold,
        "contamination": contamination,
        "cauchy_scale": cauchy_scale,
    }
    if shrink != "none" and shrink_where == "grad":
        grads = _shrink_grads(
            grads, exp_avg_sqs, bias_corrections2, first_step, beta2, eps, shrink_kwargs
        )

    if weight_decay != 0.0:
        torch._foreach_mul_(params, 1.0 - lr * weight_decay)
    torch._foreach_lerp_(exp_avgs, grads, 1.0 - beta1)
    torch._foreach_mul_(exp_avg_sqs, beta2)
    torch._foreach_addcmul_(exp_avg_sqs, grads, grads, 1.0 - beta2)

    denominators = torch._foreach_sqrt(exp_avg_sqs)
    torch._foreach_div_(denominators, [math.sqrt(bc) for bc in bias_corrections2])
    torch._foreach_add_(denominators, eps)
    step_sizes = [-lr / bc for bc in bias_corrections1]
    if shrink == "none" or shrink_where == "grad":
        torch._foreach_addcdiv_(params, exp_avgs, denominators, step_sizes)
        return

    # shrink_where == "update": psi acts on the unit-free Adam direction, s = 1.
    updates = torch._foreach_div(exp_avgs, denominators)
    torch._foreach_div_(updates, bias_corrections1)
    updates = shrink_foreach(updates, 1.0, **shrink_kwargs)
    torch._foreach_add_(params, updates, alpha=-lr)


def _shrink_grads(
    grads: list[Tensor],
    exp_avg_sqs: list[Tensor],
    bias_corrections2: list[float],
    first_step: list[bool],
    beta2: float,
    eps: float,
    shrink_kwargs: dict[str, Any],
) -> list[Tensor]:
    """Return the gradients shrunk against s = sqrt(v_hat of the previous step) + eps.

    Parameters on their first step have no scale yet and pass unchanged.
    """
    later = [i for i, first in enumerate(first_step) if not first]
    if not later:
        return grads
    # v_hat before this step uses the bias correction of step t-1: 1 - beta2^(t-1)
    # = (1 - beta2^t - (1 - beta2)) / beta2.
    previous_corrections = [
        math.sqrt((bias_corrections2[i] - (1.0 - beta2)) / beta2) for i in later
    ]
    scales = torch._foreach_sqrt([exp_avg_sqs[i] for i in later])
    torch._foreach_div_(scales, previous_corrections)
    torch._foreach_add_(scales, eps)
    shrunk = shrink_foreach([grads[i] for i in later], scales, **shrink_kwargs)
    result = list(grads)
    for index, tensor in zip(later, shrunk, strict=True):
        result[index] = tensor
    return result


def _shrink_adam_tensorwise(
    params: list[Tensor],
    grads: list[Tensor],
    exp_avgs: list[Tensor],
    exp_avg_sqs: list[Tensor],
    steps: list[Tensor],
    lr: Tensor,
    *,
    beta1: float,
    beta2: float,
    eps: float,
    weight_decay: float,
    shrink: str,
    threshold: float,
    contamination: float,
    cauchy_scale: float,
    shrink_where: str,
) -> None:
    """Apply one ShrinkAdam step tensor by tensor, for ``torch.compile``.

    The same arithmetic as :func:`_shrink_adam_update`, written without Python
    branches on the step count: the first step selects the raw gradient with
    ``torch.where``.
    """
    shrink_kwargs = {
        "mode": shrink,
        "threshold": threshold,
        "contamination": contamination,
        "cauchy_scale": cauchy_scale,
    }
    for p, g, exp_avg, exp_avg_sq, step in zip(
        params, grads, exp_avgs, exp_avg_sqs, steps, strict=True
    ):
        # float32 powers of beta would lose digits that the eager path keeps.
        step = step.to(torch.float64)
        correction1 = 1.0 - beta1**step
        correction2 = 1.0 - beta2**step
        if shrink != "none" and shrink_where == "grad":
            previous_correction = 1.0 - beta2 ** (step - 1.0)
            # On step 1 this is 0/0; torch.where then keeps the raw gradient.
            scale = (exp_avg_sq / previous_correction).sqrt() + eps
            shrunk = shrink_foreach([g], [scale], **shrink_kwargs)[0]
            g = torch.where(step > 1.0, shrunk, g)
        if weight_decay != 0.0:
            p.mul_(1.0 - lr * weight_decay)
        exp_avg.lerp_(g, 1.0 - beta1)
        exp_avg_sq.mul_(beta2).addcmul_(g, g, value=1.0 - beta2)
        denominator = exp_avg_sq.sqrt() / correction2.sqrt() + eps
        update = exp_avg / (correction1 * denominator)
        if shrink != "none" and shrink_where == "update":
            update = shrink_foreach([update], 1.0, **shrink_kwargs)[0]
        p.sub_(lr * update)
