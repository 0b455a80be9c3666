"""ShrinkAdam: AdamW on gradients passed through entry-wise shrinkage."""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch import Tensor
from torch.optim import Optimizer

from finrl_lab.optim.shrinkage import (
    SHRINK_MODES,
    shrink_elementwise,
    shrink_foreach,
)

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
        compile: run the step of each param group as one ``torch.compile``d
            function over all its tensors, one fused pass per tensor (default
            False). The first step then compiles for seconds (about 15-50 s for
            3.2M parameters on one CPU thread). Without a working compiler it
            logs a warning and stays eager. Groups whose step counts differ
            take the eager path.

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
            # dynamic=False: a second parameter group with other shapes gets its
            # own static graph instead of turning every graph dynamic.
            self._compiled_update = torch.compile(_shrink_adam_fused, dynamic=False)
        self._compile_checked = False

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

    def _run_compiled(
        self,
        group: dict[str, Any],
        params: list[Tensor],
        grads: list[Tensor],
        exp_avgs: list[Tensor],
        exp_avg_sqs: list[Tensor],
        step: int,
    ) -> bool:
        """Run the compiled step on a group whose parameters share ``step``.

        Return False, after logging a warning and dropping the compiled
        function, when the first compilation fails (no C++ compiler, no
        inductor); the caller then runs the eager step. Compilation happens
        before any tensor is written, so nothing is half updated.
        """
        assert self._compiled_update is not None
        beta1, beta2 = group["betas"]
        # NOTE: on CUDA, inductor is expected to pass these 0-d CPU tensors to its
        # kernels as scalars without a sync; this path has not run on a GPU yet.
        # float64 parameters get float64 scalars, so no digits are lost.
        dtype = torch.float64 if params[0].dtype == torch.float64 else torch.float32
        scalars = _step_scalars(
            step, group["lr"], beta1, beta2, group["weight_decay"], dtype
        )
        try:
            self._compiled_update(
                params,
                grads,
                exp_avgs,
                exp_avg_sqs,
                scalars,
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
        except Exception as error:
            if self._compile_checked:
                raise
            logger.warning(
                "ShrinkAdam: torch.compile failed (%s); using the eager step", error
            )
            self._compiled_update = None
            return False
        self._compile_checked = True
        return True

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
        if self._compiled_update is not None and len(set(steps)) == 1:
            if self._run_compiled(
                group, params, grads, exp_avgs, exp_avg_sqs, steps[0]
            ):
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


def _shrink_adam_fused(
    params: list[Tensor],
    grads: list[Tensor],
    exp_avgs: list[Tensor],
    exp_avg_sqs: list[Tensor],
    scalars: list[Tensor],
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
    """Apply one ShrinkAdam step to a whole list of tensors, for ``torch.compile``.

    The same arithmetic as :func:`_shrink_adam_update` for parameters that share
    one step count. ``scalars`` are 0-d CPU tensors, built by
    :func:`_step_scalars`, so new step counts or learning rates reuse the
    compiled code. The loop unrolls into one graph that inductor turns into one
    fused pass per parameter. On the first step ``torch.where`` keeps the raw
    gradient.
    """
    decay, previous_root, root_correction2, step_size, correction1, lr, later = scalars
    shrink_kwargs = {
        "mode": shrink,
        "threshold": threshold,
        "contamination": contamination,
        "cauchy_scale": cauchy_scale,
    }
    for p, g, exp_avg, exp_avg_sq in zip(
        params, grads, exp_avgs, exp_avg_sqs, strict=True
    ):
        if shrink != "none" and shrink_where == "grad":
            scale = exp_avg_sq.sqrt() / previous_root + eps
            shrunk = shrink_elementwise(g, scale, **shrink_kwargs)
            g = torch.where(later > 0.0, shrunk, g)
        if weight_decay != 0.0:
            p.mul_(decay)
        exp_avg.lerp_(g, 1.0 - beta1)
        exp_avg_sq.mul_(beta2).addcmul_(g, g, value=1.0 - beta2)
        denominator = exp_avg_sq.sqrt() / root_correction2 + eps
        if shrink == "none" or shrink_where == "grad":
            p.add_(step_size * (exp_avg / denominator))
            continue
        update = exp_avg / denominator / correction1
        update = shrink_elementwise(update, 1.0, **shrink_kwargs)
        p.sub_(lr * update)


def _step_scalars(
    step: int,
    lr: float,
    beta1: float,
    beta2: float,
    weight_decay: float,
    dtype: torch.dtype = torch.float32,
) -> list[Tensor]:
    """Return the per-step scalars of :func:`_shrink_adam_fused` as 0-d tensors.

    In order: the weight-decay factor 1 - lr*weight_decay, sqrt of the previous
    step's second-moment bias correction (1 on the first step, where it is 0),
    sqrt of this step's correction, the step size -lr/(1 - beta1^t), the first
    moment's correction 1 - beta1^t, lr, and 1.0 after the first step (0.0 on
    it). They are computed in float64 on the host and stored on the CPU as
    ``dtype`` (float32 unless the parameters are float64), which is how the
    eager foreach path applies Python scalars.
    """
    correction1 = 1.0 - beta1**step
    correction2 = 1.0 - beta2**step
    # 1 - beta2^(t-1), written as the eager path writes it.
    previous = (correction2 - (1.0 - beta2)) / beta2 if step > 1 else 1.0
    values = (
        1.0 - lr * weight_decay,
        math.sqrt(previous),
        math.sqrt(correction2),
        -lr / correction1,
        correction1,
        lr,
        1.0 if step > 1 else 0.0,
    )
    return [torch.tensor(value, dtype=dtype) for value in values]
