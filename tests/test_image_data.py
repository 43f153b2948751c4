"""Image datasets read from fixtures in their real on-disk formats; missing-data errors."""

from __future__ import annotations

import pickle
import urllib.error
from pathlib import Path

import numpy as np
import pytest
import torch
from image_fixtures import (
    CIFAR_STYLES,
    TINY_WNIDS,
    MarkerPayload,
    make_cifar10,
    make_cifar100,
    make_imagefolder,
    make_tinyimagenet,
)

from samat.cli import main
from samat.errors import MissingDataError, SamatError
from samat_image import data
from samat_image.task import ImageClassificationTask


def _torchvision_reading(monkeypatch: pytest.MonkeyPatch, cls_name: str, root: Path,
                         train: bool) -> tuple[np.ndarray, list[int]]:
    """What torchvision reads from the same files, its md5 check (official files only) off."""
    from torchvision.datasets import cifar

    monkeypatch.setattr(cifar, "check_integrity", lambda *args, **kwargs: True)
    dataset = getattr(cifar, cls_name)(str(root), train=train, download=False)
    return dataset.data, dataset.targets


@pytest.mark.parametrize(("name", "make", "cls_name", "sizes", "classes"), [
    ("cifar10", make_cifar10, "CIFAR10", (20, 8), 10),
    ("cifar100", make_cifar100, "CIFAR100", (12, 6), 100),
])
def test_cifar_pickles_read_like_torchvision(tmp_path, monkeypatch, name, make, cls_name, sizes,
                                             classes):
    make(tmp_path)
    splits = data.load_cifar(name, tmp_path, download=False, augment_train=False)
    assert (len(splits.train), len(splits.test)) == sizes
    assert (splits.num_classes, splits.in_channels, splits.img_size) == (classes, 3, 32)
    for dataset, train in ((splits.train, True), (splits.test, False)):
        images, targets = _torchvision_reading(monkeypatch, cls_name, tmp_path, train)
        xs = torch.stack([dataset[i][0] for i in range(len(dataset))])
        assert xs.dtype == torch.float32 and xs.shape[1:] == (3, 32, 32)
        assert 0.0 <= xs.min() and xs.max() <= 1.0
        # torchvision's HWC uint8 images, as CHW in [0, 1]
        expected = torch.from_numpy(images).permute(0, 3, 1, 2).float() / 255
        torch.testing.assert_close(xs, expected)
        assert [dataset[i][1] for i in range(len(dataset))] == list(targets)


@pytest.mark.parametrize("style", [s for s in CIFAR_STYLES if s != "array"])
@pytest.mark.parametrize(("name", "make"), [("cifar10", make_cifar10), ("cifar100", make_cifar100)])
def test_cifar_pickle_styles_read_alike(tmp_path, name, make, style):
    """Python 2 originals, bytes-keyed copies, list data and protocol 5 all give the same sets."""
    make(tmp_path / "array")
    make(tmp_path / style, style=style)
    reference, other = (data.load_cifar(name, tmp_path / s, download=False, augment_train=False)
                        for s in ("array", style))
    for split in ("train", "test"):
        a, b = getattr(reference, split), getattr(other, split)
        assert torch.equal(a.images, b.images) and torch.equal(a.labels, b.labels)
        assert b.images.dtype == torch.uint8 and b.labels.dtype == torch.int64


def _cifar_payload(tmp_path: Path, file: str) -> tuple[Path, Path]:
    """CIFAR-10 under tmp_path/data whose ``file`` hides code (in its filenames/label names)
    that writes the returned marker when unpickled; returns (root, marker)."""
    root, marker = make_cifar10(tmp_path / "data"), tmp_path / "marker"
    path = root / "cifar-10-batches-py" / file
    entry = pickle.loads(path.read_bytes())
    key = "label_names" if file == "batches.meta" else "filenames"
    entry[key] = [*entry[key][:-1], MarkerPayload(marker)]
    path.write_bytes(pickle.dumps(entry, protocol=2))
    return root, marker


