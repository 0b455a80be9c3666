"""Time one optimizer step and count optimizer-state bytes, relative to AdamW.

The parameter set is a small decoder-only transformer (width 256, 4 blocks, MLP
width 1024, vocabulary 64; about 3.2M parameters). Every optimizer gets the
same fixed random gradients. Steps are timed in blocks of ``--block`` steps.
The optimizers take turns block by block, so machine drift hits all of them
alike. The figure per optimizer is the median over blocks of the mean step
time in a block. A block of 10 steps holds one basis refresh of the DeVA rules.

The first step, which builds the state and, with ``compile=True``, compiles,
is timed on its own (``first_step_s``) and kept out of the step figures.

Run: ``python benchmarks/optim_step.py`` (add ``--device cuda`` on a GPU).
Writes ``benchmarks/results/optim_step.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import torch
from rich.console import Console
from rich.table import Table
from torch import nn

from finrl_lab.optim import ShrinkAdam, ShrinkMuon, build_optimizer

RESULTS = Path(__file__).parent / "results" / "optim_step.json"


class Block(nn.Module):
    """Pre-norm transformer block: parameters only, no forward pass is needed."""

    def __init__(self, width: int, mlp_width: int) -> None:
        super().__init__()
        self.attention_norm = nn.LayerNorm(width)
        self.qkv = nn.Linear(width, 3 * width)
        self.attention_out = nn.Linear(width, width)
        self.mlp_norm = nn.LayerNorm(width)
        self.mlp_in = nn.Linear(width, mlp_width)
        self.mlp_out = nn.Linear(mlp_width, width)


class SmallTransformer(nn.Module):
    """Decoder-only transformer parameter set, about 3.2M parameters by default."""

    def __init__(
        self, vocab: int = 64, width: int = 256, depth: int = 4, mlp_width: int = 1024
    ) -> None:
        super().__init__()
        self.embedding = nn.Embedding(vocab, width)
        self.blocks = nn.ModuleList(Block(width, mlp_width) for _ in range(depth))
        self.final_norm = nn.LayerNorm(width)
        self.lm_head = nn.Linear(width, vocab, bias=False)


def _matrix_params(model: nn.Module) -> list[nn.Parameter]:
    return [
        p for name, p in model.named_parameters() if "blocks" in name and p.ndim == 2
    ]


def _candidates(model: nn.Module) -> dict[str, Callable[[], torch.optim.Optimizer]]:
    params = list(model.parameters())
    matrices = _matrix_params(model)
    lr = 3e-4
    return {
        "adamw_foreach": lambda: torch.optim.AdamW(params, lr=lr, foreach=True),
        "adamw_fused": lambda: torch.optim.AdamW(params, lr=lr, fused=True),
        "shrink_adam": lambda: ShrinkAdam(params, lr=lr),
        "shrink_adam_compiled": lambda: ShrinkAdam(params, lr=lr, compile=True),
        "shrink_adam_off_compiled": lambda: ShrinkAdam(
            params, lr=lr, shrink="none", compile=True
        ),
        "shrink_adam_soft_compiled": lambda: ShrinkAdam(
            params, lr=lr, shrink="soft", compile=True
        ),
        "shrink_adam_tanh_compiled": lambda: ShrinkAdam(
            params, lr=lr, shrink="tanh", compile=True
        ),
        "shrink_adam_hard": lambda: ShrinkAdam(params, lr=lr, shrink="hard"),
        "shrink_adam_hard_compiled": lambda: ShrinkAdam(
            params, lr=lr, shrink="hard", compile=True
        ),
        "torch_muon_matrices": lambda: torch.optim.Muon(matrices, lr=lr),
        "shrink_muon_matrices": lambda: ShrinkMuon(matrices, lr=lr),
        "shrink_muon_matrices_compiled": lambda: ShrinkMuon(
            matrices, lr=lr, compile=True
        ),
        "muon": lambda: build_optimizer(model, {"name": "muon", "lr": lr}),
        "shrink_muon": lambda: build_optimizer(
            model, {"name": "shrink_muon", "lr": lr}
        ),
        "shrink_muon_compiled": lambda: build_optimizer(
            model, {"name": "shrink_muon", "lr": lr, "compile": True}
        ),
        "deva": lambda: build_optimizer(model, {"name": "deva", "lr": lr}),
        "deva_both_sides": lambda: build_optimizer(
            model, {"name": "deva", "lr": lr, "precondition_sides": "both"}
        ),
        "deva_factored": lambda: build_optimizer(
            model, {"name": "deva_factored", "lr": lr}
        ),
    }


def _state_bytes(optimizer: torch.optim.Optimizer) -> int:
    total = 0
    for state in optimizer.state.values():
        for value in state.values():
            if torch.is_tensor(value) and value.ndim > 0:
                total += value.numel() * value.element_size()
    return total


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def _machine() -> dict[str, object]:
    cpu_model = platform.processor()
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    cpu_model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return {
        "nproc": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "cpu_model": cpu_model,
        "torch": torch.__version__,
        "python": platform.python_version(),
    }


def main() -> None:
    """Time every candidate, print a table and write the JSON results."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu", help="torch device (default cpu)")
    parser.add_argument("--blocks", type=int, default=3, help="timed blocks")
    parser.add_argument("--block", type=int, default=10, help="steps per block")
    parser.add_argument("--only", nargs="*", help="candidate names to run")
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch CPU threads (default 1: on a shared machine more threads "
        "than idle cores slow every step down many times over)",
    )
    parser.add_argument("--output", type=Path, default=RESULTS, help="JSON path")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    device = torch.device(args.device)
    torch.manual_seed(0)
    model = SmallTransformer().to(device)
    params = list(model.parameters())
    n_params = sum(p.numel() for p in params)
    generator = torch.Generator(device="cpu").manual_seed(1)
    gradients = [torch.randn(p.shape, generator=generator).to(device) for p in params]

    factories = _candidates(model)
    if args.only:
        factories = {name: factories[name] for name in args.only}
    console = Console()
    optimizers: dict[str, torch.optim.Optimizer] = {}
    warmup_seconds: dict[str, float] = {}
    first_step_seconds: dict[str, float] = {}
    for name, factory in factories.items():
        optimizer = factory()
        for p, g in zip(params, gradients, strict=True):
            p.grad = g
        start = time.perf_counter()
        # The first step builds the state and, with compile=True, compiles.
        optimizer.step()
        _synchronize(device)
        first_step_seconds[name] = time.perf_counter() - start
        optimizer.step()
        _synchronize(device)
        warmup_seconds[name] = time.perf_counter() - start
        optimizers[name] = optimizer
        console.log(
            f"{name}: first step (compile included) {first_step_seconds[name]:.1f} s,"
            f" warm-up {warmup_seconds[name]:.1f} s"
        )

    block_ms: dict[str, list[float]] = {name: [] for name in optimizers}
    for _ in range(args.blocks):
        for name, optimizer in optimizers.items():
            _synchronize(device)
            start = time.perf_counter()
            for _ in range(args.block):
                optimizer.step()
            _synchronize(device)
            elapsed = time.perf_counter() - start
            block_ms[name].append(1e3 * elapsed / args.block)

    baseline = "adamw_foreach" if "adamw_foreach" in optimizers else None
    rows = []
    for name, optimizer in optimizers.items():
        median_ms = statistics.median(block_ms[name])
        rows.append(
            {
                "name": name,
                "median_step_ms": median_ms,
                "block_step_ms": block_ms[name],
                "state_bytes": _state_bytes(optimizer),
                "first_step_s": first_step_seconds[name],
                "warmup_s": warmup_seconds[name],
            }
        )
    if baseline:
        base = next(row for row in rows if row["name"] == baseline)
        for row in rows:
            row["time_vs_adamw_foreach"] = (
                row["median_step_ms"] / base["median_step_ms"]
            )
            row["state_vs_adamw"] = row["state_bytes"] / base["state_bytes"]

    table = Table(title=f"Optimizer step, {n_params / 1e6:.2f}M parameters, {device}")
    for column in (
        "optimizer",
        "median ms/step",
        "x AdamW time",
        "state MB",
        "x AdamW state",
        "first step s",
    ):
        table.add_column(column, justify="right")
    for row in rows:
        table.add_row(
            row["name"],
            f"{row['median_step_ms']:.2f}",
            f"{row.get('time_vs_adamw_foreach', float('nan')):.2f}",
            f"{row['state_bytes'] / 2**20:.1f}",
            f"{row.get('state_vs_adamw', float('nan')):.2f}",
            f"{row['first_step_s']:.1f}",
        )
    console.print(table)

    result = {
        "benchmark": "optim_step",
        "command": "python benchmarks/optim_step.py "
        f"--device {args.device} --blocks {args.blocks} --block {args.block} "
        f"--threads {args.threads}",
        "device": str(device),
        "parameters": n_params,
        "machine": _machine(),
        "rows": rows,
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    temporary = args.output.with_suffix(".json.tmp")
    temporary.write_text(json.dumps(result, indent=2))
    temporary.replace(args.output)
    console.log(f"wrote {args.output}")


if __name__ == "__main__":
    main()
