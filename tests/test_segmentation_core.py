"""Segmentation plugin: real-layout readers, mIoU vs sklearn, PGD bound, end-to-end run, errors."""

from __future__ import annotations

import json
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from segmentation_fixtures import build_stanford, build_voc
from sklearn.metrics import confusion_matrix

from samat import create_attack, create_task
from samat.cli import main
from samat.errors import MissingDataError

ROOT = Path(__file__).resolve().parents[1]


def test_voc_fixture_reads_palette_ids_and_ignore(tmp_path: Path) -> None:
    build_voc(tmp_path)
    task = create_task("segmentation", dataset="voc2012", root=str(tmp_path), crop_size=32)
    assert task.num_classes == 21 and len(task.eval_dataset()) == 2
    image, mask = task.eval_dataset()[0]
    assert image.shape[0] == 3 and image.shape[1:] == mask.shape
    assert 0.0 <= float(image.min()) and float(image.max()) <= 1.0
    assert {0, 15, 255} <= set(mask.unique().tolist())
    x, y = task.collate_fn([task.train_dataset()[i] for i in range(2)])
    assert x.shape == (2, 3, 32, 32) and y.shape == (2, 32, 32)


def test_stanford_fixture_negative_labels_ignored_and_split_deterministic(tmp_path: Path) -> None:
    build_stanford(tmp_path)
    task = create_task("segmentation", dataset="stanford_background", root=str(tmp_path), seed=1)
    _, mask = task.eval_dataset()[0]
    assert (mask[:2] == 255).all() and int(mask[2:].max()) < 8
    again = create_task("segmentation", dataset="stanford_background", root=str(tmp_path), seed=1)
    assert task.eval_dataset().images == again.eval_dataset().images
    assert not set(task.eval_dataset().images) & set(task.train_dataset().images)


