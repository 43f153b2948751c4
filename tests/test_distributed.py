"""Data parallelism on CPU with gloo: torchrun runs equal one process with the same global batch
(SGD, SAM with global ascent, resume), replica ascent equals its hand computation, only rank 0
writes, sharded evaluation equals one process."""

from __future__ import annotations

import copy
import csv
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import yaml
from torch import Tensor, nn
from torch.nn import functional as F
from torch.nn.parallel import DistributedDataParallel

from samat import distributed
from samat import runner as run_module
from samat.data import EpochBatchSampler, batches_per_epoch, eval_loader, train_loader
from samat.errors import SamatError
from samat.interfaces import Accuracy, Metric, Task
from samat.perturb import Identity
from samat.recipe import recipe_from_dict
from samat.train import Trainer
from samat.weight import PlainStep, SAMStep

pytestmark = pytest.mark.usefixtures("fixture_task")

RECIPE = {  # no BatchNorm: per-replica batch statistics would differ from one process's
    "task": {"name": "fixture", "n_train": 512, "n_test": 300, "batchnorm": False},
    "seed": 1,
    "device": "cpu",
    "train": {
        "epochs": 3,
        "batch_size": 64,
        "optimizer": {"name": "sgd", "lr": 0.1, "momentum": 0.9},
        "schedule": {"name": "cosine"},
        "weight_perturbation": {"name": "none"},
        "checkpoint_every": 5,
    },
    "eval": {"batch_size": 64, "attacks": [
        {"name": "pgd", "norm": "linf", "eps": 0.2, "alpha": 0.05, "steps": 3,
         "random_start": False}]},
}


def write_recipe(tmp_path: Path, name: str, **train: object) -> Path:
    data = copy.deepcopy(RECIPE)
    data["train"].update(train)
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def torchrun(*args: str, cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess:
    """``samat run ARGS`` under torchrun with 2 processes (``env`` knows task ``fixture``)."""
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone",
               "--nproc_per_node=2", "-m", "samat", "run", *args]
    done = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stderr[-3000:]
    return done


def weights(run_dir: Path) -> dict[str, Tensor]:
    return torch.load(run_dir / "checkpoints" / "last.pt", weights_only=True)["model"]


def assert_same_run(single: dict, parallel_dir: Path, history: bool = True) -> None:
    """Same weights (1e-5), same evaluation (sharded over 2 ranks), same history."""
    parallel = json.loads((parallel_dir / "metrics.json").read_text())
    ours, reference = weights(parallel_dir), weights(Path(single["run_dir"]))
    assert list(ours) == list(reference) and len(ours) == 4  # 2 linear layers: weight, bias
    for name, tensor in reference.items():
        torch.testing.assert_close(ours[name], tensor, atol=1e-5, rtol=0, msg=name)
    assert parallel["natural"] == single["natural"]
    assert [a["accuracy"] for a in parallel["attacks"]] == [a["accuracy"] for a in
                                                           single["attacks"]]
    assert parallel["attacks"][0]["n_examples"] == 300
    assert parallel["training"]["world_size"] == 2 and single["training"]["world_size"] == 1
    if not history:
        return
    lines = [[json.loads(line) for line in (d / "history.jsonl").open()]
             for d in (parallel_dir, Path(single["run_dir"]))]
    for a, b in zip(*lines, strict=True):
        assert a["train_loss"] == pytest.approx(b["train_loss"], abs=1e-6)
        assert (a["train_accuracy"], a["eval_accuracy"]) == (b["train_accuracy"],
                                                            b["eval_accuracy"])


def test_nproc_sgd_equals_one_process_and_only_rank_0_writes(
        tmp_path: Path, fixture_env: dict[str, str]) -> None:
    recipe = write_recipe(tmp_path, "sgd")
    single = run_module.run(recipe, [f"output_dir={tmp_path / 'single'}"])
    done = subprocess.run([sys.executable, "-m", "samat", "run", "--nproc", "2", str(recipe)],
                          cwd=tmp_path, env=fixture_env, capture_output=True, text=True,
                          timeout=240)
    assert done.returncode == 0, done.stderr[-3000:]
    (run_dir,) = (tmp_path / "runs" / "sgd").iterdir()  # one run directory, made by rank 0
    assert sorted(p.name for p in run_dir.iterdir()) == [
        "checkpoints", "config.yaml", "history.jsonl", "log.txt", "metrics.csv", "metrics.json",
        "model.json", "model.safetensors"]
    assert done.stdout.count("run directory:") == 1  # rank 0 prints the table
    with (run_dir / "metrics.csv").open() as stream:  # rank 0 alone sends events: no row twice
        assert [r["step"] for r in csv.DictReader(stream) if r["event"] == "epoch"] == [
            "8", "16", "24"]
    log = (run_dir / "log.txt").read_text()
    assert log.count("epoch 3/3") == 1 and "2 process(es)" in log
    assert_same_run(single, run_dir)


