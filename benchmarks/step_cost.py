"""Training-step cost of SGD, SAM, ASAM, FGSM-AT and PGD-k AT, measured in one process.

Every method is built through samat's public path (``samat.build``) and a step is exactly what
the trainer runs: ``x_in = input_perturbation.perturb(model, x, y, loss)`` followed by
``weight_perturbation.step(model, loss, x_in, y)`` with the model in train mode. Methods are
timed round-robin (order reversed every other round) after untimed warm-up steps; the ratio to
SGD is the median over rounds of ``t_method / t_sgd`` from the same round, which cancels slow
drift (thermal, other processes). A control row, ``2x_sgd``, times two plain steps as one: SAM
with zero bookkeeping would cost exactly that. Also reports the bytes SAM keeps between its two
passes. See docs/performance.md.

Usage::

    python benchmarks/step_cost.py                 # table, then the JSON on stdout
    python benchmarks/step_cost.py --json out.json # table on stdout, JSON written to out.json
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from samat.build import create_input_perturbation, create_weight_perturbation
from samat.interfaces import InputPerturbation, WeightPerturbation

NUM_CLASSES = 10
OPTIMIZER_PARAMS: dict[str, Any] = {"lr": 0.1, "momentum": 0.9, "weight_decay": 5e-4}
SAM_TARGET = 2.05
PGD_TARGET_SLACK = 1.05
EPS, ALPHA = 8 / 255, 2 / 255


# -- model ------------------------------------------------------------------------------------
class PreActBlock(nn.Module):
    """Pre-activation basic block (He et al. 2016): BN-ReLU-conv, BN-ReLU-conv, plus shortcut."""

    def __init__(self, c_in: int, c_out: int, stride: int) -> None:
        super().__init__()
        self.bn1 = nn.BatchNorm2d(c_in)
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False)
        self.shortcut = (
            nn.Conv2d(c_in, c_out, 1, stride, bias=False)
            if stride != 1 or c_in != c_out else None
        )

    def forward(self, x: Tensor) -> Tensor:
        out = F.relu(self.bn1(x))
        skip = self.shortcut(out) if self.shortcut is not None else x
        out = self.conv1(out)
        out = self.conv2(F.relu(self.bn2(out)))
        return out + skip


class SmallPreActResNet(nn.Module):
    """A PreActResNet-10-style CIFAR CNN: stem, four one-block stages of widths w, 2w, 4w, 8w."""

    def __init__(self, width: int = 16, num_classes: int = NUM_CLASSES) -> None:
        super().__init__()
        widths = [width, 2 * width, 4 * width, 8 * width]
        self.stem = nn.Conv2d(3, width, 3, 1, 1, bias=False)
        blocks, c_in = [], width
        for c_out, stride in zip(widths, (1, 2, 2, 2), strict=True):
            blocks.append(PreActBlock(c_in, c_out, stride))
            c_in = c_out
        self.blocks = nn.Sequential(*blocks)
        self.bn = nn.BatchNorm2d(c_in)
        self.fc = nn.Linear(c_in, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        out = F.relu(self.bn(self.blocks(self.stem(x))))
        return self.fc(F.adaptive_avg_pool2d(out, 1).flatten(1))


# -- methods ----------------------------------------------------------------------------------
@dataclass
class Method:
    """One benchmarked configuration: its own model copy and the trainer's two components."""

    name: str
    model: nn.Module
    input: InputPerturbation
    weight: WeightPerturbation
    repeat: int = 1  # > 1 only for the "2x_sgd" control: that many steps count as one

    def step(self, x: Tensor, y: Tensor) -> None:
        """One training step, exactly as ``samat.train`` runs it (minus the LR scheduler)."""
        for _ in range(self.repeat):
            x_in = self.input.perturb(self.model, x, y, F.cross_entropy)
            self.weight.step(self.model, F.cross_entropy, x_in, y)


def build_methods(base: nn.Module, pgd_steps: int) -> list[Method]:
    """SGD, SAM, ASAM, FGSM-AT and PGD-k AT, each on an identical copy of ``base``, plus the
    control "2x_sgd": two plain SGD steps timed as one (what SAM would cost with zero overhead).
    """
    specs: list[tuple[str, Callable[[], InputPerturbation], str]] = [
        ("sgd", lambda: create_input_perturbation("none"), "none"),
        ("2x_sgd", lambda: create_input_perturbation("none"), "none"),
        ("sam", lambda: create_input_perturbation("none"), "sam"),
        ("asam", lambda: create_input_perturbation("none"), "asam"),
        ("fgsm_at", lambda: create_input_perturbation("fgsm", eps=EPS), "none"),
        (f"pgd{pgd_steps}_at", lambda: create_input_perturbation(
            "pgd", norm="linf", eps=EPS, alpha=ALPHA, steps=pgd_steps), "none"),
    ]
    methods = []
    for name, make_input, weight_name in specs:
        model = copy.deepcopy(base).train()
        weight = create_weight_perturbation(
            weight_name, model.parameters(), optimizer="sgd", optimizer_params=OPTIMIZER_PARAMS
        )
        methods.append(Method(name, model, make_input(), weight, 2 if name == "2x_sgd" else 1))
    return methods