def test_missing_voc_root_is_one_line_exit_2(tmp_path: Path, capsys) -> None:
    code = main(["validate", str(ROOT / "recipes/voc_sam.yaml"), f"task.root={tmp_path}/nope",
                 "task.encoder_weights=null"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and "\n" not in err
    assert "VOCdevkit/VOC2012/JPEGImages" in err and "download" in err
    with pytest.raises(MissingDataError):
        create_task("segmentation", dataset="voc2012", root=str(tmp_path))


def test_miou_matches_sklearn_confusion_matrix() -> None:
    task = create_task("segmentation", crop_size=16)
    gen = torch.Generator().manual_seed(0)
    metric = task.new_metric()
    preds, gts = [], []
    for _ in range(3):
        logits = torch.randn(2, 4, 8, 8, generator=gen)
        target = torch.randint(0, 3, (2, 8, 8), generator=gen)  # class 3 never in GT
        target[:, 0] = 255
        metric.update(logits, target)
        preds.append(logits.argmax(1).flatten()), gts.append(target.flatten())
    pred, gt = torch.cat(preds).numpy(), torch.cat(gts).numpy()
    keep = gt != 255
    cm = confusion_matrix(gt[keep], pred[keep], labels=list(range(4)))
    union = cm.sum(0) + cm.sum(1) - np.diag(cm)
    iou = np.diag(cm)[union > 0] / union[union > 0]
    result = metric.compute()
    assert result["miou"] == pytest.approx(100 * iou.mean())
    assert result["pixel_accuracy"] == pytest.approx(100 * np.trace(cm) / cm.sum())
    assert result["n_pixels"] == keep.sum()


def test_loss_ignores_label_255() -> None:
    task = create_task("segmentation", crop_size=16)
    logits = torch.randn(1, 4, 4, 4)
    target = torch.randint(0, 4, (1, 4, 4))
    masked = target.clone()
    masked[0, :2] = 255
    expected = torch.nn.functional.cross_entropy(logits[..., 2:, :], target[..., 2:, :])
    assert task.loss(logits, masked) == pytest.approx(float(expected))
    assert float(task.loss(logits, torch.full_like(target, 255))) == 0.0


def test_core_pgd_respects_bounds_on_segmentation() -> None:
    task = create_task("segmentation", crop_size=32, max_eval=2)
    model = task.build_model().eval()
    x, y = task.collate_fn([task.eval_dataset()[i] for i in range(2)])
    for norm, eps in (("linf", 1 / 255), ("l2", 1.0)):
        attack = create_attack("pgd", model, task=task, norm=norm, eps=eps, alpha=eps / 4,
                               steps=2)
        x_adv = attack(x, y)
        delta = (x_adv - x).flatten(1)
        size = delta.abs().max(1).values if norm == "linf" else delta.norm(dim=1)
        assert (size <= eps + 1e-5).all() and x_adv.min() >= 0 and x_adv.max() <= 1


def test_voc_sam_recipe_end_to_end_on_fixture(tmp_path: Path) -> None:
    build_voc(tmp_path / "data")
    out = tmp_path / "run"
    code = main(["run", str(ROOT / "recipes/voc_sam.yaml"), f"task.root={tmp_path / 'data'}",
                 "task.encoder_weights=null", "task.crop_size=32", "train.iterations=2",
                 "train.batch_size=2", "train.checkpoint_every=null", "eval.attacks.0.steps=1",
                 "eval.attacks.1.steps=1", "device=cpu", f"output_dir={out}"])
    assert code == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["metric"] == "miou" and metrics["training"]["steps"] == 2
    assert metrics["training"]["weight_perturbation"]["name"] == "sam"
    assert metrics["natural"]["n_examples"] == 2 and len(metrics["natural"]["iou_per_class"]) == 21
    assert [a["label"] for a in metrics["attacks"]] == ["pgd-linf-1/255", "pgd-l2-1.0"]
    assert metrics["attacks"][0]["attack"]["eps"] == pytest.approx(1 / 255)


def test_hf_hub_offline_without_cached_weights_fails_at_once(tmp_path: Path,
                                                             monkeypatch) -> None:
    from huggingface_hub import constants
    from segmentation_models_pytorch.encoders import encoders

    from samat_segmentation.models import check_weights_reachable

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(MissingDataError, match="HF_HUB_OFFLINE is set") as error:
        check_weights_reachable("mobilenet_v2", "imagenet")
    assert f"Hugging Face cache ({tmp_path / 'hub'})" in str(error.value)
    check_weights_reachable("tu-resnet18", "imagenet")  # not smp's own weights: smp decides
    revision = encoders["mobilenet_v2"]["pretrained_settings"]["imagenet"]["revision"]
    snapshot = tmp_path / "hub" / "models--smp-hub--mobilenet_v2.imagenet" / "snapshots" / revision
    snapshot.mkdir(parents=True)
    for name in ("config.json", "model.safetensors"):
        (snapshot / name).touch()
    check_weights_reachable("mobilenet_v2", "imagenet")  # cached: no network needed


def test_segmentation_example_losses_skip_ignored_pixels() -> None:
    from samat_segmentation.task import SegmentationTask

    logits, target = torch.randn(4, 3, 2, 2), torch.randint(0, 3, (4, 2, 2))
    target[0] = 255
    target[1, 0] = 255
    losses = SegmentationTask.example_losses(SimpleNamespace(ignore_index=255), logits, target)
    pixel = F.cross_entropy(logits, target.clamp(max=2), reduction="none")
    torch.testing.assert_close(losses, torch.stack([
        torch.tensor(0.0), pixel[1, 1].mean(), pixel[2].mean(), pixel[3].mean()]))


def test_data_roots_as_users_unpack_them(tmp_path: Path) -> None:
    build_voc(tmp_path / "voc")
    for root in ("voc", "voc/VOCdevkit", "voc/VOCdevkit/VOC2012"):
        task = create_task("segmentation", dataset="voc2012", root=str(tmp_path / root))
        assert len(task.eval_dataset()) == 2, root
    build_stanford(tmp_path / "downloads" / "iccv09Data")
    for root in ("downloads", "downloads/iccv09Data"):
        task = create_task("segmentation", dataset="stanford_background",
                           root=str(tmp_path / root), seed=1)
        assert len(task.eval_dataset()) + len(task.train_dataset()) == 6, root


@pytest.mark.parametrize(("dataset", "expected"), [
    ("voc2012", "data/VOCdevkit/VOC2012/JPEGImages/"), ("stanford_background", "data/images/")])
def test_missing_data_names_absolute_paths(tmp_path: Path, monkeypatch, dataset: str,
                                           expected: str) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(MissingDataError) as error:
        create_task("segmentation", dataset=dataset, root="data")
    assert f"expected {tmp_path}/{expected}" in str(error.value)


def test_failed_voc_download_says_how_to_fetch_it_by_hand(tmp_path: Path, monkeypatch) -> None:
    import urllib.error

    from torchvision import datasets

    def offline(*args, **kwargs):
        raise urllib.error.URLError("no network")

    monkeypatch.setattr(datasets, "VOCSegmentation", offline)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(MissingDataError) as error:
        create_task("segmentation", dataset="voc2012", root="data", download=True)
    message = str(error.value)
    assert message.startswith(f"task.download: could not download VOC 2012 into {tmp_path}/data")
    assert f"VOCtrainval_11-May-2012.tar by hand and extract it in {tmp_path}/data/" in message
    assert "download=true" not in message


def test_imagenet_encoder_weights_offline_fail_in_seconds(tmp_path: Path, run_cli) -> None:
    build_voc(tmp_path / "data")
    unreachable = "http://127.0.0.1:9"  # a closed port: every request fails at once, as offline
    start = time.monotonic()
    result = run_cli("validate", "recipes/voc_sam.yaml", f"task.root={tmp_path / 'data'}",
                     cwd=ROOT, env={"HF_HOME": str(tmp_path / "hf"), "HTTPS_PROXY": unreachable,
                                    "https_proxy": unreachable, "HF_HUB_OFFLINE": "0"},
                     timeout=120)
    seconds = time.monotonic() - start
    err = result.stderr.strip().splitlines()
    assert result.returncode == 2 and len(err) == 1, result.stderr
    assert err[0].startswith("samat: error: task.encoder_weights: ") and "unreachable" in err[0]
    assert "smp-hub/mobilenet_v2.imagenet" in err[0] and "encoder_weights=null" in err[0]
    assert seconds < 23  # smp's own retries sleep 1+2+4+8+8 s before failing