def test_torchrun_sam_global_ascent_equals_one_process(tmp_path: Path,
                                                       fixture_env: dict[str, str]) -> None:
    recipe = write_recipe(tmp_path, "sam", weight_perturbation={"name": "sam", "rho": 0.1})
    single = run_module.run(recipe, [f"output_dir={tmp_path / 'single'}"])
    torchrun(str(recipe), f"output_dir={tmp_path / 'ddp'}", cwd=tmp_path, env=fixture_env)
    assert_same_run(single, tmp_path / "ddp")


@pytest.mark.slow  # 12 s; the file stays under a minute without it
def test_a_one_process_run_resumes_under_torchrun(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fixture_env: dict[str, str]
) -> None:
    """The global batches do not depend on the number of processes, so a crashed run continues
    in two processes and ends where the uninterrupted one-process run does."""
    recipe = write_recipe(tmp_path, "resume", weight_perturbation={"name": "asam", "rho": 0.5})
    single = run_module.run(recipe, [f"output_dir={tmp_path / 'single'}"])
    original_save = Trainer.save

    def crash(self: Trainer, path: Path, progress: dict | None = None) -> None:
        original_save(self, path, progress)
        if self.progress.step == 10:  # mid-epoch (8 steps per epoch)
            raise KeyboardInterrupt

    monkeypatch.setattr(Trainer, "save", crash)
    with pytest.raises(KeyboardInterrupt):
        run_module.run(recipe, [f"output_dir={tmp_path / 'crashed'}"])
    torchrun(str(recipe), f"output_dir={tmp_path / 'crashed'}", "--resume", cwd=tmp_path,
             env=fixture_env)
    assert_same_run(single, tmp_path / "crashed", history=False)  # the resumed epoch's train
    # loss averages only the steps after the crash, as in one process


@pytest.mark.slow  # 20-40 s on 2 busy cores; the file stays under a minute without it
def test_torchrun_keeps_and_evaluates_the_same_best_checkpoint(
        tmp_path: Path, fixture_env: dict[str, str]) -> None:
    """The periodic evaluation is sharded like the final one: both ranks select the same best
    epoch as one process, rank 0 writes best.pt, every rank evaluates its weights."""
    attack = {"name": "pgd", "norm": "linf", "eps": 0.2, "alpha": 0.05, "steps": 2,
              "random_start": False}
    recipe = write_recipe(tmp_path, "best", eval_attack=attack, keep_best="robust")
    overrides = ["eval.checkpoint=best"]
    single = run_module.run(recipe, [f"output_dir={tmp_path / 'single'}", *overrides])
    torchrun(str(recipe), f"output_dir={tmp_path / 'ddp'}", *overrides, cwd=tmp_path,
             env=fixture_env)
    parallel = json.loads((tmp_path / "ddp" / "metrics.json").read_text())
    assert parallel["checkpoint"] == single["checkpoint"]
    assert parallel["checkpoint"]["name"] == "best"
    assert parallel["natural"] == single["natural"]
    assert sorted(p.name for p in (tmp_path / "ddp" / "checkpoints").iterdir()) == [
        "best.pt", "last.pt"]


# -- in-process groups (torch.multiprocessing) --------------------------------------------------

def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def tiny_problem() -> tuple[nn.Module, Tensor, Tensor]:
    gen = torch.Generator().manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 2))
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=gen))
    return model, torch.randn(8, 3, generator=gen), torch.randint(0, 2, (8,), generator=gen)


class ListTask(Task):
    """Ten fixed examples for a 3-input linear model; ``merge=False`` overrides evaluate."""

    def __init__(self, merge: bool = True) -> None:
        gen = torch.Generator().manual_seed(1)
        self.data = torch.utils.data.TensorDataset(torch.randn(10, 3, generator=gen),
                                                   torch.randint(0, 2, (10,), generator=gen))
        self.calls = 0

    def train_dataset(self) -> torch.utils.data.Dataset:
        return self.data

    def eval_dataset(self) -> torch.utils.data.Dataset:
        return self.data

    def build_model(self) -> nn.Module:
        return nn.Linear(3, 2)


class OwnEvaluateTask(ListTask):
    def evaluate(self, model: nn.Module, batches, attack=None) -> dict:
        self.calls += 1
        return {"accuracy": float(sum(len(y) for _, y in batches)), "n_examples": 0}


