"""Build an optimizer for any model from a config entry, routing parameters by role.

A config entry such as ``{"name": "deva", "lr": 3e-4}`` names the method and its
options. Methods with a matrix rule (``muon``, ``shrink_muon``, ``deva``,
``deva_factored``) put hidden weight matrices on that rule and everything else
(biases, norm gains, embeddings, output heads, matrices with a side of 1) on a
vector rule. All other methods put every parameter on one rule.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

import torch
from torch import Tensor, nn
from torch.optim import Optimizer

from finrl_lab.errors import ConfigError
from finrl_lab.optim.composite import CompositeOptimizer
from finrl_lab.optim.deva import DeVAFactored, DeVAMatrix, DeVAVector
from finrl_lab.optim.shrink_adam import ShrinkAdam
from finrl_lab.optim.shrink_muon import ShrinkMuon

logger = logging.getLogger(__name__)

# Options shared by every method.
_COMMON = {"lr": 3e-4, "weight_decay": 0.0}
_ADAM = {"betas": (0.9, 0.999), "eps": 1e-8}
_SHRINK = {
    "shrink": "bayes",
    "threshold": 3.0,
    "contamination": 1e-3,
    "cauchy_scale": 1.0,
}
_MUON = {
    "momentum": 0.95,
    "nesterov": True,
    "ns_steps": 5,
    # Moonlight's scale 0.2*sqrt(max(n, m)) gives the matrix update AdamW's RMS,
    # so one lr and one weight decay serve both rules.
    "adjust_lr_fn": "match_rms_adamw",
}
_DEVA = {
    "matrix_betas": (0.95, 0.95),
    "nesterov": True,
    "v_source": "momentum",
    "correct_bias": True,
    "precondition_frequency": 10,
    "max_precond_dim": 10000,
    "precondition_sides": "shorter",
    "variance_adaptation": True,
    "ns_steps": 5,
}
_ROUTING = {"vector_rule": None, "head_names": ()}

# Defaults of every accepted key, per method. A key missing here is rejected.
METHOD_DEFAULTS: dict[str, dict[str, Any]] = {
    "adamw": {**_COMMON, **_ADAM},
    "adam": {**_COMMON, **_ADAM},
    "shrink_adam": {
        **_COMMON,
        **_ADAM,
        **_SHRINK,
        "shrink_where": "grad",
        "compile": False,
    },
    "muon": {**_COMMON, **_ADAM, **_MUON, **_ROUTING, "vector_rule": "adamw"},
    "shrink_muon": {
        **_COMMON,
        **_ADAM,
        **_MUON,
        **_SHRINK,
        **_ROUTING,
        "shrink": "hard",
        "shrink_scale": "ema",
        "vector_rule": "shrink_adam",
        "compile": False,
    },
    "deva": {**_COMMON, **_ADAM, **_DEVA, **_ROUTING, "vector_rule": "deva"},
    "deva_factored": {
        **_COMMON,
        **_ADAM,
        **_DEVA,
        **_ROUTING,
        "vector_rule": "deva",
        "sign_stabilize": True,
    },
}
ALIASES = {
    "shrinkadam": "shrink_adam",
    "shrink_adamw": "shrink_adam",
    "shrinkmuon": "shrink_muon",
    "deva_efficient": "deva_factored",
}
VECTOR_RULES = ("adamw", "shrink_adam", "deva")

# Last name component of modules treated as output heads: the names used by
# stable-baselines3 policies and common model code.
DEFAULT_HEAD_NAMES = (
    "head",
    "lm_head",
    "action_net",
    "value_net",
    "mu",
    "log_std",
    "q_net",
    "output",
)
_VECTOR_MODULES = (
    nn.Embedding,
    nn.EmbeddingBag,
    nn.LayerNorm,
    nn.GroupNorm,
    nn.modules.batchnorm._BatchNorm,
    nn.modules.instancenorm._InstanceNorm,
)


def resolve_config(config: dict[str, Any] | None) -> dict[str, Any]:
    """Return the full config for a method: the entry's values over its defaults.

    ``config`` is a mapping with ``name`` (default ``adamw``) and options; None
    means ``{"name": "adamw"}``. Raise ConfigError for an unknown name or key.
    """
    entry = dict(config or {})
    raw_name = str(entry.pop("name", "adamw"))
    name = ALIASES.get(raw_name.lower(), raw_name.lower())
    if name not in METHOD_DEFAULTS:
        raise ConfigError(
            f"unknown optimizer name {raw_name!r}",
            f"use one of: {', '.join(METHOD_DEFAULTS)}",
        )
    defaults = METHOD_DEFAULTS[name]
    unknown = sorted(set(entry) - set(defaults))
    if unknown:
        raise ConfigError(
            f"unknown optimizer key {unknown[0]!r} for {name!r}",
            f"valid keys for {name}: name, {', '.join(defaults)}",
        )
    for key, value in entry.items():
        entry[key] = _coerce(name, key, value, defaults[key])
    resolved = {**defaults, **entry, "name": name}
    vector_rule = resolved.get("vector_rule")
    if vector_rule is not None and vector_rule not in VECTOR_RULES:
        raise ConfigError(
            f"unknown vector_rule {vector_rule!r}",
            f"use one of: {', '.join(VECTOR_RULES)}",
        )
    for key in ("betas", "matrix_betas"):
        if key in resolved:
            resolved[key] = tuple(resolved[key])
    return resolved


def _coerce(name: str, key: str, value: Any, default: Any) -> Any:
    """Return ``value`` as the type of ``default``; raise ConfigError if it is not.

    YAML 1.1 reads ``3e-4`` (no dot) as a string, so numeric strings are parsed.
    """
    if isinstance(default, bool):
        if isinstance(value, bool):
            return value
    elif isinstance(default, int | float):
        number = None
        if not isinstance(value, bool):
            try:
                number = float(value)
            except (TypeError, ValueError):
                number = None
        if number is not None and isinstance(default, float):
            return number
        if number is not None and number.is_integer():
            return int(number)
    else:
        return value
    raise ConfigError(
        f"invalid optimizer {key} {value!r} for {name!r}",
        f"use a {type(default).__name__} like {default!r}",
    )


def build_optimizer(
    model_or_params: nn.Module | Iterable[Tensor], config: dict[str, Any] | None
) -> Optimizer:
    """Build the optimizer that ``config`` names for a model or a parameter list.

    Given an ``nn.Module``, these parameters go to the vector rule: those of
    embedding and normalisation layers, those of output heads, and those that
    are not matrices (fewer than 2 axes, or a side of length 1). A head is a
    module whose last name component is in ``head_names`` (default
    :data:`DEFAULT_HEAD_NAMES`) or ends in ``_head``. Given a plain iterable of
    parameters (as stable-baselines3 passes), only the shape rule applies, so
    embeddings and heads wider than 1 go to the matrix rule.

    Parameters without ``requires_grad`` are left out. Raise ConfigError for an
    unknown name, key or vector rule, and for a model without trainable
    parameters. Returns a single torch optimizer for single-rule methods and a
    :class:`CompositeOptimizer` for the others. See docs/optimizers.md for the
    keys and defaults of each method.
    """
    resolved = resolve_config(config)
    if isinstance(model_or_params, nn.Module):
        matrices, vectors = _split_module(model_or_params, resolved)
    else:
        matrices, vectors = _split_by_shape(model_or_params)
    if not matrices and not vectors:
        raise ConfigError(
            "the model has no trainable parameters to optimize",
            "set requires_grad on the parameters to train",
        )
    try:
        optimizer = _build(resolved, matrices, vectors)
    except ValueError as error:
        # The optimizers check their own option values (modes, ranges).
        raise ConfigError(
            f"invalid optimizer entry for {resolved['name']!r}: {error}",
            "fix that value in the optimizer config",
        ) from error
    logger.info(
        "built %s: %d matrix and %d vector parameters",
        type(optimizer).__name__,
        len(matrices),
        len(vectors),
    )
    return optimizer


def _build(
    resolved: dict[str, Any], matrices: list[Tensor], vectors: list[Tensor]
) -> Optimizer:
    name = resolved["name"]
    if name in ("adamw", "adam", "shrink_adam"):
        return _vector_optimizer(name, matrices + vectors, resolved)
    if name in ("muon", "shrink_muon"):
        matrix_rule = _muon(name, matrices, resolved) if matrices else None
    else:
        matrix_rule = _deva_matrix(name, matrices, resolved) if matrices else None
    vector_rule = None
    if vectors:
        vector_rule = _vector_optimizer(resolved["vector_rule"], vectors, resolved)
    children = [child for child in (matrix_rule, vector_rule) if child is not None]
    return CompositeOptimizer(children)


def _vector_optimizer(
    rule: str, params: list[Tensor], resolved: dict[str, Any]
) -> Optimizer:
    common = {
        "lr": resolved["lr"],
        "betas": resolved["betas"],
        "eps": resolved["eps"],
        "weight_decay": resolved["weight_decay"],
    }
    if rule == "adam":
        return torch.optim.Adam(params, foreach=True, **common)
    if rule == "adamw":
        return torch.optim.AdamW(params, foreach=True, **common)
    if rule == "shrink_adam":
        shrink = {key: resolved.get(key, value) for key, value in _SHRINK.items()}
        return ShrinkAdam(
            params,
            shrink_where=resolved.get("shrink_where", "grad"),
            compile=resolved.get("compile", False),
            **common,
            **shrink,
        )
    return DeVAVector(
        params,
        nesterov=False,
        v_source=resolved["v_source"],
        correct_bias=resolved["correct_bias"],
        **common,
    )


def _muon(name: str, params: list[Tensor], resolved: dict[str, Any]) -> Optimizer:
    options = {
        "lr": resolved["lr"],
        "weight_decay": resolved["weight_decay"],
        "momentum": resolved["momentum"],
        "nesterov": resolved["nesterov"],
        "ns_steps": resolved["ns_steps"],
        "adjust_lr_fn": resolved["adjust_lr_fn"],
    }
    if name == "muon":
        return torch.optim.Muon(params, **options)
    return ShrinkMuon(
        params,
        shrink=resolved["shrink"],
        threshold=resolved["threshold"],
        contamination=resolved["contamination"],
        cauchy_scale=resolved["cauchy_scale"],
        shrink_scale=resolved["shrink_scale"],
        compile=resolved["compile"],
        **options,
    )


def _deva_matrix(
    name: str, params: list[Tensor], resolved: dict[str, Any]
) -> Optimizer:
    options = {
        "lr": resolved["lr"],
        "betas": resolved["matrix_betas"],
        "eps": resolved["eps"],
        "weight_decay": resolved["weight_decay"],
        "nesterov": resolved["nesterov"],
        "precondition_frequency": resolved["precondition_frequency"],
        "max_precond_dim": resolved["max_precond_dim"],
        "precondition_sides": resolved["precondition_sides"],
        "variance_adaptation": resolved["variance_adaptation"],
        "ns_steps": resolved["ns_steps"],
    }
    if name == "deva":
        return DeVAMatrix(params, **options)
    return DeVAFactored(params, sign_stabilize=resolved["sign_stabilize"], **options)


def _is_matrix(param: Tensor) -> bool:
    return param.ndim >= 2 and min(param.shape[0], param[0].numel()) > 1


def _split_by_shape(params: Iterable[Tensor]) -> tuple[list[Tensor], list[Tensor]]:
    matrices: list[Tensor] = []
    vectors: list[Tensor] = []
    for param in params:
        if not param.requires_grad:
            continue
        (matrices if _is_matrix(param) else vectors).append(param)
    return matrices, vectors


def _split_module(
    model: nn.Module, resolved: dict[str, Any]
) -> tuple[list[Tensor], list[Tensor]]:
    head_names = set(resolved.get("head_names") or DEFAULT_HEAD_NAMES)
    matrices: list[Tensor] = []
    vectors: list[Tensor] = []
    seen: set[int] = set()
    for module_name, module in model.named_modules():
        last_name = module_name.rsplit(".", 1)[-1]
        is_vector_module = (
            isinstance(module, _VECTOR_MODULES)
            or last_name in head_names
            or last_name.endswith("_head")
        )
        # A head module's children (for example a Sequential head) are heads too.
        for param in module.parameters(recurse=is_vector_module):
            if id(param) in seen or not param.requires_grad:
                continue
            seen.add(id(param))
            if is_vector_module or not _is_matrix(param):
                vectors.append(param)
            else:
                matrices.append(param)
    return matrices, vectors


class RoutedOptimizer(CompositeOptimizer):
    """The optimizer a config names, constructible as ``cls(params, lr=..., **kw)``.

    stable-baselines3 builds a policy's optimizer as
    ``optimizer_class(policy.parameters(), lr=lr_schedule(1), **optimizer_kwargs)``;
    :func:`sb3_optimizer_kwargs` returns this class and the keyword arguments.
    Parameters are routed by shape only (see :func:`build_optimizer`), because
    a plain iterable carries no module names.

    Args:
        params: an iterable of parameters.
        lr: learning rate; it overrides any ``lr`` in ``options``.
        **options: a config entry: ``name`` and that method's keys.
    """

    def __init__(self, params: Iterable[Tensor], lr: float, **options: Any) -> None:
        optimizer = build_optimizer(params, {**options, "lr": lr})
        if isinstance(optimizer, CompositeOptimizer):
            children = optimizer.optimizers
        else:
            children = [optimizer]
        super().__init__(children)


def sb3_optimizer_kwargs(config: dict[str, Any] | None) -> dict[str, Any]:
    """Return ``optimizer_class`` and ``optimizer_kwargs`` for SB3's policy_kwargs.

    The config is validated here, so a bad entry fails before the agent is
    built. Its ``lr`` is left out: stable-baselines3 passes its own
    ``learning_rate`` (and schedule), so the training code should give the
    config's ``lr`` to the agent as ``learning_rate``. Example:
    ``PPO("MlpPolicy", env, learning_rate=cfg["lr"],
    policy_kwargs=sb3_optimizer_kwargs(cfg))``.
    """
    resolved = resolve_config(config)
    options = {key: value for key, value in (config or {}).items() if key != "lr"}
    options["name"] = resolved["name"]
    return {"optimizer_class": RoutedOptimizer, "optimizer_kwargs": options}
