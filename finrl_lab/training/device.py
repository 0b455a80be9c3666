"""Device resolution: ``auto`` picks CUDA when torch finds a GPU, else the CPU."""

from __future__ import annotations

import torch

from finrl_lab.errors import ConfigError


def resolve_device(spec: str) -> str:
    """Return ``cpu`` or ``cuda`` for ``auto``, ``cpu`` or ``cuda``.

    :raises ConfigError: ``cuda`` was requested but torch finds no CUDA device.
    """
    if spec == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if spec == "cpu":
        return "cpu"
    if spec == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError(
                "device 'cuda' requested but torch finds no CUDA device",
                "use --device cpu or auto, or install a CUDA build of torch",
            )
        return "cuda"
    raise ConfigError(f"unknown device {spec!r}", "use one of auto, cpu, cuda")