def hand_sam_step(ascent: str, rho: float = 0.3, lr: float = 0.5) -> list[Tensor]:
    """One SGD-SAM step of the 2-replica problem, computed by hand from per-half gradients."""
    model, x, y = tiny_problem()
    params = list(model.parameters())
    halves = [(x[:4], y[:4]), (x[4:], y[4:])]

    def grads(at: list[Tensor], xs: Tensor, ys: Tensor) -> list[Tensor]:
        with torch.no_grad():
            for p, v in zip(params, at, strict=True):
                p.copy_(v)
        return list(torch.autograd.grad(F.cross_entropy(model(xs), ys), params))

    w = [p.detach().clone() for p in params]

    def ascend(g: list[Tensor]) -> list[Tensor]:
        norm = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(t) for t in g]))
        return [wi + rho * gi / (norm + 1e-12) for wi, gi in zip(w, g, strict=True)]

    if ascent == "global":
        g = [(a + b) / 2 for a, b in zip(*(grads(w, *h) for h in halves), strict=True)]
        perturbed = [ascend(g)] * 2
    else:
        perturbed = [ascend(grads(w, *h)) for h in halves]
    h = [(a + b) / 2 for a, b in zip(*(grads(p, *half) for p, half in
                                       zip(perturbed, halves, strict=True)), strict=True)]
    return [wi - lr * hi for wi, hi in zip(w, h, strict=True)]


def _worker(rank: int, port: int, out: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), WORLD_SIZE="2",
                      RANK=str(rank), LOCAL_RANK=str(rank))
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=2)
    results: dict = {}
    try:
        for ascent in ("global", "replica"):
            model, x, y = tiny_problem()
            step = SAMStep(model.parameters(), torch.optim.SGD, {"lr": 0.5}, rho=0.3,
                           ascent=ascent)
            part = slice(4 * rank, 4 * rank + 4)
            step.step(DistributedDataParallel(model), F.cross_entropy, x[part], y[part])
            results[ascent] = [p.detach().clone() for p in model.parameters()]

        torch.manual_seed(0)
        task, model = ListTask(), nn.Linear(3, 2)
        seen: list[int] = []

        def batches(r: int, w: int):
            loader = eval_loader(task, task.data, 3, 7, rank=r, world_size=w)
            for xb, yb in loader:
                seen.append(len(yb))
                yield xb, yb

        results["sharded"] = distributed.evaluate(task, model, batches)
        results["seen"] = sum(seen)
        own = OwnEvaluateTask()
        results["own"] = distributed.evaluate(own, model, batches)
        results["own_calls"] = own.calls
        try:
            distributed.on_main(lambda: (_ for _ in ()).throw(SamatError("output_dir: taken")))
        except SamatError as exc:
            results["error"] = str(exc)
        for change, key in [({"batch_size": 9}, "batch"), ({"sync_bn": True}, "sync_bn")]:
            recipe = recipe_from_dict({"task": "list", "train": {"epochs": 1, "batch_size": 4,
                                                                 **change}})
            try:
                step = PlainStep(model.parameters(), torch.optim.SGD, {"lr": 0.1})
                Trainer(recipe, task, model, step, Identity(), torch.device("cpu"))
            except SamatError as exc:
                results[key] = str(exc)
        results["state"] = model.state_dict()
    finally:
        dist.destroy_process_group()
    torch.save(results, Path(out) / f"rank{rank}.pt")


@pytest.fixture(scope="module")
def two_ranks(tmp_path_factory: pytest.TempPathFactory) -> list[dict]:
    out = tmp_path_factory.mktemp("ranks")
    mp.spawn(_worker, args=(free_port(), str(out)), nprocs=2)
    return [torch.load(out / f"rank{r}.pt", weights_only=True) for r in range(2)]


@pytest.mark.parametrize("ascent", ["global", "replica"])
def test_sam_ascent_under_ddp_equals_the_hand_computation(two_ranks: list[dict],
                                                          ascent: str) -> None:
    expected = hand_sam_step(ascent)
    for rank in two_ranks:  # the replicas agree
        for got, want in zip(rank[ascent], expected, strict=True):
            torch.testing.assert_close(got, want, atol=1e-6, rtol=1e-5)
    assert not all(torch.allclose(a, b) for a, b in zip(hand_sam_step("global"),
                                                        hand_sam_step("replica"), strict=True))


