"""One optimizer object that steps several optimizers, each on its own parameters."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import torch
from torch import Tensor
from torch.optim import Optimizer


class _ChainedState(Mapping):
    """Read-only view of the per-parameter state of several optimizers."""

    def __init__(self, optimizers: Sequence[Optimizer]) -> None:
        self._optimizers = optimizers

    def __getitem__(self, param: Tensor) -> dict[str, Any]:
        for optimizer in self._optimizers:
            if param in optimizer.state:
                return optimizer.state[param]
        raise KeyError(param)

    def __iter__(self) -> Iterator[Tensor]:
        for optimizer in self._optimizers:
            yield from optimizer.state

    def __len__(self) -> int:
        return sum(len(optimizer.state) for optimizer in self._optimizers)


class CompositeOptimizer(Optimizer):
    """Step several optimizers as one, for models whose parameters follow two rules.

    ``param_groups`` is the concatenation of the children's groups (the same
    dicts), so a learning-rate schedule that writes ``group["lr"]``, as
    stable-baselines3 and ``torch.optim.lr_scheduler`` do, reaches every child.
    ``state`` is a read-only view of the children's states. ``state_dict`` contains
    one state dict per child, in order. New parameter groups cannot be added
    after construction: add them to a child and rebuild.

    Args:
        optimizers: the children, each owning a disjoint set of parameters.
    """

    def __init__(self, optimizers: Sequence[Optimizer]) -> None:
        if not optimizers:
            raise ValueError("CompositeOptimizer needs at least one optimizer")
        self.optimizers = list(optimizers)
        self._building = True
        groups = [group for child in self.optimizers for group in child.param_groups]
        super().__init__(groups, {})
        self._building = False
        self.state = _ChainedState(self.optimizers)  # type: ignore[assignment]

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        """Register a child's group during construction; raise afterwards."""
        if not getattr(self, "_building", False):
            raise NotImplementedError(
                "CompositeOptimizer cannot take new parameter groups; "
                "add them to one of its optimizers and rebuild the composite"
            )
        self.param_groups.append(param_group)

    @torch.no_grad()
    def step(self, closure: Callable[[], float] | None = None) -> float | None:
        """Evaluate the closure once, if given, then step every child."""
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for child in self.optimizers:
            child.step()
        return loss

    def state_dict(self) -> dict[str, Any]:
        """Return ``{"optimizers": [state dict of each child, in order]}``."""
        return {"optimizers": [child.state_dict() for child in self.optimizers]}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Load each child's state dict; the children must match those saved."""
        saved = state_dict["optimizers"]
        if len(saved) != len(self.optimizers):
            raise ValueError(
                f"invalid state dict: it contains {len(saved)} optimizers but "
                f"this composite has {len(self.optimizers)}; "
                "build the composite from the same config"
            )
        for child, child_state in zip(self.optimizers, saved, strict=True):
            child.load_state_dict(child_state)
        # Loading replaces each child's group dicts, so collect them again.
        self.param_groups = [
            group for child in self.optimizers for group in child.param_groups
        ]

    def __repr__(self) -> str:
        inner = ", ".join(type(child).__name__ for child in self.optimizers)
        return f"{type(self).__name__}({inner})"
