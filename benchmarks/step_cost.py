"""Training-step cost of SGD, SAM, ASAM, ESAM, LookSAM, FGSM-AT and PGD-k AT, in one process.

Two workloads, each timed separately: a CIFAR PreActResNet-18 (``--width`` sets the first stage's
channels) and a DeepLabv3 (segmentation-models-pytorch, random init) with the segmentation task's
loss. Every method is built through samat's public path (``samat.factories``) and a step is exactly
what the trainer runs, ``samat.train_step(input_perturbation, weight_perturbation, model, loss,
x, y)``, with the model in train mode. Methods are
timed round-robin in blocks of ``--steps`` consecutive steps (a multiple of LookSAM's k, so each
block holds whole k-cycles), method order reversed every other round; the ratio to SGD is the
median over rounds of ``t_method / t_sgd`` from the same round. A control row, ``2x_sgd``, times
two plain steps as one: SAM with zero bookkeeping would cost exactly that. Also reported: each
method's peak memory over one block of a fresh copy, and the bytes SAM keeps between its two
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
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn
from torch.utils.data import Dataset, TensorDataset

from samat.factories import create_input_perturbation, create_task, create_weight_perturbation
from samat.interfaces import InputPerturbation, LossFn, Task, WeightPerturbation
from samat.plugins import registries
from samat.step import train_step

MODELS = ("prn18", "deeplabv3")
NUM_CLASSES = 10
CIFAR10_MEAN, CIFAR10_STD = (0.4914, 0.4822, 0.4465), (0.2471, 0.2435, 0.2616)
OPTIMIZER_PARAMS: dict[str, Any] = {"lr": 0.1, "momentum": 0.9, "weight_decay": 5e-4}
EPS, ALPHA = 8 / 255, 2 / 255
LOOKSAM_K = 5
SAM_TARGET, LOOKSAM_TARGET = 2.05, 1.25
PGD_TARGET_SLACK = 0.5  # PGD-k AT target: (k + 1 + 0.5) x SGD, i.e. 11.5x for k = 10
# name -> weight perturbation and its parameters (rows without an input perturbation)
WEIGHT_ROWS: dict[str, tuple[str, dict[str, Any]]] = {
    "sgd": ("none", {}),
    "2x_sgd": ("none", {}),
    "sam": ("sam", {"rho": 0.05}),
    "asam": ("asam", {"rho": 0.5}),
    "esam": ("esam", {"rho": 0.05, "beta": 0.6, "gamma": 0.5}),
    "looksam": ("looksam", {"rho": 0.05, "k": LOOKSAM_K, "alpha": 0.7}),
}


# -- workloads --------------------------------------------------------------------------------
class BenchClassification(Task):
    """A 10-class image task over fixed in-memory batches (loss, per-example losses, metric)."""

    def __init__(self, data: Dataset, model: Callable[[], nn.Module]) -> None:
        self._data, self._model = data, model

    def train_dataset(self) -> Dataset:
        return self._data

    def eval_dataset(self) -> Dataset:
        return self._data

    def build_model(self) -> nn.Module:
        return self._model()


@dataclass
class Workload:
    """A model (the shared initialisation), its task, fixed batches and a description."""

    name: str
    model: nn.Module
    task: Task
    batches: list[tuple[Tensor, Tensor]]
    info: dict[str, Any] = field(default_factory=dict)


def _random_images(n_batches: int, batch_size: int, size: int, gen: torch.Generator,
                   target: Callable[[int], Tensor], device: torch.device,
                   ) -> list[tuple[Tensor, Tensor]]:
    return [(torch.rand(batch_size, 3, size, size, generator=gen).to(device),
             target(batch_size).to(device)) for _ in range(n_batches)]


def prn18_workload(width: int, batch_size: int, seed: int, device: torch.device) -> Workload:
    """samat_image's CIFAR PreActResNet-18 (normalisation inside) on random 3x32x32 batches."""
    from samat_image.models import build_model

    gen = torch.Generator().manual_seed(seed)
    batches = _random_images(4, batch_size, 32, gen, lambda n: torch.randint(
        0, NUM_CLASSES, (n,), generator=gen), device)

    def make() -> nn.Module:
        return build_model("preactresnet18", NUM_CLASSES, 3, 32, CIFAR10_MEAN, CIFAR10_STD,
                           width=width)

    torch.manual_seed(seed)
    model = make().to(device)
    task = BenchClassification(TensorDataset(*map(torch.cat, zip(*batches, strict=True))), make)
    return Workload("prn18", model, task, batches, {
        "model": f"PreActResNet-18 [2,2,2,2], width {width}", "width": width,
        "batch_size": batch_size, "input_shape": [3, 32, 32], "classes": NUM_CLASSES,
        "loss": "cross-entropy"})


