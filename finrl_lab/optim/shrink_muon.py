"""ShrinkMuon: entry-wise shrinkage of each matrix gradient, then torch's Muon."""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Iterable, MutableMapping
from typing import Any

import torch
from torch import Tensor

from finrl_lab.optim.shrinkage import (
    SHRINK_MODES,
    clip_foreach,
    shrink_elementwise,
    shrink_foreach,
)

logger = logging.getLogger(__name__)

SHRINK_SCALES = ("ema", "rms", "mad")

# median(|x|) / 0.6745 estimates the standard deviation of Gaussian x.
_MAD_TO_STD = 1.0 / 0.6744897501960817


class ShrinkMuon(torch.optim.Muon):
    """``torch.optim.Muon`` on matrix gradients passed through entry-wise shrinkage.

    Each step replaces the gradient G of every 2-D parameter by psi(G; s) (see
    :mod:`finrl_lab.optim.shrinkage`) and then runs torch's Muon unchanged:
    momentum, Nesterov, Newton-Schulz orthogonalisation, learning-rate shape
    adjustment and decoupled weight decay. ``p.grad`` is not modified.

    The noise scale s comes from ``shrink_scale``:

    - ``ema`` (default): per entry, sqrt(v_hat) + scale_eps with v an
      exponential moving average (decay ``scale_beta``) of the shrunk G^2, as in
      ShrinkAdam. It costs one extra tensor per parameter, and the first step
      skips shrinkage because no scale exists yet.
    - ``rms``: one scale per matrix, the root mean square of G. It needs no
      memory, but a large outlier inflates it.
    - ``mad``: one scale per matrix, median(|G|)/0.6745, robust to outliers but
      a median costs a selection over the matrix.

    With ``shrink="none"`` every step equals ``torch.optim.Muon``.

    Args:
        params: 2-D parameters or parameter groups (torch's Muon rejects others).
        lr, weight_decay, momentum, nesterov, ns_coefficients, eps, ns_steps,
            adjust_lr_fn: as in ``torch.optim.Muon`` and with its defaults
            (lr 1e-3, weight_decay 0.1, momentum 0.95, nesterov True, 5 steps,
            adjust_lr_fn None meaning "original").
        shrink: one of ``none``, ``bayes``, ``soft``, ``tanh``, ``hard``
            (default ``hard``, entry-wise clipping).
        threshold: lambda of ``soft``, ``tanh`` and ``hard`` in units of s
            (default 3.0, a starting guess, not tuned).
        contamination, cauchy_scale: eps and kappa of ``bayes`` (defaults 1e-3, 1.0).
        shrink_scale: ``ema``, ``rms`` or ``mad`` (default ``ema``).
        scale_beta: decay of the ``ema`` scale (default 0.999).
        scale_eps: added to s, in gradient units (default 1e-12).
        compile: run the ``ema`` scale, the shrinkage and the EMA update as one
            ``torch.compile``d pass per matrix (default False). The first step
            then compiles for seconds; without a working compiler it logs a
            warning and stays eager. Parameters whose scale step counts differ
            within a group take the eager path.
    """

    def __init__(
        self,
        params: Iterable[Tensor] | Iterable[dict[str, Any]],
        lr: float = 1e-3,
        weight_decay: float = 0.1,
        momentum: float = 0.95,
        nesterov: bool = True,
        ns_coefficients: tuple[float, float, float] = (3.4445, -4.775, 2.0315),
        eps: float = 1e-7,
        ns_steps: int = 5,
        adjust_lr_fn: str | None = None,
        shrink: str = "hard",
        threshold: float = 3.0,
        contamination: float = 1e-3,
        cauchy_scale: float = 1.0,
        shrink_scale: str = "ema",
        scale_beta: float = 0.999,
        scale_eps: float = 1e-12,
        compile: bool = False,
    ) -> None:
        if shrink not in SHRINK_MODES:
            raise ValueError(f"invalid shrink {shrink!r}; valid modes: {SHRINK_MODES}")
        if shrink_scale not in SHRINK_SCALES:
            raise ValueError(
                f"invalid shrink_scale {shrink_scale!r}; valid: {SHRINK_SCALES}"
            )
        super().__init__(
            params,
            lr=lr,
            weight_decay=weight_decay,
            momentum=momentum,
            nesterov=nesterov,
            ns_coefficients=ns_coefficients,
            eps=eps,
            ns_steps=ns_steps,
            adjust_lr_fn=adjust_lr_fn,
        )
        # torch's Muon builds its own defaults, so the shrinkage settings join
        # afterwards; groups that set them explicitly keep their values.
        shrink_defaults = {
            "shrink": shrink,
            "threshold": threshold,
            "contamination": contamination,
            "cauchy_scale": cauchy_scale,
            "shrink_scale": shrink_scale,
            "scale_beta": scale_beta,
            "scale_eps": scale_eps,
        }
        self.defaults.update(shrink_defaults)
        for group in self.param_groups:
            for key, value in shrink_defaults.items():
                group.setdefault(key, value)
        self._compiled_ema: Callable[..., list[Tensor]] | None = None
        if compile:
            self._compiled_ema = torch.compile(_ema_shrink_fused, dynamic=False)
        self._compile_checked = False

    def _init_group(
        self,
        group: MutableMapping,
        params_with_grad: list[Tensor],
        grads: list[Tensor],
        muon_momentum_bufs: list[Tensor],
    ) -> bool:
        # NOTE: this overrides a private hook of torch.optim.Muon (torch 2.13): it
        # collects the gradients that Muon's update reads. The test comparing
        # shrink="none" with torch.optim.Muon fails if that contract changes.
        has_complex = super()._init_group(
            group, params_with_grad, grads, muon_momentum_bufs
        )
        if group["shrink"] != "none" and grads:
            grads[:] = self._shrink_grads(group, params_with_grad, grads)
        return has_complex

    def _shrink_grads(
        self, group: MutableMapping, params: list[Tensor], grads: list[Tensor]
    ) -> list[Tensor]:
        shrink_kwargs = {
            "mode": group["shrink"],
            "threshold": group["threshold"],
            "contamination": group["contamination"],
            "cauchy_scale": group["cauchy_scale"],
        }
        scale_eps = group["scale_eps"]
        if group["shrink_scale"] == "rms":
            scales = [g.square().mean().sqrt().add_(scale_eps) for g in grads]
            return shrink_foreach(grads, scales, **shrink_kwargs)
        if group["shrink_scale"] == "mad":
            scales = [
                g.abs().flatten().median().mul_(_MAD_TO_STD).add_(scale_eps)
                for g in grads
            ]
            return shrink_foreach(grads, scales, **shrink_kwargs)
        return self._shrink_with_ema_scale(group, params, grads, shrink_kwargs)

    def _run_compiled(
        self,
        group: MutableMapping,
        params: list[Tensor],
        grads: list[Tensor],
        shrink_kwargs: dict[str, Any],
        correction: float,
        shrink_now: bool,
    ) -> list[Tensor] | None:
        """Run the compiled ``ema`` step; None (and eager from then on) if it fails.

        ``correction`` is sqrt(1 - beta^(t-1)), the bias correction of the scale
        EMA before this step, and ``shrink_now`` is False on the first step.
        """
        assert self._compiled_ema is not None
        threshold = shrink_kwargs["threshold"]
        hard = shrink_kwargs["mode"] == "hard" and math.isfinite(threshold)
        factor = threshold / correction if hard else correction
        dtype = torch.float64 if grads[0].dtype == torch.float64 else torch.float32
        scalars = [
            torch.tensor(value, dtype=dtype)
            for value in (factor, 1.0 if shrink_now else 0.0)
        ]
        try:
            result = self._compiled_ema(
                grads,
                [self.state[p]["exp_avg_sq"] for p in params],
                scalars,
                hard=hard,
                beta=group["scale_beta"],
                scale_eps=group["scale_eps"],
                **shrink_kwargs,
            )
        except Exception as error:
            if self._compile_checked:
                raise
            logger.warning(
                "ShrinkMuon: torch.compile failed (%s); using the eager step", error
            )
            self._compiled_ema = None
            return None
        self._compile_checked = True
        return list(result)

    def _shrink_with_ema_scale(
        self,
        group: MutableMapping,
        params: list[Tensor],
        grads: list[Tensor],
        shrink_kwargs: dict[str, Any],
    ) -> list[Tensor]:
        beta = group["scale_beta"]
        result = list(grads)
        later: list[int] = []
        corrections: list[float] = []
        previous_steps: set[int] = set()
        for i, p in enumerate(params):
            state = self.state[p]
            if "scale_step" not in state:
                state["scale_step"] = torch.tensor(0.0)
                state["exp_avg_sq"] = torch.zeros_like(p)
            previous_step = int(state["scale_step"])
            previous_steps.add(previous_step)
            state["scale_step"] += 1
            if previous_step > 0:
                later.append(i)
                corrections.append((1.0 - beta**previous_step) ** 0.5)
        if self._compiled_ema is not None and len(previous_steps) == 1:
            correction = corrections[0] if corrections else 1.0
            fused = self._run_compiled(
                group, params, grads, shrink_kwargs, correction, bool(later)
            )
            if fused is not None:
                return fused
        if later:
            sq_avgs = [self.state[params[i]]["exp_avg_sq"] for i in later]
            scales = torch._foreach_sqrt(sq_avgs)
            later_grads = [grads[i] for i in later]
            threshold = shrink_kwargs["threshold"]
            # With an infinite threshold, sqrt(v) = 0 would give 0 * inf = nan.
            if shrink_kwargs["mode"] == "hard" and math.isfinite(threshold):
                # lambda * (sqrt(v)/c + eps) in three passes instead of four.
                torch._foreach_mul_(scales, [threshold / c for c in corrections])
                torch._foreach_add_(scales, threshold * group["scale_eps"])
                shrunk = clip_foreach(later_grads, scales)
            else:
                torch._foreach_div_(scales, corrections)
                torch._foreach_add_(scales, group["scale_eps"])
                shrunk = shrink_foreach(later_grads, scales, **shrink_kwargs)
            for index, tensor in zip(later, shrunk, strict=True):
                result[index] = tensor
        sq_avgs = [self.state[p]["exp_avg_sq"] for p in params]
        torch._foreach_mul_(sq_avgs, beta)
        torch._foreach_addcmul_(sq_avgs, result, result, 1.0 - beta)
        return result