@pytest.mark.parametrize("file", ["data_batch_3", "batches.meta"])
def test_cifar_payload_is_refused_under_validate(tmp_path, capsys, root, file):
    data_root, marker = _cifar_payload(tmp_path, file)
    code = main(["validate", str(root / "recipes/digits/sgd.yaml"), "task.dataset=cifar10",
                 f"task.root={data_root}"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and not marker.exists()
    assert len(err.splitlines()) == 1, err
    assert err.startswith("samat: error: task.root: ") and file in err
    assert "'builtins.exec'" in err and "may be malicious" in err and "task.download=true" in err


@pytest.mark.parametrize(("change", "message"), [
    ({"labels": [0, 1]}, "'labels' must be 4 integers"),
    ({"labels": [0, 1, 2, 10]}, r"integers in 0\.\.9"),
    ({"data": np.zeros((4, 100), np.uint8)}, "N x 3072 pixel values"),
    ({"data": [["x"] * 3072] * 4}, "N x 3072 pixel values"),
    ({"data": None}, "N x 3072 pixel values"),
])
def test_malformed_cifar_batch_is_one_line_error(tmp_path, change, message):
    make_cifar10(tmp_path)
    path = tmp_path / "cifar-10-batches-py" / "data_batch_2"
    path.write_bytes(pickle.dumps({**pickle.loads(path.read_bytes()), **change}))
    with pytest.raises(MissingDataError, match=message) as info:
        data.load_cifar("cifar10", tmp_path, download=False, augment_train=False)
    assert str(path) in str(info.value) and "\n" not in str(info.value)


def test_cifar_file_that_is_not_a_dict_is_refused(tmp_path):
    make_cifar10(tmp_path)
    path = tmp_path / "cifar-10-batches-py" / "test_batch"
    path.write_bytes(pickle.dumps([1, 2, 3]))
    with pytest.raises(MissingDataError, match="test_batch is not a CIFAR-10 pickle .*got list"):
        data.load_cifar("cifar10", tmp_path, download=False, augment_train=False)
    path.write_bytes(b"not a pickle")
    with pytest.raises(SamatError, match="test_batch: not a readable pickle"):
        data.load_cifar("cifar10", tmp_path, download=False, augment_train=False)


def test_tinyimagenet_tree_resized_and_labelled_by_annotations(tmp_path):
    make_tinyimagenet(tmp_path, per_class=3, n_val=6)
    splits = data.load_tinyimagenet(tmp_path, download=False, size=32, augment_train=False)
    assert (len(splits.train), len(splits.test), splits.num_classes) == (9, 6, 3)
    x, y = splits.test[4]
    assert x.shape == (3, 32, 32) and 0.0 <= x.min() and x.max() <= 1.0
    # val_4 is annotated with TINY_WNIDS[4 % 3]; labels index the sorted wnids
    assert y == sorted(TINY_WNIDS).index(TINY_WNIDS[4 % 3])
    grey, label = splits.train[0]  # a greyscale JPEG becomes 3 equal channels
    assert label == 0 and torch.equal(grey[0], grey[1]) and torch.equal(grey[1], grey[2])
    full = data.load_tinyimagenet(tmp_path, download=False, size=None, augment_train=False)
    assert full.test[0][0].shape == (3, 64, 64) and full.img_size == 64
    # brightness encodes the label in the fixture: the classes stay apart after decoding
    means = [float(splits.train[i][0].mean()) for i in (0, 3, 6)]
    assert means == sorted(means)


def test_imagefolder_and_its_statistics(tmp_path):
    make_imagefolder(tmp_path, classes=("cat", "dog"), per_class=3, side=24)
    splits = data.load_imagefolder(tmp_path, size=None, augment_train=False)
    assert (len(splits.train), len(splits.test), splits.num_classes, splits.img_size) == (6, 6, 2,
                                                                                          24)
    pixels = torch.stack([splits.train[i][0] for i in range(6)])
    torch.testing.assert_close(torch.tensor(splits.mean), pixels.mean(dim=(0, 2, 3)))
    assert data.load_imagefolder(tmp_path, size=16, augment_train=False).test[0][0].shape == (
        3, 16, 16)


def test_digits_split_is_stratified_and_seeded():
    a, b, c = (data.load_digits(seed, augment_train=False) for seed in (0, 0, 1))
    assert (len(a.train), len(a.test)) == (1437, 360)
    assert (a.in_channels, a.img_size, a.num_classes) == (1, 16, 10)
    assert torch.equal(a.test.images, b.test.images) and not torch.equal(a.test.images,
                                                                         c.test.images)
    counts = torch.bincount(a.test.labels, minlength=10)
    assert counts.min() >= 35 and counts.max() <= 37  # 20% of ~180 per class
    assert 0.0 <= a.train.images.min() and a.train.images.max() <= 1.0
    torch.testing.assert_close(torch.tensor(a.mean[0]), a.train.images.mean())


def test_augmentation_is_random_on_training_data_only(tmp_path):
    make_cifar10(tmp_path)
    task = ImageClassificationTask(dataset="cifar10", root=str(tmp_path), model="small_cnn")
    train, test = task.train_dataset(), task.eval_dataset()
    torch.manual_seed(0)
    draws = [train[0][0] for _ in range(8)]
    assert any(not torch.equal(draws[0], d) for d in draws[1:])
    raw = train.images[0].float() / 255
    for d in draws:  # a shifted (zero-padded) crop of the image, possibly mirrored
        assert d.shape == raw.shape and 0.0 <= d.min() and d.max() <= 1.0
    assert all(torch.equal(test[0][0], test[0][0]) for _ in range(3))
    plain = ImageClassificationTask(dataset="cifar10", root=str(tmp_path), model="small_cnn",
                                    augment=False).train_dataset()
    assert torch.equal(plain[0][0], raw)


def test_augment_crop_is_the_padded_image_shifted():
    torch.manual_seed(3)
    x = torch.rand(3, 32, 32)
    out = data.augment(x, flip=False)
    padded = torch.nn.functional.pad(x, (4, 4, 4, 4))
    windows = [padded[:, i : i + 32, j : j + 32] for i in range(9) for j in range(9)]
    assert any(torch.equal(out, w) for w in windows)


@pytest.mark.parametrize(("dataset", "expected", "hint"), [
    ("cifar10", "cifar-10-batches-py", "task.download=true"),
    ("cifar100", "cifar-100-python", "task.download=true"),
    ("tinyimagenet", "tiny-imagenet-200", "val/val_annotations.txt"),
    ("imagefolder", "empty", "train/<class>/<image>"),
])
def test_missing_data_is_one_line_exit_2(tmp_path, capsys, root, dataset, expected, hint):
    empty = tmp_path / "empty"
    empty.mkdir()
    code = main(["validate", str(root / "recipes/digits/sgd.yaml"), f"task.dataset={dataset}",
                 f"task.root={empty}"])
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert len(err.splitlines()) == 1, err
    assert str(empty.resolve()) in err and expected in err and hint in err


def test_failed_download_is_a_missing_data_error(tmp_path, monkeypatch):
    from torchvision import datasets

    def offline(*args, **kwargs):
        raise urllib.error.URLError("no network")

    monkeypatch.setattr(datasets.CIFAR10, "__init__", offline)
    with pytest.raises(MissingDataError, match="fetching cifar10 into .*URLError"):
        data.load_cifar("cifar10", tmp_path, download=True, augment_train=True)


def test_task_root_expands_home_and_relative_roots_show_absolute_paths(tmp_path, monkeypatch,
                                                                       capsys, root):
    monkeypatch.setenv("HOME", str(tmp_path))
    make_imagefolder(tmp_path / "pets", classes=("cat", "dog"), per_class=2, side=8)
    task = ImageClassificationTask(dataset="imagefolder", root="~/pets", model="small_cnn")
    assert task.root == tmp_path / "pets" and task.splits().num_classes == 2
    monkeypatch.chdir(tmp_path)
    code = main(["validate", str(root / "recipes/digits/sgd.yaml"), "task.dataset=cifar10",
                 "task.root=data"])
    err = capsys.readouterr().err
    assert code == 2 and f"expected {tmp_path / 'data' / 'cifar-10-batches-py'}/ holding" in err
    assert f"(now {tmp_path / 'data'})" in err
