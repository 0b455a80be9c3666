"""Steps to a fixed loss under heavy-tailed gradient noise, per optimizer.

Two tasks, each run for every method over several seeds:

- ``regression``: a student MLP (16-64-64-1) fits a fixed random teacher MLP
  on fresh Gaussian inputs. After each backward pass every gradient entry gets
  noise sigma*xi, where sigma is ``--noise`` times that tensor's gradient RMS and
  xi is standard Gaussian with probability 1 - ``--contamination`` and standard
  Cauchy otherwise. The target is a test MSE.
- ``charlm``: a 2-layer causal transformer (width 64, context 32) learns the
  characters of the Python standard library's own source files, which ship
  with every Python. Its gradients carry only their natural minibatch noise.
  The target is a validation cross-entropy in nats per character.

Learning rates: each method picks its rate from ``--lrs`` on a tuning seed that
is not among the reported seeds, by fewest steps to the target (ties broken by
the lowest final loss). Matrix rules use the 0.2*sqrt(max(n, m)) RMS-matching
scale, so one rate grid serves all methods. A run that misses the target within
``--max-steps`` counts as ``max_steps`` in the mean and is reported as missed.

Run: ``python benchmarks/optim_noise.py`` (an estimated 15 minutes on one thread).
Writes ``benchmarks/results/optim_noise.json``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
import sysconfig
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from rich.console import Console
from rich.markup import escape
from rich.table import Table
from torch import nn

from finrl_lab.optim import build_optimizer

RESULTS = Path(__file__).parent / "results" / "optim_noise.json"
METHODS = ("adamw", "shrink_adam", "muon", "shrink_muon", "deva", "deva[v_source=grad]")


@dataclass
class Task:
    """One training problem: a model factory, a loss per step and an evaluation."""

    name: str
    make_model: Callable[[torch.Generator], nn.Module]
    train_loss: Callable[[nn.Module, torch.Generator], torch.Tensor]
    eval_loss: Callable[[nn.Module], float]
    target: float
    eval_every: int
    perturb: Callable[[nn.Module, torch.Generator], None] | None = None


# Regression under injected heavy-tailed noise


def _mlp(widths: list[int], generator: torch.Generator) -> nn.Sequential:
    layers: list[nn.Module] = []
    for i, (fan_in, fan_out) in enumerate(zip(widths[:-1], widths[1:], strict=True)):
        linear = nn.Linear(fan_in, fan_out)
        with torch.no_grad():
            bound = 1.0 / math.sqrt(fan_in)
            linear.weight.copy_(
                torch.empty(fan_out, fan_in).uniform_(
                    -bound, bound, generator=generator
                )
            )
            linear.bias.copy_(
                torch.empty(fan_out).uniform_(-bound, bound, generator=generator)
            )
        layers.append(linear)
        if i < len(widths) - 2:
            layers.append(nn.Tanh())
    return nn.Sequential(*layers)


def regression_task(noise: float, contamination: float, target: float) -> Task:
    """Build the teacher-student regression task with Cauchy-contaminated noise."""
    teacher = _mlp([16, 64, 1], torch.Generator().manual_seed(12345))
    teacher.requires_grad_(False)
    for p in teacher.parameters():
        p.mul_(3.0)
    test_inputs = torch.randn(4096, 16, generator=torch.Generator().manual_seed(999))
    test_targets = teacher(test_inputs)

    def train_loss(model: nn.Module, generator: torch.Generator) -> torch.Tensor:
        inputs = torch.randn(64, 16, generator=generator)
        return nn.functional.mse_loss(model(inputs), teacher(inputs))

    @torch.no_grad()
    def eval_loss(model: nn.Module) -> float:
        return float(nn.functional.mse_loss(model(test_inputs), test_targets))

    def perturb(model: nn.Module, generator: torch.Generator) -> None:
        for p in model.parameters():
            grad = p.grad
            sigma = noise * grad.square().mean().sqrt()
            gaussian = torch.randn(grad.shape, generator=generator)
            uniform = torch.rand(grad.shape, generator=generator)
            cauchy = torch.tan(math.pi * (uniform - 0.5))
            outlier = torch.rand(grad.shape, generator=generator) < contamination
            grad.add_(sigma * torch.where(outlier, cauchy, gaussian))

    return Task(
        name="regression",
        make_model=lambda generator: _mlp([16, 64, 64, 1], generator),
        train_loss=train_loss,
        eval_loss=eval_loss,
        target=target,
        eval_every=10,
        perturb=perturb,
    )


# Character-level language model on the standard library's source


def _stdlib_text(max_bytes: int) -> bytes:
    root = Path(sysconfig.get_paths()["stdlib"])
    chunks: list[bytes] = []
    total = 0
    for path in sorted(root.glob("*.py")):
        data = path.read_bytes()
        chunks.append(data)
        total += len(data)
        if total >= max_bytes:
            break
    return b"".join(chunks)[:max_bytes]


class CharTransformer(nn.Module):
    """Causal transformer over byte tokens: width 64, 4 heads, ``depth`` layers."""

    def __init__(
        self, vocab: int, context: int, width: int = 64, depth: int = 2
    ) -> None:
        super().__init__()
        self.embedding = nn.Embedding(vocab, width)
        self.position = nn.Embedding(context, width)
        layer = nn.TransformerEncoderLayer(
            width, 4, 4 * width, dropout=0.0, batch_first=True, norm_first=True
        )
        self.layers = nn.TransformerEncoder(layer, depth, enable_nested_tensor=False)
        self.final_norm = nn.LayerNorm(width)
        self.lm_head = nn.Linear(width, vocab)
        mask = nn.Transformer.generate_square_subsequent_mask(context)
        self.register_buffer("mask", mask)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        positions = torch.arange(tokens.shape[1])
        x = self.embedding(tokens) + self.position(positions)
        length = tokens.shape[1]
        x = self.layers(x, mask=self.mask[:length, :length], is_causal=True)
        return self.lm_head(self.final_norm(x))


def charlm_task(target: float, context: int = 32, batch: int = 32) -> Task:
    """Build the character-level language-model task on stdlib source."""
    text = _stdlib_text(1_500_000)
    # Printable ASCII plus tab and newline map to themselves; other bytes to 0.
    tokens = torch.tensor(list(text), dtype=torch.long)
    tokens = torch.where(tokens < 128, tokens, torch.zeros_like(tokens))
    split = int(0.9 * len(tokens))
    train_tokens, val_tokens = tokens[:split], tokens[split:]
    val_generator = torch.Generator().manual_seed(4242)
    val_starts = torch.randint(
        0, len(val_tokens) - context - 1, (256,), generator=val_generator
    )
    val_windows = torch.stack([val_tokens[s : s + context + 1] for s in val_starts])

    def loss_of(model: nn.Module, windows: torch.Tensor) -> torch.Tensor:
        logits = model(windows[:, :-1])
        return nn.functional.cross_entropy(
            logits.reshape(-1, logits.shape[-1]), windows[:, 1:].reshape(-1)
        )

    def train_loss(model: nn.Module, generator: torch.Generator) -> torch.Tensor:
        starts = torch.randint(
            0, len(train_tokens) - context - 1, (batch,), generator=generator
        )
        windows = torch.stack([train_tokens[s : s + context + 1] for s in starts])
        return loss_of(model, windows)

    @torch.no_grad()
    def eval_loss(model: nn.Module) -> float:
        return float(loss_of(model, val_windows))

    def make_model(generator: torch.Generator) -> nn.Module:
        torch.manual_seed(int(torch.randint(0, 2**31 - 1, (1,), generator=generator)))
        return CharTransformer(128, context)

    return Task(
        name="charlm",
        make_model=make_model,
        train_loss=train_loss,
        eval_loss=eval_loss,
        target=target,
        eval_every=10,
    )


# Runner


def method_config(method: str, lr: float) -> dict:
    """Turn ``name`` or ``name[key=value,...]`` into an optimizer config entry."""
    name, _, options = method.partition("[")
    config: dict[str, object] = {"name": name, "lr": lr}
    for option in filter(None, options.rstrip("]").split(",")):
        key, _, value = option.partition("=")
        config[key] = value
    return config


def run_once(task: Task, method: str, lr: float, seed: int, max_steps: int) -> dict:
    """Train one model; return steps to the target (or None) and the final loss."""
    generator = torch.Generator().manual_seed(seed)
    model = task.make_model(generator)
    optimizer = build_optimizer(model, method_config(method, lr))
    steps_to_target = None
    loss = task.eval_loss(model)
    start = time.perf_counter()
    for step in range(1, max_steps + 1):
        optimizer.zero_grad(set_to_none=True)
        task.train_loss(model, generator).backward()
        if task.perturb is not None:
            task.perturb(model, generator)
        optimizer.step()
        if step % task.eval_every == 0:
            loss = task.eval_loss(model)
            if not math.isfinite(loss):
                break
            if loss <= task.target:
                steps_to_target = step
                break
    return {
        "seed": seed,
        "lr": lr,
        "steps_to_target": steps_to_target,
        "final_loss": loss,
        "seconds": time.perf_counter() - start,
    }


def _tune_lr(
    task: Task, method: str, lrs: list[float], seed: int, max_steps: int
) -> dict:
    trials = [run_once(task, method, lr, seed, max_steps) for lr in lrs]

    def key(trial: dict) -> tuple[float, float]:
        steps = trial["steps_to_target"] or math.inf
        loss = trial["final_loss"] if math.isfinite(trial["final_loss"]) else math.inf
        return (steps, loss)

    best = min(trials, key=key)
    return {"lr": best["lr"], "trials": trials}


def _summary(runs: list[dict], max_steps: int) -> dict:
    steps = [run["steps_to_target"] or max_steps for run in runs]
    reached = sum(run["steps_to_target"] is not None for run in runs)
    return {
        "mean_steps": statistics.mean(steps),
        "std_steps": statistics.stdev(steps) if len(steps) > 1 else 0.0,
        "median_steps": statistics.median(steps),
        "fewest_steps": min(steps),
        "most_steps": max(steps),
        "reached": reached,
        "run_count": len(runs),
    }


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
        "cpu_model": cpu_model,
        "torch": torch.__version__,
        "python": platform.python_version(),
    }


def main() -> None:
    """Run every task and method, print tables and write the JSON results."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", nargs="*", default=["regression", "charlm"])
    parser.add_argument(
        "--methods",
        nargs="*",
        default=list(METHODS),
        help="optimizer names, each optionally with string options as "
        "name[key=value,...], for example deva[v_source=grad]",
    )
    parser.add_argument("--seeds", type=int, default=5, help="reported seeds")
    parser.add_argument("--lrs", type=float, nargs="*", default=[1e-3, 3e-3, 1e-2])
    parser.add_argument("--noise", type=float, default=3.0, help="sigma / grad RMS")
    parser.add_argument("--contamination", type=float, default=0.01)
    parser.add_argument("--regression-target", type=float, default=0.16)
    parser.add_argument("--regression-steps", type=int, default=2000)
    parser.add_argument("--charlm-target", type=float, default=2.0)
    parser.add_argument("--charlm-steps", type=int, default=800)
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch CPU threads (default 1: on a shared machine more threads "
        "than idle cores slow every step down many times over)",
    )
    parser.add_argument("--output", type=Path, default=RESULTS)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    console = Console()
    tasks = {
        "regression": (
            lambda: regression_task(
                args.noise, args.contamination, args.regression_target
            ),
            args.regression_steps,
        ),
        "charlm": (lambda: charlm_task(args.charlm_target), args.charlm_steps),
    }
    results: dict[str, object] = {
        "benchmark": "optim_noise",
        "command": "python benchmarks/optim_noise.py "
        + " ".join(
            f"--{key.replace('_', '-')} {value}"
            for key, value in vars(args).items()
            if key not in ("output", "tasks", "methods", "lrs")
        )
        + " --tasks "
        + " ".join(args.tasks)
        + " --lrs "
        + " ".join(f"{lr:g}" for lr in args.lrs),
        "arguments": {key: str(value) for key, value in vars(args).items()},
        "machine": _machine(),
        "tasks": {},
    }
    tuning_seed = 1000
    seeds = list(range(args.seeds))
    for task_name in args.tasks:
        build_task, max_steps = tasks[task_name]
        task = build_task()
        rows = {}
        for method in args.methods:
            tuned = _tune_lr(task, method, args.lrs, tuning_seed, max_steps)
            runs = [
                run_once(task, method, tuned["lr"], seed, max_steps) for seed in seeds
            ]
            rows[method] = {"lr": tuned["lr"], "tuning": tuned["trials"], "runs": runs}
            rows[method].update(_summary(runs, max_steps))
            console.log(
                f"{task_name} {escape(method)}: lr {tuned['lr']:g}, "
                f"mean steps {rows[method]['mean_steps']:.0f}, "
                f"reached {rows[method]['reached']}/{len(runs)}"
            )
        results["tasks"][task_name] = {
            "target": task.target,
            "max_steps": max_steps,
            "methods": rows,
        }
        table = Table(
            title=f"{task_name}: steps to loss {task.target} ({len(seeds)} seeds)"
        )
        for column in ("method", "lr", "mean", "std", "median", "min-max", "reached"):
            table.add_column(column, justify="right")
        for method, row in rows.items():
            table.add_row(
                escape(method),
                f"{row['lr']:g}",
                f"{row['mean_steps']:.0f}",
                f"{row['std_steps']:.0f}",
                f"{row['median_steps']:.0f}",
                f"{row['fewest_steps']}-{row['most_steps']}",
                f"{row['reached']}/{row['run_count']}",
            )
        console.print(table)

    args.output.parent.mkdir(parents=True, exist_ok=True)
    temporary = args.output.with_suffix(".json.tmp")
    temporary.write_text(json.dumps(results, indent=2))
    temporary.replace(args.output)
    console.log(f"wrote {args.output}")


if __name__ == "__main__":
    main()