def deeplabv3_workload(batch_size: int, size: int, encoder: str, seed: int,
                       device: torch.device) -> Workload:
    """The segmentation plugin's DeepLabv3 (``encoder``, no pretrained weights) and task loss on
    random ``3 x size x size`` images with random labels."""
    task = create_task("segmentation", dataset="shapes", encoder=encoder, encoder_weights=None,
                       crop_size=size, seed=seed)
    torch.manual_seed(seed)
    model = task.build_model().to(device)
    gen = torch.Generator().manual_seed(seed)
    classes = task.num_classes  # type: ignore[attr-defined]
    batches = _random_images(4, batch_size, size, gen, lambda n: torch.randint(
        0, classes, (n, size, size), generator=gen), device)
    return Workload("deeplabv3", model, task, batches, {
        "model": f"DeepLabv3 (smp), encoder {encoder}, random init, output stride 8",
        "encoder": encoder, "batch_size": batch_size, "input_shape": [3, size, size],
        "classes": classes, "loss": "segmentation task loss (pixel-wise cross-entropy)"})


# -- methods ----------------------------------------------------------------------------------
@dataclass
class Method:
    """One benchmarked configuration: its own model copy and the trainer's two components."""

    name: str
    model: nn.Module
    input: InputPerturbation
    weight: WeightPerturbation
    loss: LossFn
    repeat: int = 1  # > 1 only for the "2x_sgd" control: that many steps count as one

    def step(self, x: Tensor, y: Tensor) -> None:
        """One training step, exactly as ``samat.train`` runs it (minus the LR scheduler)."""
        for _ in range(self.repeat):
            train_step(self.input, self.weight, self.model, self.loss, x, y)


def row_names(pgd_steps: int) -> list[str]:
    return [*WEIGHT_ROWS, "fgsm_at", f"pgd{pgd_steps}_at"]


def missing_perturbations(names: list[str]) -> dict[str, str]:
    """Rows whose weight perturbation is not registered, with the reason they are skipped."""
    registered = registries().weight_perturbations
    return {name: f"weight perturbation '{WEIGHT_ROWS[name][0]}' is not registered"
            for name in names if name in WEIGHT_ROWS and WEIGHT_ROWS[name][0] not in registered}


def build_method(name: str, workload: Workload, pgd_steps: int) -> Method:
    """Row ``name`` on a fresh copy of the workload's model, built through ``samat.factories``."""
    task = workload.task
    model = copy.deepcopy(workload.model).train()
    weight_name, weight_params = WEIGHT_ROWS.get(name, ("none", {}))
    if weight_name == "esam":
        weight_params = {**weight_params, "task": task}  # per-example losses for its selection
    if name == "fgsm_at":
        input_ = create_input_perturbation("fgsm", task=task, eps=EPS)
    elif name == f"pgd{pgd_steps}_at":
        input_ = create_input_perturbation("pgd", task=task, norm="linf", eps=EPS, alpha=ALPHA,
                                           steps=pgd_steps)
    else:
        input_ = create_input_perturbation("none")
    weight = create_weight_perturbation(weight_name, model.parameters(), optimizer="sgd",
                                        optimizer_params=OPTIMIZER_PARAMS, **weight_params)
    return Method(name, model, input_, weight, task.loss, 2 if name == "2x_sgd" else 1)


