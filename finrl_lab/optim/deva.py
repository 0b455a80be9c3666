"""DeVA: decoupled variance adaptation, a steepest-descent direction times gamma.

An Adam step m/sqrt(v) equals sign(m) * (|m|/sqrt(v)). DeVA (Song, Bai, Zhang,
Bullins and Gleich, arXiv 2602.06880, 2026) keeps the variance-adaptation factor
gamma = |m|/sqrt(v) and swaps the direction for the geometry of the parameter:
sign(.) for vectors and the orthogonalised msign(.) for matrices.

The rules here follow the authors' code (github.com/Tsedao/Decoupled-Variance-
Adaptation, optimizers/deva.py at 2e4d26e) and fix its defects on purpose:

- Bias correction divides the moments (m_hat, v_hat), so gamma is 1 on the first
  step and for a constant gradient. The reference leaves the vector rule
  uncorrected, so its first step is about 1/sqrt(1 - beta2) times too large.
  It also multiplies the scale-free matrix update by Adam's correction factor,
  so the matrix rule's first step is 20 times too large at betas (0.95, 0.95).
- eps is added to sqrt(v_hat), in gradient units. The reference adds 1e-5 inside
  the root, which turns the rule into momentum SGD for gradients near 1e-3.
- 1-D parameters are rejected by the matrix rules with a message, and the
  routing in :mod:`finrl_lab.optim.routing` sends them to the vector rule. The
  reference crashes on them.
- Parameters with more than two axes (conv kernels) are viewed as
  (shape[0], rest), so the update is orthogonal per layer and not per kernel
  slice.
- ``p.grad`` is never modified. The reference writes its Nesterov mix into it.
- The momentum stays in the eigenbasis and is re-expressed only when the basis
  changes, instead of rotating it out and back in on every step.

Two further departures, also deliberate: the first step updates the parameter
(the reference spends it on building the basis), and weight decay comes before
the update as in AdamW and torch's Muon (the reference applies it after).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch import Tensor
from torch.optim import Optimizer

# NOTE: a private function of torch.optim.Muon (torch 2.13). Reusing it keeps one
# Newton-Schulz iteration in the project: quintic, bf16, coefficients
# (3.4445, -4.775, 2.0315), input scaled to Frobenius norm 1.
from torch.optim._muon import _zeropower_via_newtonschulz

logger = logging.getLogger(__name__)

V_SOURCES = ("momentum", "grad")
PRECONDITION_SIDES = ("both", "shorter", "none")
NS_COEFFICIENTS = (3.4445, -4.775, 2.0315)


class DeVAVector(Optimizer):
    """DeVA's vector rule: gamma times the sign of the momentum, for any shape.

    Per step, for a parameter p with gradient g:

    1. p <- p * (1 - lr * weight_decay).
    2. m <- beta1*m + (1-beta1)*g and m_hat = m / (1 - beta1^t).
    3. v <- beta2*v + (1-beta2)*x^2 with x = m_hat (``v_source="momentum"``, the
       method's rule) or x = g (``v_source="grad"``); v_hat = v / (1 - beta2^t).
    4. gamma = |m_hat| / (sqrt(v_hat) + eps).
    5. d = sign((1-beta1)*g + beta1*m) with Nesterov, else sign(m).
    6. p <- p - lr * gamma * d.

    Without Nesterov the step is lr * m_hat / (sqrt(v_hat) + eps), so with
    ``v_source="grad"`` this is exactly Adam. With ``correct_bias=False`` both
    corrections are 1, as in the reference code.

    NOTE: with ``v_source="momentum"``, gamma stays near 1 while the momentum
    changes slowly, so noisy entries are not scaled down as Adam scales them.
    In benchmarks/optim_noise.py (heavy-tailed regression) that default missed
    the loss target that ``v_source="grad"`` reached.

    Args:
        params: tensors of any shape, or parameter groups.
        lr: learning rate in parameter units per step (default 1e-3).
        betas: decay of m and v (default (0.9, 0.999)).
        eps: added to sqrt(v_hat), in gradient units (default 1e-8).
        weight_decay: decoupled weight decay per unit of lr (default 0).
        nesterov: use the Nesterov direction in step 5 (default False).
        v_source: ``momentum`` (default) or ``grad``.
        correct_bias: divide the moments by 1 - beta^t (default True).

    State per parameter: ``step`` (0-d CPU tensor), ``exp_avg`` and ``exp_avg_sq``
    shaped like the parameter. gamma is not stored.
    """

    def __init__(
        self,
        params: Iterable[Tensor] | Iterable[dict[str, Any]],
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0.0,
        nesterov: bool = False,
        v_source: str = "momentum",
        correct_bias: bool = True,
    ) -> None:
        _check_common(lr, betas)
        if v_source not in V_SOURCES:
            raise ValueError(f"invalid v_source {v_source!r}; valid: {V_SOURCES}")
        defaults = {
            "lr": lr,
            "betas": betas,
            "eps": eps,
            "weight_decay": weight_decay,
            "nesterov": nesterov,
            "v_source": v_source,
            "correct_bias": correct_bias,
        }
        super().__init__(params, defaults)

    @torch.no_grad()
    def step(self, closure: Callable[[], float] | None = None) -> float | None:
        """Update every parameter that has a gradient; return the closure's loss."""
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            params, grads, exp_avgs, exp_avg_sqs, steps = [], [], [], [], []
            for p in group["params"]:
                if p.grad is None:
                    continue
                state = self.state[p]
                if not state:
                    state["step"] = torch.tensor(0.0)
                    state["exp_avg"] = torch.zeros_like(p)
                    state["exp_avg_sq"] = torch.zeros_like(p)
                state["step"] += 1
                params.append(p)
                grads.append(p.grad)
                exp_avgs.append(state["exp_avg"])
                exp_avg_sqs.append(state["exp_avg_sq"])
                steps.append(int(state["step"]))
            if params:
                _vector_update(group, params, grads, exp_avgs, exp_avg_sqs, steps)
        return loss


def _vector_update(
    group: dict[str, Any],
    params: list[Tensor],
    grads: list[Tensor],
    exp_avgs: list[Tensor],
    exp_avg_sqs: list[Tensor],
    steps: list[int],
) -> None:
    lr = group["lr"]
    beta1, beta2 = group["betas"]
    if group["correct_bias"]:
        corrections1 = [1.0 - beta1**t for t in steps]
        corrections2 = [1.0 - beta2**t for t in steps]
    else:
        corrections1 = [1.0] * len(steps)
        corrections2 = [1.0] * len(steps)

    if group["weight_decay"] != 0.0:
        torch._foreach_mul_(params, 1.0 - lr * group["weight_decay"])
    torch._foreach_lerp_(exp_avgs, grads, 1.0 - beta1)
    torch._foreach_mul_(exp_avg_sqs, beta2)
    if group["v_source"] == "grad":
        torch._foreach_addcmul_(exp_avg_sqs, grads, grads, 1.0 - beta2)
    else:
        corrected = torch._foreach_div(exp_avgs, corrections1)
        torch._foreach_addcmul_(exp_avg_sqs, corrected, corrected, 1.0 - beta2)
        del corrected

    denominators = torch._foreach_sqrt(exp_avg_sqs)
    torch._foreach_div_(denominators, [math.sqrt(c) for c in corrections2])
    torch._foreach_add_(denominators, group["eps"])
    step_sizes = [-lr / c for c in corrections1]
    if not group["nesterov"]:
        # gamma * sign(m) = m_hat / (sqrt(v_hat) + eps).
        torch._foreach_addcdiv_(params, exp_avgs, denominators, step_sizes)
        return
    gammas = torch._foreach_abs(exp_avgs)
    torch._foreach_div_(gammas, denominators)
    directions = torch._foreach_lerp(grads, exp_avgs, beta1)
    torch._foreach_sign_(directions)
    torch._foreach_mul_(gammas, directions)
    torch._foreach_mul_(gammas, step_sizes)
    torch._foreach_add_(params, gammas)


class DeVAMatrix(Optimizer):
    """DeVA's matrix rule: msign of the momentum times gamma in Shampoo's eigenbasis.

    A parameter with shape (n, ...) is viewed as an n x m matrix. Per step, with
    Q_L and Q_R the eigenbases of the Shampoo statistics L = EMA(G G^T) and
    R = EMA(G^T G):

    1. G' = Q_L^T G Q_R, the gradient in the eigenbasis.
    2. M <- beta1*M + (1-beta1)*G' and M_hat = M / (1 - beta1^t).
    3. Row and column norms of M_hat: r_i = ||M_hat[i, :]||, c_j = ||M_hat[:, j]||.
    4. V <- beta2*V + (1-beta2) * r c^T and V_hat = V / (1 - beta2^t).
    5. N = (1-beta1)*G' + beta1*M with Nesterov, else M.
    6. O = msign(N) by torch's Newton-Schulz iteration (bf16, ``ns_steps``).
    7. gamma = sqrt(r c^T) / (sqrt(V_hat) + eps), or 1 when
       ``variance_adaptation=False``.
    8. p <- p*(1 - lr*weight_decay) - lr * 0.2*sqrt(max(n, m)) * Q_L (O*gamma) Q_R^T.
    9. L and R update from the raw G. Every ``precondition_frequency`` steps each
       basis is sorted by its Rayleigh quotients, V's matching axis is permuted,
       one power-iteration step Q <- qr(L Q) refreshes it, and M is re-expressed
       in the new basis.

    msign commutes with orthogonal rotations, so the basis changes the update
    only through gamma. With ``variance_adaptation=False`` the rule is Muon
    with the 0.2*sqrt(max(n, m)) RMS-matching scale, for any basis.

    The factor 0.2*sqrt(max(n, m)) makes the update's RMS about 0.2, like
    AdamW's, so AdamW's learning rate and weight decay carry over.

    The first call builds L, R and their bases by ``torch.linalg.eigh`` and
    also updates the parameter. A side longer than ``max_precond_dim`` is never
    rotated. Otherwise ``precondition_sides`` decides: ``both``, ``shorter``
    (the default: the shorter side, or both sides of a square matrix) or
    ``none``. Rotating only the shorter side bounds the rotation memory at
    twice the parameter's size.

    NOTE: on CUDA, ``torch.linalg.eigh`` checks its error code on the host, so the
    first step of each parameter synchronises once. Later steps use only QR,
    which does not.

    Args:
        params: parameters with at least 2 axes, or parameter groups.
        lr: learning rate (default 3e-4).
        betas: decay of M and V (default (0.95, 0.95), as in the reference).
        eps: added to sqrt(V_hat), in gradient units (default 1e-8).
        weight_decay: decoupled weight decay per unit of lr (default 0).
        nesterov: use the Nesterov mix in step 5 (default True).
        shampoo_beta: decay of L and R; None means beta2 (default None).
        precondition_frequency: steps between basis refreshes (default 10).
        max_precond_dim: longest side that is rotated (default 10000).
        precondition_sides: ``both``, ``shorter`` or ``none`` (default ``shorter``).
        variance_adaptation: use gamma; False fixes it at 1 (default True).
        ns_steps: Newton-Schulz iterations (default 5).
        rms_scale: the 0.2 of step 8 (default 0.2).

    State per parameter: ``step`` (0-d CPU tensor), ``exp_avg`` (n x m, in the
    eigenbasis), ``exp_avg_sq`` (n x m), and for each rotated side
    ``left_stat``/``left_basis`` (n x n) or ``right_stat``/``right_basis`` (m x m).
    """

    _factored = False

    def __init__(
        self,
        params: Iterable[Tensor] | Iterable[dict[str, Any]],
        lr: float = 3e-4,
        betas: tuple[float, float] = (0.95, 0.95),
        eps: float = 1e-8,
        weight_decay: float = 0.0,
        nesterov: bool = True,
        shampoo_beta: float | None = None,
        precondition_frequency: int = 10,
        max_precond_dim: int = 10000,
        precondition_sides: str = "shorter",
        variance_adaptation: bool = True,
        ns_steps: int = 5,
        rms_scale: float = 0.2,
        sign_stabilize: bool = False,
    ) -> None:
        _check_common(lr, betas)
        if precondition_sides not in PRECONDITION_SIDES:
            raise ValueError(
                f"invalid precondition_sides {precondition_sides!r}; "
                f"valid: {PRECONDITION_SIDES}"
            )
        if precondition_frequency < 1:
            raise ValueError(
                f"invalid precondition_frequency {precondition_frequency}; use >= 1"
            )
        defaults = {
            "lr": lr,
            "betas": betas,
            "eps": eps,
            "weight_decay": weight_decay,
            "nesterov": nesterov,
            "shampoo_beta": shampoo_beta,
            "precondition_frequency": precondition_frequency,
            "max_precond_dim": max_precond_dim,
            "precondition_sides": precondition_sides,
            "variance_adaptation": variance_adaptation,
            "ns_steps": ns_steps,
            "rms_scale": rms_scale,
            "sign_stabilize": sign_stabilize,
        }
        super().__init__(params, defaults)
        for group in self.param_groups:
            for p in group["params"]:
                if p.ndim < 2:
                    raise ValueError(
                        f"{type(self).__name__} needs parameters with at least 2 "
                        f"axes, got shape {tuple(p.shape)}; give vectors to "
                        "DeVAVector or AdamW (build_optimizer routes them)"
                    )

    @torch.no_grad()
    def step(self, closure: Callable[[], float] | None = None) -> float | None:
        """Update every parameter that has a gradient; return the closure's loss."""
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is not None:
                    self._update_matrix(group, p)
        return loss

    def _update_matrix(self, group: dict[str, Any], p: Tensor) -> None:
        grad = p.grad.reshape(p.shape[0], -1)
        rows, cols = grad.shape
        beta1, beta2 = group["betas"]
        state = self.state[p]
        if not state:
            self._init_state(group, state, grad)
        state["step"] += 1
        t = int(state["step"])

        rotated_grad = _rotate_in(state, grad)
        exp_avg = state["exp_avg"]
        exp_avg.lerp_(rotated_grad, 1.0 - beta1)
        correction1 = 1.0 - beta1**t
        correction2 = 1.0 - beta2**t

        if group["nesterov"]:
            direction = rotated_grad.lerp(exp_avg, beta1)
        else:
            direction = exp_avg
        if group["sign_stabilize"]:
            direction = direction.sign()
        update = _zeropower_via_newtonschulz(
            direction, NS_COEFFICIENTS, group["ns_steps"], 1e-7
        ).to(grad.dtype)

        if group["variance_adaptation"]:
            gamma = self._gamma(state, rotated_grad, correction1, correction2, group)
            update.mul_(gamma)
        update = _rotate_out(state, update)

        lr = group["lr"]
        scale = group["rms_scale"] * math.sqrt(max(rows, cols))
        if group["weight_decay"] != 0.0:
            p.mul_(1.0 - lr * group["weight_decay"])
        p.add_(update.view_as(p), alpha=-lr * scale)

        self._update_statistics(state, grad, group)
        if t % group["precondition_frequency"] == 0:
            self._refresh_bases(state)

    def _gamma(
        self,
        state: dict[str, Any],
        rotated_grad: Tensor,
        correction1: float,
        correction2: float,
        group: dict[str, Any],
    ) -> Tensor:
        beta2 = group["betas"][1]
        eps = group["eps"]
        exp_avg = state["exp_avg"]
        row_norms = exp_avg.norm(dim=1, keepdim=True).div_(correction1)
        col_norms = exp_avg.norm(dim=0, keepdim=True).div_(correction1)
        outer = row_norms * col_norms
        exp_avg_sq = state["exp_avg_sq"]
        exp_avg_sq.mul_(beta2).add_(outer, alpha=1.0 - beta2)
        denominator = exp_avg_sq.sqrt().div_(math.sqrt(correction2)).add_(eps)
        return outer.sqrt_().div_(denominator)

    def _init_state(
        self, group: dict[str, Any], state: dict[str, Any], grad: Tensor
    ) -> None:
        rows, cols = grad.shape
        state["step"] = torch.tensor(0.0)
        state["exp_avg"] = torch.zeros_like(grad)
        if self._factored:
            state["exp_avg_sq_rows"] = grad.new_zeros(rows, 1)
            state["exp_avg_sq_cols"] = grad.new_zeros(1, cols)
        else:
            state["exp_avg_sq"] = torch.zeros_like(grad)
        shampoo_beta = _shampoo_beta(group)
        for side, length in (("left", rows), ("right", cols)):
            if not _rotates(side, rows, cols, group):
                continue
            if side == "left":
                stat = (grad @ grad.T).mul_(1.0 - shampoo_beta)
            else:
                stat = (grad.T @ grad).mul_(1.0 - shampoo_beta)
            # eigh returns ascending eigenvalues; the bases keep them descending.
            _, vectors = torch.linalg.eigh(stat.float())
            state[f"{side}_stat"] = stat
            state[f"{side}_basis"] = vectors.flip(-1).to(grad.dtype).contiguous()
            logger.debug("DeVA basis built for a %s side of length %d", side, length)

    def _update_statistics(
        self, state: dict[str, Any], grad: Tensor, group: dict[str, Any]
    ) -> None:
        shampoo_beta = _shampoo_beta(group)
        if "left_stat" in state:
            state["left_stat"].lerp_(grad @ grad.T, 1.0 - shampoo_beta)
        if "right_stat" in state:
            state["right_stat"].lerp_(grad.T @ grad, 1.0 - shampoo_beta)

    def _refresh_bases(self, state: dict[str, Any]) -> None:
        """Sort and refresh each basis by one power-iteration step, then move M."""
        exp_avg = state["exp_avg"]
        for side, axis in (("left", 0), ("right", 1)):
            if f"{side}_basis" not in state:
                continue
            basis = state[f"{side}_basis"]
            stat = state[f"{side}_stat"]
            rayleigh = (basis * (stat @ basis)).sum(dim=0)
            order = torch.argsort(rayleigh, descending=True)
            sorted_basis = basis.index_select(1, order)
            new_basis = torch.linalg.qr(stat @ sorted_basis).Q
            self._permute_second_moment(state, axis, order)
            # M_new = Q_new^T Q_old M on the left, M Q_old^T Q_new on the right.
            change = new_basis.T @ basis
            if axis == 0:
                exp_avg.copy_(change @ exp_avg)
            else:
                exp_avg.copy_(exp_avg @ change.T)
            state[f"{side}_basis"] = new_basis

    def _permute_second_moment(
        self, state: dict[str, Any], axis: int, order: Tensor
    ) -> None:
        key = "exp_avg_sq"
        if self._factored:
            key = "exp_avg_sq_rows" if axis == 0 else "exp_avg_sq_cols"
        state[key] = state[key].index_select(axis, order)


class DeVAFactored(DeVAMatrix):
    """DeVA's memory-light matrix rule: a factored second moment, no full V.

    Like :class:`DeVAMatrix` but V is replaced by one marginal per axis, taken
    from the rotated gradient G' (so the rule is Adam-like: momentum on top,
    gradient second moment below):

    - v_row <- EMA_beta2(sum_j G'_ij^2) (n x 1), v_col <- EMA_beta2(sum_i G'_ij^2)
      (1 x m), both bias-corrected;
    - rho_i = ||M_hat[i, :]|| / (sqrt(v_row_hat_i) + eps), kappa_j likewise;
    - gamma_ij = sqrt(rho_i * kappa_j).

    By default the direction is msign(sign(N)) (``sign_stabilize=True``), as in
    the reference code's ``DeVASchattenNormEfficient``. That class calls a
    ``sumsq_except`` helper that it never defines; the marginals above are our
    reading of it. Arguments and defaults are those of :class:`DeVAMatrix`,
    except ``sign_stabilize`` (default True).

    State per parameter: ``step``, ``exp_avg`` (n x m), ``exp_avg_sq_rows``
    (n x 1), ``exp_avg_sq_cols`` (1 x m) and the rotations of :class:`DeVAMatrix`.
    """

    _factored = True

    def __init__(
        self,
        params: Iterable[Tensor] | Iterable[dict[str, Any]],
        lr: float = 3e-4,
        betas: tuple[float, float] = (0.95, 0.95),
        eps: float = 1e-8,
        weight_decay: float = 0.0,
        nesterov: bool = True,
        shampoo_beta: float | None = None,
        precondition_frequency: int = 10,
        max_precond_dim: int = 10000,
        precondition_sides: str = "shorter",
        variance_adaptation: bool = True,
        ns_steps: int = 5,
        rms_scale: float = 0.2,
        sign_stabilize: bool = True,
    ) -> None:
        super().__init__(
            params,
            lr=lr,
            betas=betas,
            eps=eps,
            weight_decay=weight_decay,
            nesterov=nesterov,
            shampoo_beta=shampoo_beta,
            precondition_frequency=precondition_frequency,
            max_precond_dim=max_precond_dim,
            precondition_sides=precondition_sides,
            variance_adaptation=variance_adaptation,
            ns_steps=ns_steps,
            rms_scale=rms_scale,
            sign_stabilize=sign_stabilize,
        )

    def _gamma(
        self,
        state: dict[str, Any],
        rotated_grad: Tensor,
        correction1: float,
        correction2: float,
        group: dict[str, Any],
    ) -> Tensor:
        beta2 = group["betas"][1]
        eps = group["eps"]
        squared = rotated_grad.square()
        sq_rows = state["exp_avg_sq_rows"]
        sq_cols = state["exp_avg_sq_cols"]
        sq_rows.lerp_(squared.sum(dim=1, keepdim=True), 1.0 - beta2)
        sq_cols.lerp_(squared.sum(dim=0, keepdim=True), 1.0 - beta2)
        root_correction2 = math.sqrt(correction2)
        exp_avg = state["exp_avg"]
        row_ratio = exp_avg.norm(dim=1, keepdim=True).div_(correction1)
        row_ratio.div_(sq_rows.sqrt().div_(root_correction2).add_(eps))
        col_ratio = exp_avg.norm(dim=0, keepdim=True).div_(correction1)
        col_ratio.div_(sq_cols.sqrt().div_(root_correction2).add_(eps))
        return (row_ratio * col_ratio).sqrt_()


def _rotate_in(state: dict[str, Any], matrix: Tensor) -> Tensor:
    """Return Q_L^T X Q_R, skipping a side that is not rotated."""
    if "left_basis" in state:
        matrix = state["left_basis"].T @ matrix
    if "right_basis" in state:
        matrix = matrix @ state["right_basis"]
    return matrix


def _rotate_out(state: dict[str, Any], matrix: Tensor) -> Tensor:
    """Return Q_L X Q_R^T, skipping a side that is not rotated."""
    if "left_basis" in state:
        matrix = state["left_basis"] @ matrix
    if "right_basis" in state:
        matrix = matrix @ state["right_basis"].T
    return matrix


def _rotates(side: str, rows: int, cols: int, group: dict[str, Any]) -> bool:
    length, other = (rows, cols) if side == "left" else (cols, rows)
    if length > group["max_precond_dim"]:
        return False
    sides = group["precondition_sides"]
    if sides == "none":
        return False
    if sides == "shorter":
        return length <= other
    return True


def _shampoo_beta(group: dict[str, Any]) -> float:
    if group["shampoo_beta"] is None:
        return group["betas"][1]
    return group["shampoo_beta"]


def _check_common(lr: float, betas: tuple[float, float]) -> None:
    if lr < 0.0:
        raise ValueError(f"invalid learning rate {lr}; use lr >= 0")
    if not (0.0 <= betas[0] < 1.0 and 0.0 <= betas[1] < 1.0):
        raise ValueError(f"invalid betas {betas}; each must be in [0, 1)")
