"""Parameter updaters for every network in the project, chosen by config.

``build_optimizer(model, {"name": "deva", "lr": 3e-4})`` returns the optimizer;
``sb3_optimizer_kwargs(config)`` returns the same choice for stable-baselines3.
Methods: ``adamw``, ``adam``, ``shrink_adam``, ``muon``, ``shrink_muon``,
``deva`` and ``deva_factored``; docs/optimizers.md lists their keys.
"""

from finrl_lab.optim.composite import CompositeOptimizer
from finrl_lab.optim.deva import DeVAFactored, DeVAMatrix, DeVAVector
from finrl_lab.optim.routing import (
    METHOD_DEFAULTS,
    RoutedOptimizer,
    build_optimizer,
    resolve_config,
    sb3_optimizer_kwargs,
)
from finrl_lab.optim.shrink_adam import ShrinkAdam
from finrl_lab.optim.shrink_muon import ShrinkMuon
from finrl_lab.optim.shrinkage import shrink, shrink_foreach

__all__ = [
    "METHOD_DEFAULTS",
    "CompositeOptimizer",
    "DeVAFactored",
    "DeVAMatrix",
    "DeVAVector",
    "RoutedOptimizer",
    "ShrinkAdam",
    "ShrinkMuon",
    "build_optimizer",
    "resolve_config",
    "sb3_optimizer_kwargs",
    "shrink",
    "shrink_foreach",
]