# -- measurement ------------------------------------------------------------------------------
def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _run_block(method: Method, batches: list[tuple[Tensor, Tensor]], steps: int,
               first: int = 0) -> None:
    for i in range(steps):
        method.step(*batches[(first + i) % len(batches)])


def time_methods(
    methods: list[Method], batches: list[tuple[Tensor, Tensor]], steps: int, rounds: int,
    warmup: int, device: torch.device, progress: str | None = None,
) -> dict[str, list[float]]:
    """Per method, the mean step time of each round (seconds); rounds interleave methods.

    With ``progress`` (a label), one line per round goes to stderr.
    """
    for method in methods:
        _run_block(method, batches, warmup)
    _sync(device)
    per_round: dict[str, list[float]] = {m.name: [] for m in methods}
    for r in range(rounds):
        for method in methods if r % 2 == 0 else methods[::-1]:
            _sync(device)
            start = time.perf_counter()
            _run_block(method, batches, steps, r * steps)
            _sync(device)
            per_round[method.name].append((time.perf_counter() - start) / steps)
        if progress:
            times = " ".join(f"{name}={t[-1]:.3f}" for name, t in per_round.items())
            print(f"{progress} round {r + 1}/{rounds}: {times}", file=sys.stderr, flush=True)
    return per_round


@contextmanager
def _cpu_allocations() -> Iterator[Callable[[], int]]:
    """Record torch CPU-allocator events (``torch.profiler`` with ``profile_memory``); yields a
    function returning the peak of bytes allocated inside the block and not yet freed."""
    from torch._C._profiler import _EventType
    from torch.profiler import ProfilerActivity, profile

    peak = [0]
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        yield lambda: peak[0]
    events, stack = [], list(prof.profiler.kineto_results.experimental_event_tree())
    while stack:
        event = stack.pop()
        stack.extend(event.children)
        if event.tag == _EventType.Allocation and event.extra_fields.device.type == "cpu":
            events.append((event.start_time_ns, event.extra_fields))
    live: dict[int, int] = {}  # pointer -> bytes, for blocks allocated inside the window
    current = 0
    for _, alloc in sorted(events, key=lambda e: e[0]):
        if alloc.alloc_size > 0:
            live[alloc.ptr] = alloc.alloc_size
            current += alloc.alloc_size
            peak[0] = max(peak[0], current)
        else:  # a free; blocks from before the window are ignored
            current -= live.pop(alloc.ptr, 0)


def peak_step_memory(name: str, workload: Workload, pgd_steps: int, steps: int,
                     device: torch.device) -> int:
    """Peak bytes a fresh copy of row ``name`` allocates over one block of ``steps`` steps,
    beyond its model's weights and buffers (gradients, optimizer state, SAM's copy,
    activations, temporaries). CUDA: ``max_memory_allocated``; CPU: the torch allocator's
    events under ``torch.profiler`` (tensor storages only, not RSS)."""
    method = build_method(name, workload, pgd_steps)
    if device.type == "cuda":
        _sync(device)
        torch.cuda.reset_peak_memory_stats(device)
        before = torch.cuda.memory_allocated(device)
        _run_block(method, workload.batches, steps)
        _sync(device)
        return torch.cuda.max_memory_allocated(device) - before
    with _cpu_allocations() as peak:
        _run_block(method, workload.batches, steps)
    return peak()