# -- measurement ------------------------------------------------------------------------------
def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_methods(
    methods: list[Method], batches: list[tuple[Tensor, Tensor]], steps: int, rounds: int,
    warmup: int, device: torch.device, progress: bool = False,
) -> dict[str, list[float]]:
    """Per method, the mean step time of each round (seconds); rounds interleave methods.

    With ``progress``, one line per round goes to stderr.
    """
    for method in methods:
        for i in range(warmup):
            method.step(*batches[i % len(batches)])
    _sync(device)
    per_round: dict[str, list[float]] = {m.name: [] for m in methods}
    for r in range(rounds):
        order = methods if r % 2 == 0 else methods[::-1]
        for method in order:
            _sync(device)
            start = time.perf_counter()
            for i in range(steps):
                method.step(*batches[(r * steps + i) % len(batches)])
            _sync(device)
            per_round[method.name].append((time.perf_counter() - start) / steps)
        if progress:
            times = " ".join(f"{name}={t[-1]:.3f}" for name, t in per_round.items())
            print(f"round {r + 1}/{rounds}: {times}", file=sys.stderr, flush=True)
    return per_round


def sam_saved_bytes(method: Method, x: Tensor, y: Tensor) -> dict[str, Any]:
    """Bytes SAM holds between ``first_step`` and ``second_step``, against the parameter bytes.

    ``samat.optim.SAM.first_step`` keeps ``(param, saved copy)`` pairs in ``_saved`` until
    ``second_step`` restores them; the clones' distinct storages are counted during a real step.
    """
    sam = method.weight.optimizer
    original = sam.second_step
    seen: dict[str, Any] = {}

    def spy(zero_grad: bool = False) -> None:
        saved = list(sam._saved or [])
        storages = {old.untyped_storage().data_ptr(): old.untyped_storage().nbytes()
                    for _, old in saved}
        seen.update(tensors=len(saved), bytes=sum(storages.values()))
        original(zero_grad=zero_grad)

    sam.second_step = spy  # type: ignore[method-assign]
    try:
        method.step(x, y)
    finally:
        del sam.second_step  # back to the class method
    param_bytes = sum(p.numel() * p.element_size() for p in method.model.parameters())
    return {
        "saved_tensors": seen["tensors"],
        "saved_bytes": seen["bytes"],
        "param_bytes": param_bytes,
        "copies": seen["bytes"] / param_bytes,
        "target_copies": 1.0,
        "pass": seen["bytes"] <= param_bytes,
    }