def _ema_shrink_fused(
    grads: list[Tensor],
    sq_avgs: list[Tensor],
    scalars: list[Tensor],
    *,
    hard: bool,
    beta: float,
    scale_eps: float,
    mode: str,
    threshold: float,
    contamination: float,
    cauchy_scale: float,
) -> list[Tensor]:
    """Shrink each gradient against its ``ema`` scale and update the EMA, fused.

    The arithmetic of :meth:`ShrinkMuon._shrink_with_ema_scale` for matrices that
    share one step count, written for ``torch.compile``: one pass per matrix
    reads G and v and writes psi(G) and the new v, where eager foreach ops take
    about 7 passes. ``scalars`` are 0-d CPU tensors, so a new step does
    not recompile: the factor (lambda/c for finite ``hard`` clipping, else c,
    with c = sqrt(1 - beta^(t-1)) the bias correction of v) and 1.0 when
    shrinkage applies (0.0 on the first step, where ``torch.where`` keeps G).
    """
    factor, shrink_now = scalars
    result = []
    for g, sq_avg in zip(grads, sq_avgs, strict=True):
        if hard:
            bound = sq_avg.sqrt() * factor + threshold * scale_eps
            shrunk = torch.clamp(g, min=-bound, max=bound)
        else:
            scale = sq_avg.sqrt() / factor + scale_eps
            shrunk = shrink_elementwise(
                g,
                scale,
                mode,
                threshold=threshold,
                contamination=contamination,
                cauchy_scale=cauchy_scale,
            )
        shrunk = torch.where(shrink_now > 0.0, shrunk, g)
        sq_avg.mul_(beta).addcmul_(shrunk, shrunk, value=1.0 - beta)
        result.append(shrunk)
    return result