def sam_saved_bytes(method: Method, x: Tensor, y: Tensor) -> dict[str, Any]:
    """Bytes SAM holds between ``first_step`` and ``second_step``, against the parameter bytes.

    ``samat.weight.SAM.first_step`` keeps ``(param, saved copy)`` pairs in ``_saved`` until
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
    param_bytes = _param_bytes(method.model)
    return {
        "saved_tensors": seen["tensors"],
        "saved_bytes": seen["bytes"],
        "param_bytes": param_bytes,
        "copies": seen["bytes"] / param_bytes,
        "target_copies": 1.0,
        "pass": seen["bytes"] <= param_bytes,
    }


def _param_bytes(model: nn.Module) -> int:
    return sum(p.numel() * p.element_size() for p in model.parameters())


def cpu_model() -> str:
    """The CPU's marketing name (``/proc/cpuinfo`` on Linux, else ``platform``)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def loadavg() -> float | None:
    """1-minute load average (other processes compete for the cores), if the OS reports it."""
    try:
        return os.getloadavg()[0]
    except (AttributeError, OSError):
        return None


def environment(device: torch.device) -> dict[str, Any]:
    """Versions, threads, hardware and allocator settings (they change the result)."""
    return {
        "torch": torch.__version__, "python": platform.python_version(),
        "threads": torch.get_num_threads(), "cpu_count": os.cpu_count(),
        "device": str(device), "cpu_model": cpu_model(),
        "gpu": torch.cuda.get_device_name(device) if device.type == "cuda" else None,
        "allocator_env": {k: v for k, v in os.environ.items()
                          if k.startswith("MALLOC_") or k in ("GLIBC_TUNABLES", "LD_PRELOAD")},
    }


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda requested but CUDA is not available")
    return torch.device(name)


def paired_median(a: list[float], b: list[float]) -> float:
    """Median over rounds of ``a[r] / b[r]``."""
    return statistics.median(x / y for x, y in zip(a, b, strict=True))


# -- report -----------------------------------------------------------------------------------
def targets(pgd_steps: int) -> dict[str, float]:
    return {"sam": SAM_TARGET, "looksam": LOOKSAM_TARGET,
            f"pgd{pgd_steps}_at": pgd_steps + 1 + PGD_TARGET_SLACK}


def summarize(per_round: dict[str, list[float]], peaks: dict[str, int],
              pgd_steps: int) -> dict[str, dict[str, Any]]:
    """Mean/median/min step seconds, ratios to SGD, peak memory and the targets.

    ``ratio_to_sgd`` (judged against the targets) is the median over rounds of the paired ratio
    ``t_method / t_sgd``; ``ratio_min_to_sgd`` divides the fastest rounds, which is the better
    estimate of the uncontended cost when other processes compete for the cores.
    """
    sgd = per_round["sgd"]
    goal = targets(pgd_steps)
    out: dict[str, dict[str, Any]] = {}
    for name, times in per_round.items():
        ratio = 1.0 if name == "sgd" else paired_median(times, sgd)
        target = goal.get(name)
        out[name] = {
            "mean_s": statistics.fmean(times),
            "median_s": statistics.median(times),
            "min_s": min(times),
            "max_s": max(times),
            "ratio_to_sgd": ratio,
            "ratio_min_to_sgd": min(times) / min(sgd),
            "target_ratio": target,
            "pass": None if target is None else ratio <= target,
            "peak_bytes": peaks[name],
            "peak_ratio_to_sgd": peaks[name] / peaks["sgd"],
        }
    return out