def cpu_model() -> str:
    """The CPU's marketing name (``/proc/cpuinfo`` on Linux, else ``platform``)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _loadavg() -> float | None:
    """1-minute load average (other processes compete for the cores), if the OS reports it."""
    try:
        return os.getloadavg()[0]
    except (AttributeError, OSError):
        return None


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda requested but CUDA is not available")
    return torch.device(name)


# -- report -----------------------------------------------------------------------------------
def summarize(per_round: dict[str, list[float]], pgd_steps: int) -> dict[str, dict[str, Any]]:
    """Mean/median/min step seconds, the ratios to SGD and the targets.

    ``ratio_to_sgd`` (judged against the targets) is the median over rounds of the paired ratio
    ``t_method / t_sgd``; ``ratio_min_to_sgd`` divides the fastest rounds, which is the better
    estimate of the uncontended cost when other processes compete for the cores.
    """
    sgd = per_round["sgd"]
    targets = {"sam": SAM_TARGET, f"pgd{pgd_steps}_at": PGD_TARGET_SLACK * (pgd_steps + 1)}
    out: dict[str, dict[str, Any]] = {}
    for name, times in per_round.items():
        paired = statistics.median(t / s for t, s in zip(times, sgd, strict=True))
        ratio = 1.0 if name == "sgd" else paired
        target = targets.get(name)
        out[name] = {
            "mean_s": statistics.fmean(times),
            "median_s": statistics.median(times),
            "min_s": min(times),
            "max_s": max(times),
            "ratio_to_sgd": ratio,
            "ratio_min_to_sgd": min(times) / min(sgd),
            "target_ratio": target,
            "pass": None if target is None else ratio <= target,
        }
    return out


def format_table(results: dict[str, Any]) -> str:
    """A plain aligned text table of the results."""
    header = (f"{'method':<10} {'mean s':>8} {'median s':>9} {'min s':>8} {'x SGD':>6} "
              f"{'target':>7} {'ok':<4} {'x SGD(min)':>10}")
    lines = [header, "-" * len(header)]
    for name, row in results["methods"].items():
        target = "" if row["target_ratio"] is None else f"<={row['target_ratio']:.2f}"
        ok = "" if row["pass"] is None else ("PASS" if row["pass"] else "FAIL")
        lines.append(f"{name:<10} {row['mean_s']:>8.4f} {row['median_s']:>9.4f} "
                     f"{row['min_s']:>8.4f} {row['ratio_to_sgd']:>6.2f} {target:>7} {ok:<4} "
                     f"{row['ratio_min_to_sgd']:>10.2f}")
    mem = results["sam_memory"]
    ok = "PASS" if mem["pass"] else "FAIL"
    lines.append("")
    lines.append("SAM / 2x_sgd (SAM's own overhead, paired median): "
                 f"{results['sam_vs_2x_sgd']:.3f}")
    lines.append(f"SAM saved weights between passes: {mem['saved_bytes']:,} B in "
                 f"{mem['saved_tensors']} tensors = {mem['copies']:.3f} x parameter bytes "
                 f"({mem['param_bytes']:,} B); target <= 1.0 copy  {ok}")
    return "\n".join(lines)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--width", type=int, default=16, help="base channel width (16)")
    parser.add_argument("--batch-size", type=int, default=64, help="batch size (64)")
    parser.add_argument("--steps", type=int, default=2, help="timed steps per method per round (2)")
    parser.add_argument("--rounds", type=int, default=40, help="round-robin rounds (40)")
    parser.add_argument("--warmup", type=int, default=3, help="untimed steps per method (3)")
    parser.add_argument("--pgd-steps", type=int, default=10, help="k of PGD-k AT (10)")
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", default="-", metavar="PATH",
                        help="write the JSON results here; '-' (default) prints it to stdout")
    parser.add_argument("--quiet", action="store_true", help="no per-round progress on stderr")
    parser.add_argument("--check", action="store_true",
                        help="exit with status 1 if any target fails")
    args = parser.parse_args(argv)
    for key in ("width", "batch_size", "steps", "rounds", "pgd_steps"):
        if getattr(args, key) < 1:
            parser.error(f"--{key.replace('_', '-')} must be >= 1")
    if args.warmup < 0:
        parser.error("--warmup must be >= 0")
    return args


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Run the benchmark, print the table, write/print the JSON and return the results."""
    args = parse_args(argv)
    device = resolve_device(args.device)
    torch.manual_seed(args.seed)
    base = SmallPreActResNet(args.width).to(device)
    gen = torch.Generator().manual_seed(args.seed)
    batches = [
        (torch.rand(args.batch_size, 3, 32, 32, generator=gen).to(device),
         torch.randint(0, NUM_CLASSES, (args.batch_size,), generator=gen).to(device))
        for _ in range(4)
    ]
    methods = build_methods(base, args.pgd_steps)
    load_before = _loadavg()
    start = time.perf_counter()
    per_round = time_methods(methods, batches, args.steps, args.rounds, args.warmup, device,
                             progress=not args.quiet)
    elapsed = time.perf_counter() - start
    sam = next(m for m in methods if m.name == "sam")
    results: dict[str, Any] = {
        "config": {
            "width": args.width, "batch_size": args.batch_size, "steps": args.steps,
            "rounds": args.rounds, "warmup": args.warmup, "pgd_steps": args.pgd_steps,
            "seed": args.seed, "optimizer": "sgd", "optimizer_params": OPTIMIZER_PARAMS,
            "eps": EPS, "alpha": ALPHA, "input_shape": [3, 32, 32], "classes": NUM_CLASSES,
            "ratio": "median over rounds of t_method/t_sgd within the same round",
        },
        "environment": {
            "torch": torch.__version__, "python": platform.python_version(),
            "threads": torch.get_num_threads(), "cpu_count": os.cpu_count(),
            "device": str(device), "cpu_model": cpu_model(),
            "gpu": torch.cuda.get_device_name(device) if device.type == "cuda" else None,
            "model_params": sum(p.numel() for p in base.parameters()),
            "loadavg_1min_before": load_before, "loadavg_1min_after": _loadavg(),
            "allocator_env": {k: v for k, v in os.environ.items()
                              if k.startswith("MALLOC_") or k in ("GLIBC_TUNABLES", "LD_PRELOAD")},
        },
        "methods": summarize(per_round, args.pgd_steps),
        "per_round_s": per_round,
        "sam_memory": sam_saved_bytes(sam, *batches[0]),
        "timed_wall_s": elapsed,
    }
    results["sam_vs_2x_sgd"] = statistics.median(
        a / b for a, b in zip(per_round["sam"], per_round["2x_sgd"], strict=True)
    )
    results["all_pass"] = results["sam_memory"]["pass"] and all(
        row["pass"] is not False for row in results["methods"].values()
    )
    print(format_table(results))
    text = json.dumps(results, indent=2)
    if args.json == "-":
        print(text)
    else:
        path = Path(args.json)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text + "\n")
        print(f"\nJSON written to {path}")
    if args.check and not results["all_pass"]:
        sys.exit(1)
    return results


if __name__ == "__main__":
    main()
