"""samat's standard AutoAttack against the reference implementation (fra31/auto-attack, the
``pyautoattack`` package RobustBench runs): robust accuracy and seconds per image, same model,
same images, one run.

Model: samat_image's CIFAR PreActResNet-18 (``--width`` channels in the first stage; 64 in the
paper), normalisation inside, trained briefly (``--epochs`` of Adam, plain cross-entropy) on
synthetic CIFAR-shaped data made here without downloads: 10 classes, each a fixed random
low-frequency colour pattern (4x4x3 Gaussian noise upsampled bilinearly to 32x32), shown at a
random cyclic shift of up to ±4 px with per-pixel Gaussian noise, clipped to [0, 1]. An
untrained model's robust accuracy means nothing; this one learns the classes, and ``--eps`` is
chosen so that robust accuracy is neither 0 nor its clean accuracy.

``samat``: ``samat.create_attack("autoattack", model, task=task, norm=..., eps=...)`` (what a
recipe's ``eval.attacks`` entry builds; seed 0) on the ``--n`` held-out images in one batch.
``reference``: ``pyautoattack.AutoAttack(model, norm=..., eps=..., version="standard", seed=0)``
and ``run_standard_evaluation`` (batch size 250, so also one batch). Both run on the same thread
count (``--threads``, 1 by default), samat first. Seconds per image = wall time of the whole
evaluation / ``--n`` (every image, also those misclassified from the start); the CPU seconds
of the process are recorded beside it (on a shared machine the wall time also counts waiting for
a core). See docs/attacks.md.

Usage::

    python benchmarks/autoattack_reference.py [--norm l2 --eps 0.5] [--json out.json]
"""

from __future__ import annotations

import argparse
import logging
import time
from typing import Any

import torch
from step_cost import (
    CIFAR10_MEAN,
    CIFAR10_STD,
    NUM_CLASSES,
    BenchClassification,
    emit_json,
    environment,
    loadavg,
    resolve_device,
)
from torch import Tensor, nn
from torch.nn import functional as F
from torch.utils.data import TensorDataset

from samat.factories import create_attack

REFERENCE_NORMS = {"linf": "Linf", "l2": "L2"}


def synthetic_cifar(n: int, seed: int, split: int) -> tuple[Tensor, Tensor]:
    """``n`` 3x32x32 images in [0, 1] of 10 learnable classes (module docstring): the class
    patterns depend on ``seed`` only, the images drawn from them on ``split`` too."""
    patterns = F.interpolate(
        torch.randn(NUM_CLASSES, 3, 4, 4, generator=torch.Generator().manual_seed(seed)),
        size=32, mode="bilinear", align_corners=False)
    gen = torch.Generator().manual_seed(seed + 1 + split)
    y = torch.randint(0, NUM_CLASSES, (n,), generator=gen)
    shifts = torch.randint(-4, 5, (n, 2), generator=gen)
    x = torch.stack([torch.roll(patterns[c], (int(dy), int(dx)), dims=(1, 2))
                     for c, (dy, dx) in zip(y.tolist(), shifts, strict=True)])
    x = 0.5 + 0.15 * x + 0.15 * torch.randn(x.shape, generator=gen)
    return x.clamp(0, 1), y


def train(model: nn.Module, x: Tensor, y: Tensor, epochs: int, seed: int) -> float:
    """Adam (lr 2e-3, batch 128, cross-entropy); returns the seconds it took."""
    torch.manual_seed(seed)
    optimizer = torch.optim.Adam(model.parameters(), lr=2e-3)
    model.train()
    start = time.perf_counter()
    for _ in range(epochs):
        for idx in torch.randperm(len(x)).split(128):
            optimizer.zero_grad()
            F.cross_entropy(model(x[idx]), y[idx]).backward()
            optimizer.step()
    model.eval()
    return time.perf_counter() - start


def robust(model: nn.Module, x_adv: Tensor, y: Tensor) -> Tensor:
    with torch.no_grad():
        return model(x_adv).argmax(1) == y