def format_table(label: str, result: dict[str, Any]) -> str:
    """A plain aligned text table of one workload's results."""
    header = (f"{'method':<10} {'mean s':>8} {'median s':>9} {'min s':>8} {'x SGD':>6} "
              f"{'target':>7} {'ok':<4} {'x SGD(min)':>10} {'peak MB':>8} {'mem x SGD':>9}")
    lines = [f"== {label}: {result['info']['model']}, batch {result['info']['batch_size']}, "
             f"{result['info']['params']:,} parameters", header, "-" * len(header)]
    for name, row in result["methods"].items():
        target = "" if row["target_ratio"] is None else f"<={row['target_ratio']:.2f}"
        ok = "" if row["pass"] is None else ("PASS" if row["pass"] else "FAIL")
        lines.append(f"{name:<10} {row['mean_s']:>8.4f} {row['median_s']:>9.4f} "
                     f"{row['min_s']:>8.4f} {row['ratio_to_sgd']:>6.2f} {target:>7} {ok:<4} "
                     f"{row['ratio_min_to_sgd']:>10.2f} {row['peak_bytes'] / 2**20:>8.1f} "
                     f"{row['peak_ratio_to_sgd']:>9.2f}")
    for name, reason in result["skipped"].items():
        lines.append(f"{name:<10} skipped: {reason}")
    mem = result["sam_memory"]
    lines += [
        "",
        f"SAM / 2x_sgd (SAM's own overhead, paired median): {result['sam_vs_2x_sgd']:.3f}",
        f"SAM saved weights between passes: {mem['saved_bytes']:,} B in {mem['saved_tensors']} "
        f"tensors = {mem['copies']:.3f} x parameter bytes ({mem['param_bytes']:,} B); "
        f"target <= 1.0 copy  {'PASS' if mem['pass'] else 'FAIL'}",
        f"SAM peak - SGD peak: {mem['peak_extra_bytes']:,} B = {mem['peak_extra_copies']:.3f} x "
        "parameter bytes",
    ]
    return "\n".join(lines)


def run_workload(workload: Workload, args: argparse.Namespace, device: torch.device,
                 progress: bool) -> dict[str, Any]:
    """Time, profile and summarise every registered row on one workload."""
    names = row_names(args.pgd_steps)
    skipped = missing_perturbations(names)
    for name, reason in skipped.items():
        print(f"note: {workload.name}: skipping {name}: {reason}", flush=True)
    names = [n for n in names if n not in skipped]
    methods = [build_method(n, workload, args.pgd_steps) for n in names]
    load_before = loadavg()
    start = time.perf_counter()
    per_round = time_methods(methods, workload.batches, args.steps, args.rounds, args.warmup,
                             device, progress=workload.name if progress else None)
    elapsed = time.perf_counter() - start
    peaks = {n: peak_step_memory(n, workload, args.pgd_steps, args.steps, device) for n in names}
    sam = next(m for m in methods if m.name == "sam")
    sam_memory = sam_saved_bytes(sam, *workload.batches[0])
    sam_memory["peak_extra_bytes"] = peaks["sam"] - peaks["sgd"]
    sam_memory["peak_extra_copies"] = sam_memory["peak_extra_bytes"] / sam_memory["param_bytes"]
    params = list(workload.model.parameters())
    return {
        "info": {**workload.info, "params": sum(p.numel() for p in params),
                 "param_tensors": len(params)},
        "methods": summarize(per_round, peaks, args.pgd_steps),
        "skipped": skipped,
        "sam_vs_2x_sgd": paired_median(per_round["sam"], per_round["2x_sgd"]),
        "sam_memory": sam_memory,
        "per_round_s": per_round,
        "loadavg_1min_before": load_before,
        "loadavg_1min_after": loadavg(),
        "timed_wall_s": elapsed,
    }