def test_sharded_evaluation_equals_one_process(two_ranks: list[dict]) -> None:
    task = ListTask()
    model = nn.Linear(3, 2)
    model.load_state_dict(two_ranks[0]["state"])
    expected = task.evaluate(model, eval_loader(task, task.data, 3, 7))
    assert two_ranks[0]["sharded"] == two_ranks[1]["sharded"] == expected
    assert expected["n_examples"] == 7
    assert [r["seen"] for r in two_ranks] == [3, 4]  # each rank its contiguous share
    # a task with its own evaluate runs on rank 0 alone, over all examples; both get its result
    assert two_ranks[0]["own"] == two_ranks[1]["own"] == {"accuracy": 7.0, "n_examples": 0}
    assert [r["own_calls"] for r in two_ranks] == [1, 0]


def test_errors_under_torchrun_reach_every_rank(two_ranks: list[dict]) -> None:
    for rank in two_ranks:
        assert rank["error"] == "output_dir: taken"
        assert rank["batch"] == ("train.batch_size: 9 is the global batch and must be divisible "
                                 "by the 2 processes; set it to a multiple of 2")
        assert rank["sync_bn"].startswith("train.sync_bn: SyncBatchNorm needs CUDA devices")


# -- single-process pieces ---------------------------------------------------------------------

def test_replica_shards_partition_every_global_batch() -> None:
    class Plain:
        collate_fn = None

    data = torch.utils.data.TensorDataset(torch.arange(103))
    single = [b[0].tolist() for b in train_loader(Plain(), data, 12, 5, 2, 0)]
    shards = [[b[0].tolist() for b in train_loader(Plain(), data, 12, 5, 2, 0, False, r, 3)]
              for r in range(3)]
    assert len(single) == 9 and all(len(s) == 9 for s in shards)
    for i, batch in enumerate(single):
        assert sum((s[i] for s in shards), []) == batch
    assert batches_per_epoch(103, 12, False, 8) == 8  # a last batch of 7 < 8 replicas: skipped
    assert len(EpochBatchSampler(103, 12, torch.Generator(), True, 0, 3)) == 8
    # the order equals a shuffled DataLoader's for the same generator (old runs resume)
    reference = torch.utils.data.DataLoader(
        data, batch_size=12, shuffle=True, generator=torch.Generator().manual_seed(5 * 100_003 + 2))
    assert [b[0].tolist() for b in reference] == single


def test_accuracy_states_merge() -> None:
    """(Every registered task's metric is checked the same way in test_contracts.py.)"""
    gen = torch.Generator().manual_seed(0)
    logits, target = torch.randn(10, 3, generator=gen), torch.randint(0, 3, (10,), generator=gen)
    whole, a, b = (Accuracy() for _ in range(3))
    whole.update(logits, target)
    a.update(logits[:3], target[:3])
    b.update(logits[3:], target[3:])
    a.load_state([x + y for x, y in zip(a.state(), b.state(), strict=True)])
    assert a.compute() == whole.compute() and whole.compute()["n_examples"] == 10
    accuracy = Accuracy()
    accuracy.load_state([torch.tensor([3, 4])])
    assert accuracy.compute() == {"accuracy": 75.0, "n_examples": 4}


def test_metrics_without_state_are_not_shardable() -> None:
    class Mean(Metric):
        def update(self, output: Tensor, target: Tensor) -> None: ...

        def compute(self) -> dict[str, float]:
            return {"accuracy": 0.0}

    class MeanTask(ListTask):
        def new_metric(self) -> Metric:
            return Mean()

    assert distributed.shardable(ListTask()) and not distributed.shardable(MeanTask())
    assert not distributed.shardable(OwnEvaluateTask())


def test_device_under_torchrun(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("LOCAL_RANK", "1")
    assert distributed.resolve_device("cpu") == torch.device("cpu")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert distributed.resolve_device("auto") == torch.device("cuda", 1)
    assert distributed.resolve_device("cuda") == torch.device("cuda", 1)
    with pytest.raises(SamatError, match=r"device: 'cuda:0' under torchrun; use auto, cuda \(each"):
        distributed.resolve_device("cuda:0")


@pytest.mark.parametrize(("args", "message"), [
    (["--nproc", "0"], "--nproc: must be >= 1, got 0"),
    (["--nproc", "3"], "train.batch_size: 64 is the global batch and must be divisible by the "
                       "3 processes"),
])
def test_nproc_errors_are_one_line(tmp_path: Path, capsys: pytest.CaptureFixture, args: list,
                                   message: str) -> None:
    from samat.cli import main

    assert main(["run", *args, str(write_recipe(tmp_path, "bad"))]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err, err
    assert not (tmp_path / "runs").exists()
