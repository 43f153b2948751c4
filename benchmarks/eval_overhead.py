"""samat's evaluation path under PGD against calling torchattacks directly: same model, batches
and work.

``samat``: ``samat.create_attack("pgd", model, task=task, norm="linf", ...)`` evaluated by
``Task.evaluate`` (what ``samat.evaluation.evaluate`` does per attack). ``torchattacks``:
``torchattacks.PGD(model, eps, alpha, steps, random_start=True)`` in a hand-written loop that
does the same (attack, forward without gradients, accuracy). Both run on samat_image's
PreActResNet-18 in eval mode, round-robin with the order reversed every other round; the overhead
is the median over rounds of ``t_samat / t_torchattacks``. Without random start both must
produce the same adversarial examples bit for bit, which is checked and reported. See
docs/performance.md.

Usage::

    python benchmarks/eval_overhead.py [--json out.json]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from typing import Any

import torch
import torchattacks
from step_cost import (
    ALPHA,
    EPS,
    Workload,
    emit_json,
    environment,
    loadavg,
    paired_median,
    prn18_workload,
    resolve_device,
)
from torch import Tensor

from samat.factories import create_attack
from samat.interfaces import Accuracy

TARGET = 1.05


def samat_eval(workload: Workload, steps: int, random_start: bool = True,
               ) -> Callable[[list[tuple[Tensor, Tensor]]], dict[str, float]]:
    """Accuracy under samat's PGD through ``Task.evaluate``."""
    attack = create_attack("pgd", workload.model, task=workload.task, norm="linf", eps=EPS,
                           alpha=ALPHA, steps=steps, random_start=random_start)
    return lambda batches: workload.task.evaluate(workload.model, batches, attack)


def torchattacks_eval(workload: Workload, steps: int, random_start: bool = True,
                      ) -> Callable[[list[tuple[Tensor, Tensor]]], dict[str, float]]:
    """Accuracy under ``torchattacks.PGD`` in the same loop, written out."""
    model = workload.model
    attack = torchattacks.PGD(model, eps=EPS, alpha=ALPHA, steps=steps, random_start=random_start)

    def run(batches: list[tuple[Tensor, Tensor]]) -> dict[str, float]:
        metric = Accuracy()
        model.eval()
        for x, y in batches:
            x_adv = attack(x, y)
            with torch.no_grad():
                metric.update(model(x_adv), y)
        return metric.compute()

    return run


def identical_without_random_start(workload: Workload, steps: int) -> bool:
    """Whether both attacks give the same adversarial examples when started at ``x``."""
    x, y = workload.batches[0]
    ours = create_attack("pgd", workload.model, task=workload.task, norm="linf", eps=EPS,
                         alpha=ALPHA, steps=steps, random_start=False)(x, y)
    theirs = torchattacks.PGD(workload.model, eps=EPS, alpha=ALPHA, steps=steps,
                              random_start=False)(x, y)
    return torch.equal(ours, theirs)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--width", type=int, default=16, help="PRN-18 first-stage width (16)")
    parser.add_argument("--batch-size", type=int, default=64, help="batch size (64)")
    parser.add_argument("--batches", type=int, default=2, help="batches per evaluation (2)")
    parser.add_argument("--pgd-steps", type=int, default=10, help="PGD steps (10)")
    parser.add_argument("--rounds", type=int, default=10, help="round-robin rounds (10)")
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", default="-", metavar="PATH",
                        help="write the JSON results here; '-' (default) prints it to stdout")
    parser.add_argument("--check", action="store_true",
                        help="exit with status 1 if the target fails")
    args = parser.parse_args(argv)
    for key in ("width", "batch_size", "batches", "pgd_steps", "rounds"):
        if getattr(args, key) < 1:
            parser.error(f"--{key.replace('_', '-')} must be >= 1")
    if args.batches > 4:
        parser.error("--batches must be <= 4")
    return args


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Run the comparison, print a summary, write/print the JSON and return the results."""
    args = parse_args(argv)
    device = resolve_device(args.device)
    workload = prn18_workload(args.width, args.batch_size, args.seed, device)
    workload.model.eval()
    batches = workload.batches[: args.batches]
    runs = {"samat": samat_eval(workload, args.pgd_steps),
            "torchattacks": torchattacks_eval(workload, args.pgd_steps)}
    for run in runs.values():  # warm-up
        run(batches[:1])
    load_before = loadavg()
    times: dict[str, list[float]] = {name: [] for name in runs}
    for r in range(args.rounds):
        for name, run in list(runs.items())[:: 1 if r % 2 == 0 else -1]:
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            start = time.perf_counter()
            run(batches)
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            times[name].append(time.perf_counter() - start)
    ratio = paired_median(times["samat"], times["torchattacks"])
    results: dict[str, Any] = {
        "config": {"model": f"PreActResNet-18, width {args.width}, eval mode",
                   "attack": {"norm": "linf", "eps": EPS, "alpha": ALPHA,
                              "steps": args.pgd_steps, "random_start": True},
                   "batch_size": args.batch_size, "batches": args.batches,
                   "rounds": args.rounds, "seed": args.seed,
                   "ratio": "median over rounds of t_samat/t_torchattacks within the same round"},
        "environment": {**environment(device), "loadavg_1min_before": load_before,
                        "loadavg_1min_after": loadavg()},
        "seconds": {name: {"median": statistics.median(t), "min": min(t), "per_round": t}
                    for name, t in times.items()},
        "ratio": ratio,
        "ratio_min": min(times["samat"]) / min(times["torchattacks"]),
        "target_ratio": TARGET,
        "pass": ratio <= TARGET,
        "identical_without_random_start": identical_without_random_start(workload,
                                                                          args.pgd_steps),
    }
    print(f"PGD-{args.pgd_steps} evaluation, {args.batches} x {args.batch_size} examples, "
          f"{args.rounds} rounds")
    for name, t in results["seconds"].items():
        print(f"{name:<13} median {t['median']:.4f} s  min {t['min']:.4f} s")
    print(f"samat / torchattacks (paired median): {ratio:.3f}  target <= {TARGET:.2f}  "
          f"{'PASS' if results['pass'] else 'FAIL'}   (min/min {results['ratio_min']:.3f})")
    print(f"same adversarial examples without random start: "
          f"{results['identical_without_random_start']}")
    emit_json(results, args.json)
    if args.check and not results["pass"]:
        sys.exit(1)
    return results


if __name__ == "__main__":
    main()