def emit_json(results: dict[str, Any], dest: str) -> None:
    """Print ``results`` as JSON (``dest`` ``-``) or write it to the file ``dest``."""
    text = json.dumps(results, indent=2)
    if dest == "-":
        print(text)
        return
    path = Path(dest)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text + "\n")
    print(f"JSON written to {path}")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", default=",".join(MODELS),
                        help=f"comma-separated workloads among {', '.join(MODELS)} (all)")
    parser.add_argument("--width", type=int, default=16, help="PRN-18 first-stage width (16)")
    parser.add_argument("--batch-size", type=int, default=64, help="PRN-18 batch size (64)")
    parser.add_argument("--seg-batch-size", type=int, default=4, help="DeepLabv3 batch size (4)")
    parser.add_argument("--seg-size", type=int, default=64, help="DeepLabv3 image side (64)")
    parser.add_argument("--encoder", default="mobilenet_v2", help="DeepLabv3 encoder")
    parser.add_argument("--steps", type=int, default=LOOKSAM_K,
                        help=f"timed steps per method per round, a multiple of {LOOKSAM_K} "
                             f"(LookSAM's k) ({LOOKSAM_K})")
    parser.add_argument("--rounds", type=int, default=12, help="round-robin rounds (12)")
    parser.add_argument("--warmup", type=int, default=LOOKSAM_K,
                        help=f"untimed steps per method ({LOOKSAM_K})")
    parser.add_argument("--pgd-steps", type=int, default=10, help="k of PGD-k AT (10)")
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", default="-", metavar="PATH",
                        help="write the JSON results here; '-' (default) prints it to stdout")
    parser.add_argument("--quiet", action="store_true", help="no per-round progress on stderr")
    parser.add_argument("--check", action="store_true",
                        help="exit with status 1 if any target fails")
    args = parser.parse_args(argv)
    args.models = [m.strip() for m in args.models.split(",") if m.strip()]
    if not args.models or any(m not in MODELS for m in args.models):
        parser.error(f"--models: choose among {', '.join(MODELS)}")
    for key in ("width", "batch_size", "seg_batch_size", "steps", "rounds", "pgd_steps"):
        if getattr(args, key) < 1:
            parser.error(f"--{key.replace('_', '-')} must be >= 1")
    if args.steps % LOOKSAM_K:
        parser.error(f"--steps must be a multiple of LookSAM's k = {LOOKSAM_K}")
    if args.seg_size < 8 or args.seg_size % 8:
        parser.error("--seg-size must be a multiple of 8 (DeepLabv3 output stride)")
    if args.warmup < 0:
        parser.error("--warmup must be >= 0")
    return args


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Run the benchmark, print the tables, write/print the JSON and return the results."""
    args = parse_args(argv)
    device = resolve_device(args.device)
    start = time.perf_counter()
    load_before = loadavg()
    workloads: dict[str, Any] = {}
    for name in args.models:
        workload = (prn18_workload(args.width, args.batch_size, args.seed, device)
                    if name == "prn18" else
                    deeplabv3_workload(args.seg_batch_size, args.seg_size, args.encoder,
                                       args.seed, device))
        workloads[name] = run_workload(workload, args, device, progress=not args.quiet)
        print(format_table(name, workloads[name]) + "\n", flush=True)
    results: dict[str, Any] = {
        "config": {
            "models": args.models, "steps": args.steps, "rounds": args.rounds,
            "warmup": args.warmup, "pgd_steps": args.pgd_steps, "seed": args.seed,
            "optimizer": "sgd", "optimizer_params": OPTIMIZER_PARAMS, "eps": EPS, "alpha": ALPHA,
            "weight_rows": {k: {"name": n, **p} for k, (n, p) in WEIGHT_ROWS.items()},
            "targets": targets(args.pgd_steps),
            "ratio": "median over rounds of t_method/t_sgd within the same round",
            "peak": "peak bytes allocated over one block of a fresh copy beyond the weights",
        },
        "environment": {**environment(device), "loadavg_1min_before": load_before,
                        "loadavg_1min_after": loadavg()},
        "models": workloads,
        "wall_s": time.perf_counter() - start,
    }
    results["all_pass"] = all(
        w["sam_memory"]["pass"] and all(r["pass"] is not False for r in w["methods"].values())
        for w in workloads.values()
    )
    print(f"all targets: {'PASS' if results['all_pass'] else 'FAIL'}")
    emit_json(results, args.json)
    if args.check and not results["all_pass"]:
        sys.exit(1)
    return results


if __name__ == "__main__":
    main()