def timed(run: Any) -> tuple[Tensor, float, float]:
    """``run()``, its wall seconds and the CPU seconds this process spent in it."""
    wall, cpu = time.perf_counter(), time.process_time()
    out = run()
    return out, time.perf_counter() - wall, time.process_time() - cpu


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--width", type=int, default=16, help="PRN-18 first-stage width (16)")
    parser.add_argument("--n", type=int, default=16, help="evaluated images (16)")
    parser.add_argument("--n-train", type=int, default=2048, help="training images (2048)")
    parser.add_argument("--epochs", type=int, default=2, help="training epochs (2)")
    parser.add_argument("--norm", choices=tuple(REFERENCE_NORMS), default="linf")
    parser.add_argument("--eps", type=float, default=8 / 255, help="radius (8/255)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (1)")
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="cpu")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", default="-", metavar="PATH",
                        help="write the JSON results here; '-' (default) prints it to stdout")
    args = parser.parse_args(argv)
    for key in ("width", "n", "n_train", "epochs", "threads"):
        if getattr(args, key) < 1:
            parser.error(f"--{key.replace('_', '-')} must be >= 1")
    if args.eps <= 0:
        parser.error("--eps must be > 0")
    return args


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Train, attack with both implementations, print a summary, write/print the JSON."""
    args = parse_args(argv)
    threads = torch.get_num_threads()
    torch.set_num_threads(args.threads)
    try:
        return _compare(args)
    finally:
        torch.set_num_threads(threads)


def _compare(args: argparse.Namespace) -> dict[str, Any]:
    from pyautoattack import AutoAttack

    from samat_image.models import build_model

    logging.getLogger("auto-attack").setLevel(logging.WARNING)
    device = resolve_device(args.device)
    x_train, y_train = synthetic_cifar(args.n_train, args.seed, split=0)
    x, y = synthetic_cifar(args.n, args.seed, split=1)
    x_train, y_train, x, y = (t.to(device) for t in (x_train, y_train, x, y))

    def make() -> nn.Module:
        return build_model("preactresnet18", NUM_CLASSES, 3, 32, CIFAR10_MEAN, CIFAR10_STD,
                           width=args.width)

    torch.manual_seed(args.seed)
    model = make().to(device)
    train_s = train(model, x_train, y_train, args.epochs, args.seed)
    clean = robust(model, x, y)
    task = BenchClassification(TensorDataset(x.cpu(), y.cpu()), make)
    ours = create_attack("autoattack", model, task=task, norm=args.norm, eps=args.eps)
    reference = AutoAttack(model, norm=REFERENCE_NORMS[args.norm], eps=args.eps,
                           version="standard", seed=0, device=device)
    load_before = loadavg()
    x_ours, t_ours, cpu_ours = timed(lambda: ours(x, y))
    x_ref, t_ref, cpu_ref = timed(
        lambda: reference.run_standard_evaluation(x, y, batch_size=250)[0])
    flags = {"samat": robust(model, x_ours, y), "reference": robust(model, x_ref, y)}
    n = args.n
    results: dict[str, Any] = {
        "config": {
            "model": f"samat_image PreActResNet-18 [2,2,2,2], width {args.width}, eval mode",
            "width": args.width,
            "n_parameters": sum(p.numel() for p in model.parameters()),
            "data": "synthetic CIFAR-shaped (3x32x32, 10 classes; see the module docstring)",
            "n_train": args.n_train, "epochs": args.epochs, "train_s": train_s,
            "n_images": n, "norm": args.norm, "eps": args.eps, "seed": args.seed,
            "samat": ours.describe(),
            "reference": {"package": "pyautoattack", "version": _version("pyautoattack"),
                          "call": "AutoAttack(model, norm, eps, version='standard', seed=0)"
                                  ".run_standard_evaluation(x, y, batch_size=250)",
                          "attacks": reference.attacks_to_run},
            "order": "samat, then reference",
        },
        "environment": {**environment(device), "loadavg_1min_before": load_before,
                        "loadavg_1min_after": loadavg()},
        "clean_accuracy": 100 * clean.float().mean().item(),
        "robust_accuracy": {k: 100 * v.float().mean().item() for k, v in flags.items()},
        "robust_count": {k: int(v.sum()) for k, v in flags.items()},
        "flags_agree": int((flags["samat"] == flags["reference"]).sum()),
        "identical_adversarial_examples": bool(torch.equal(x_ours, x_ref)),
        "seconds": {"samat": t_ours, "reference": t_ref},
        "seconds_per_image": {"samat": t_ours / n, "reference": t_ref / n},
        "ratio": t_ours / t_ref,
        "cpu_seconds": {"samat": cpu_ours, "reference": cpu_ref},
        "cpu_seconds_per_image": {"samat": cpu_ours / n, "reference": cpu_ref / n},
        "cpu_ratio": cpu_ours / cpu_ref,
    }
    print(f"AutoAttack standard {args.norm} eps {args.eps:.5g} on {n} images, PreActResNet-18 "
          f"width {args.width}, {torch.get_num_threads()} thread(s), {device}")
    print(f"clean accuracy {results['clean_accuracy']:.2f}%")
    for name in ("samat", "reference"):
        print(f"{name:<10} robust accuracy {results['robust_accuracy'][name]:6.2f}%  "
              f"wall {results['seconds_per_image'][name]:6.2f} s/image  "
              f"CPU {results['cpu_seconds_per_image'][name]:6.2f} s/image")
    print(f"samat / reference: wall {results['ratio']:.3f}, CPU {results['cpu_ratio']:.3f}; "
          f"per-example robust flags agree on "
          f"{results['flags_agree']}/{n}; identical adversarial examples: "
          f"{results['identical_adversarial_examples']}")
    emit_json(results, args.json)
    return results


def _version(package: str) -> str:
    from importlib.metadata import version

    return version(package)


if __name__ == "__main__":
    main()
