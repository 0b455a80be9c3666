"""On CUDA, optimizer steps run without a host-device synchronisation."""

import pytest
import torch
from torch import nn

from finrl_lab.optim import METHOD_DEFAULTS, build_optimizer

pytestmark = pytest.mark.skipif(
    not torch.cuda.is_available(), reason="needs a CUDA device"
)


@pytest.mark.parametrize("name", list(METHOD_DEFAULTS))
def test_step_does_not_synchronize(name):
    model = nn.Sequential(nn.Linear(16, 32), nn.LayerNorm(32), nn.Linear(32, 8))
    model = model.cuda()
    optimizer = build_optimizer(
        model,
        {"name": name, "precondition_frequency": 2}
        if name.startswith("deva")
        else {"name": name},
    )
    inputs = torch.randn(4, 16, device="cuda")

    def train_step():
        optimizer.zero_grad()
        model(inputs).square().mean().backward()
        optimizer.step()

    # The DeVA rules build their bases with torch.linalg.eigh on the first step,
    # which checks its result on the host once per parameter.
    train_step()
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        for _ in range(4):
            train_step()
    finally:
        torch.cuda.set_sync_debug_mode("default")
    torch.cuda.synchronize()
    for p in model.parameters():
        assert torch.isfinite(p).all()
