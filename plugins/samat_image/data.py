"""Image datasets in [0, 1]: CIFAR-10/100, TinyImageNet, a generic image folder and digits.

Every dataset yields ``(x, y)`` with ``x`` a float ``(C, H, W)`` tensor in ``[0, 1]`` and ``y`` an
int. Training augmentation (the paper's random crop with 4-pixel zero padding plus horizontal
flip) is applied per item on tensors, with torch's global RNG (which the trainer checkpoints).

CIFAR pickles are read directly in their standard layout: torchvision's ``CIFAR10`` verifies the
md5 of every file on load, which only the official files pass, so torchvision is used here for
``download`` only. They are unpickled with :func:`samat.load_pickle`, allowing only the numpy
array globals real (and re-packaged) CIFAR files hold (:data:`CIFAR_GLOBALS`): a file under
``task.root`` cannot run code, even under ``samat validate``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor
from torch.nn import functional as F
from torch.utils.data import Dataset

from samat import MissingDataError, load_pickle

DATASETS = ("cifar10", "cifar100", "tinyimagenet", "imagefolder", "digits")

# Per-channel statistics of the training sets (the standard published values).
CIFAR10_STATS = ((0.4914, 0.4822, 0.4465), (0.2471, 0.2435, 0.2616))
CIFAR100_STATS = ((0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762))
TINYIMAGENET_STATS = ((0.4802, 0.4481, 0.3975), (0.2302, 0.2265, 0.2262))

DIGITS_SIZE = 16
"""Digits are upsampled from 8x8 to this side: strided CIFAR models (PRN-18 halves the side 3
times, DeiT uses 2x2 patches) need more than 8 pixels, and 16 costs a quarter of 32 on a CPU."""
DIGITS_TEST_FRACTION = 0.2


def augment(x: Tensor, flip: bool = True) -> Tensor:
    """Random crop of the input's own size after zero padding ``side // 8`` (4 for 32x32, as in
    the paper), then a random horizontal flip if ``flip``."""
    h, w = x.shape[-2:]
    pad = max(1, h // 8)
    padded = F.pad(x, (pad, pad, pad, pad))
    i, j = (int(v) for v in torch.randint(0, 2 * pad + 1, (2,)))
    x = padded[..., i : i + h, j : j + w]
    if flip and bool(torch.rand(()) < 0.5):
        x = x.flip(-1)
    return x


class TensorImages(Dataset):
    """In-memory images: ``uint8`` (N, C, H, W) scaled by 1/255, or float already in [0, 1]."""

    def __init__(self, images: Tensor, labels: Tensor, train_augment: bool = False,
                 flip: bool = True) -> None:
        if len(images) != len(labels):
            raise ValueError(f"{len(images)} images but {len(labels)} labels")
        self.images, self.labels = images, labels.long()
        self.train_augment, self.flip = train_augment, flip

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> tuple[Tensor, int]:
        x = self.images[index]
        x = x.float() / 255.0 if x.dtype == torch.uint8 else x
        if self.train_augment:
            x = augment(x, flip=self.flip)
        return x, int(self.labels[index])


class FileImages(Dataset):
    """Images decoded from files on access (RGB), optionally resized to ``size`` x ``size``."""

    def __init__(self, paths: Sequence[Path], labels: Sequence[int], size: int | None,
                 train_augment: bool = False) -> None:
        self.paths, self.labels = list(paths), list(labels)
        self.size, self.train_augment = size, train_augment

    def __len__(self) -> int:
        return len(self.paths)

    def load(self, index: int) -> Tensor:
        """The un-augmented image ``index`` as a float (3, H, W) tensor in [0, 1]."""
        from PIL import Image

        with Image.open(self.paths[index]) as image:
            image = image.convert("RGB")
            if self.size is not None and image.size != (self.size, self.size):
                image = image.resize((self.size, self.size), Image.Resampling.BILINEAR)
            array = np.asarray(image, dtype=np.uint8).copy()
        return torch.from_numpy(array).permute(2, 0, 1).float() / 255.0

    def __getitem__(self, index: int) -> tuple[Tensor, int]:
        x = self.load(index)
        return (augment(x) if self.train_augment else x), self.labels[index]


@dataclass
class Splits:
    """Train and test sets with the facts a model and the results need."""

    train: Dataset
    test: Dataset
    num_classes: int
    in_channels: int
    img_size: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    source: str
    classes: tuple[str, ...] | None = None
    """Class names in label order, where the data name them."""


def _missing(what: str, directory: Path, layout: str, fix: str) -> MissingDataError:
    return MissingDataError(
        f"task.root: {what} not found: expected {directory.resolve()}/ holding {layout}; {fix}"
    )


def _download_fix(root: Path, folder: str) -> str:
    return (f"set task.download=true to fetch it, or task.root=DIR with DIR the directory "
            f"containing {folder}/ (now {root.resolve()})")


_NUMPY_MODULES = ("numpy.core.multiarray", "numpy._core.multiarray")  # numpy 1 / numpy 2
CIFAR_GLOBALS = frozenset(
    {(m, "_reconstruct") for m in _NUMPY_MODULES} | {(m, "scalar") for m in _NUMPY_MODULES}
    | {("numpy.core.numeric", "_frombuffer"), ("numpy._core.numeric", "_frombuffer")}
    | {("numpy", "ndarray"), ("numpy", "dtype")}
)
"""Globals a CIFAR pickle may name: numpy array and scalar reconstruction (numpy 1 and 2
module names, protocol 2 and 5 forms). Dicts, lists, str, bytes and ints need none."""


def _read_pickle(path: Path, kind: str) -> dict[str, object]:
    """The dict pickled at ``path`` with ``str`` keys (``b'data'`` and ``'data'`` alike),
    decoded as ``pickle.load(encoding="latin1")`` would, no code run."""
    fix = f"replace it with the original {kind} file (task.download=true fetches it)"
    entry = load_pickle(path, CIFAR_GLOBALS, encoding="latin1",
                        what=f"task.root: {path.resolve()}",
                        hint=fix)
    if not isinstance(entry, dict) or not all(isinstance(k, (str, bytes)) for k in entry):
        raise MissingDataError(f"task.root: {path.resolve()} is not a {kind} pickle (expected a "
                               f"dict with str or bytes keys, got {type(entry).__name__}); {fix}")
    return {k.decode("latin1") if isinstance(k, bytes) else k: v for k, v in entry.items()}


def _cifar_batch(entry: dict[str, object], label_key: str,
                 num_classes: int) -> tuple[np.ndarray, list[int]]:
    """``(N, 3, 32, 32)`` uint8 images and N int labels, or ``ValueError`` saying what is off."""
    if "data" not in entry or label_key not in entry:
        raise ValueError(f"needs 'data' and '{label_key}'")
    data, side = np.asarray(entry["data"]), 3 * 32 * 32
    if data.dtype.kind not in "iu" or data.size % side or (
            data.dtype != np.uint8 and data.size and (data.min() < 0 or data.max() > 255)):
        raise ValueError("'data' must hold N x 3072 pixel values in 0..255")
    labels, n = np.asarray(entry[label_key]), data.size // side
    if labels.shape != (n,) or (n and (labels.dtype.kind not in "iu" or labels.min() < 0
                                       or labels.max() >= num_classes)):
        raise ValueError(f"'{label_key}' must be {n} integers in 0..{num_classes - 1}")
    return data.astype(np.uint8, copy=False).reshape(n, 3, 32, 32), labels.tolist()


def load_cifar(name: str, root: Path, download: bool, augment_train: bool) -> Splits:
    """CIFAR-10 (``cifar-10-batches-py``) or CIFAR-100 (``cifar-100-python``) pickles."""
    if name == "cifar10":
        folder, train_files, test_files = (
            "cifar-10-batches-py", [f"data_batch_{i}" for i in range(1, 6)], ["test_batch"])
        meta, label_key, num_classes, stats = "batches.meta", "labels", 10, CIFAR10_STATS
    else:
        folder, train_files, test_files = "cifar-100-python", ["train"], ["test"]
        meta, label_key, num_classes, stats = "meta", "fine_labels", 100, CIFAR100_STATS
    directory, kind = root / folder, name.upper().replace("CIFAR", "CIFAR-")
    files = [*train_files, *test_files, meta]
    if download:
        _download_cifar(name, root)
    missing = [f for f in files if not (directory / f).is_file()]
    if missing:
        partial = f"; missing: {', '.join(missing)}" if len(missing) < len(files) else ""
        layout = f"{', '.join(files)} (the python pickle version{partial})"
        raise _missing(kind, directory.resolve(), layout, _download_fix(root.resolve(), folder))

    def read(names: list[str]) -> tuple[Tensor, Tensor]:
        data, labels = [], []
        for n in names:
            try:
                images, targets = _cifar_batch(_read_pickle(directory / n, kind), label_key,
                                               num_classes)
            except ValueError as error:
                raise MissingDataError(
                    f"task.root: {(directory / n).resolve()} is not a {name} pickle ({error}); "
                    "re-download it with task.download=true") from None
            data.append(images)
            labels.extend(targets)
        return torch.from_numpy(np.concatenate(data)), torch.tensor(labels, dtype=torch.long)

    names_key = "label_names" if name == "cifar10" else "fine_label_names"
    classes = _label_names(_read_pickle(directory / meta, kind).get(names_key), num_classes)
    train, test = read(train_files), read(test_files)
    return Splits(TensorImages(*train, train_augment=augment_train), TensorImages(*test),
                  num_classes, 3, 32, *stats, source=str(directory), classes=classes)


def _label_names(names: object, num_classes: int) -> tuple[str, ...] | None:
    """CIFAR meta's label names (str or latin-1 bytes), None unless there is one per class."""
    if not isinstance(names, list | tuple) or len(names) != num_classes:
        return None
    decoded = [n.decode("latin1") if isinstance(n, bytes) else n for n in names]
    return tuple(decoded) if all(isinstance(n, str) for n in decoded) else None


def _download_cifar(name: str, root: Path) -> None:
    from torchvision import datasets

    cls = datasets.CIFAR10 if name == "cifar10" else datasets.CIFAR100
    try:
        cls(str(root), train=True, download=True)
    except (OSError, RuntimeError) as error:
        raise MissingDataError(
            f"task.download: fetching {name} into {root.resolve()} failed "
            f"({type(error).__name__}: {error}); place the data there or check the network"
        ) from None


TINY_URL = "http://cs231n.stanford.edu/tiny-imagenet-200.zip"


def load_tinyimagenet(root: Path, download: bool, size: int | None,
                      augment_train: bool) -> Splits:
    """The standard ``tiny-imagenet-200/`` tree; the labelled ``val`` split is the test set."""
    directory = root / "tiny-imagenet-200"
    if download and not (directory / "wnids.txt").is_file():
        from torchvision.datasets.utils import download_and_extract_archive

        try:
            download_and_extract_archive(TINY_URL, str(root))
        except (OSError, RuntimeError) as error:
            raise MissingDataError(
                f"task.download: fetching {TINY_URL} into {root.resolve()} failed "
                f"({type(error).__name__}: {error}); place the data there or check the network"
            ) from None
    layout = ("wnids.txt, train/<wnid>/images/*.JPEG, val/images/*.JPEG and "
              "val/val_annotations.txt")
    annotations = directory / "val" / "val_annotations.txt"
    if not (directory / "wnids.txt").is_file() or not annotations.is_file():
        raise _missing("TinyImageNet", directory.resolve(), layout,
                       _download_fix(root.resolve(), "tiny-imagenet-200"))
    wnids = sorted((directory / "wnids.txt").read_text().split())
    index = {w: i for i, w in enumerate(wnids)}
    train_paths, train_labels = [], []
    for wnid in wnids:
        images = sorted((directory / "train" / wnid / "images").glob("*.JPEG"))
        if not images:
            raise _missing(f"TinyImageNet class {wnid}", (directory / "train" / wnid).resolve(),
                           "images/*.JPEG", "re-extract tiny-imagenet-200.zip")
        train_paths += images
        train_labels += [index[wnid]] * len(images)
    test_paths, test_labels = [], []
    for line in annotations.read_text().splitlines():
        fields = line.split("\t")
        if len(fields) < 2 or fields[1] not in index:
            raise MissingDataError(f"task.root: {annotations}: unreadable line {line!r} (expected "
                                   "'<file>\\t<wnid>\\t...' with a wnid of wnids.txt)")
        test_paths.append(directory / "val" / "images" / fields[0])
        test_labels.append(index[fields[1]])
    side = size or 64
    return Splits(FileImages(train_paths, train_labels, size, augment_train),
                  FileImages(test_paths, test_labels, size), len(wnids), 3, side,
                  *TINYIMAGENET_STATS, source=str(directory), classes=tuple(wnids))


def load_imagefolder(root: Path, size: int | None, augment_train: bool) -> Splits:
    """``root/train/<class>/*`` and ``root/val/<class>/*`` (torchvision ImageFolder layout).

    Mean and std are estimated on up to 1000 evenly spaced training images.
    """
    from torchvision.datasets import ImageFolder

    layout = "train/<class>/<image> and val/<class>/<image> (torchvision ImageFolder layout)"
    if not (root / "train").is_dir() or not (root / "val").is_dir():
        raise _missing("image folder", root.resolve(), layout,
                       "set task.root=DIR to a directory with train/ and val/")
    try:
        train, val = ImageFolder(str(root / "train")), ImageFolder(str(root / "val"))
    except FileNotFoundError as error:
        raise MissingDataError(f"task.root: {error}") from None
    if train.classes != val.classes:
        raise MissingDataError(f"task.root: {root.resolve()}: train/ and val/ have different "
                               f"class folders ({len(train.classes)} vs {len(val.classes)})")
    train_set = FileImages([Path(p) for p, _ in train.samples], train.targets, size,
                           augment_train)
    test_set = FileImages([Path(p) for p, _ in val.samples], val.targets, size)
    step = max(1, len(train_set) // 1000)
    sample = [train_set.load(i) for i in range(0, len(train_set), step)]
    pixels = torch.cat([x.flatten(1) for x in sample], dim=1)
    mean, std = pixels.mean(1).tolist(), pixels.std(1).clamp_min(1e-3).tolist()
    img_size = size or int(sample[0].shape[-1])
    return Splits(train_set, test_set, len(train.classes), 3, img_size, tuple(mean), tuple(std),
                  source=str(root), classes=tuple(train.classes))


def load_digits(seed: int, augment_train: bool) -> Splits:
    """scikit-learn's 1797 8x8 digits as 1x16x16 in [0, 1] (bilinear upsampling), split
    stratified 80/20 by ``seed``; mean/std from the training split. One channel: the data are
    grey levels, and copying them into three channels would only triple the attack's dimension.
    Augmentation is a random crop without flip (digits are not mirror-symmetric)."""
    from sklearn.datasets import load_digits as sklearn_digits
    from sklearn.model_selection import train_test_split

    bunch = sklearn_digits()
    images = torch.from_numpy(bunch.images / 16.0).float().unsqueeze(1)
    images = F.interpolate(images, size=DIGITS_SIZE, mode="bilinear", align_corners=False)
    images = images.clamp(0.0, 1.0)
    labels = torch.from_numpy(bunch.target).long()
    train_idx, test_idx = train_test_split(
        np.arange(len(labels)), test_size=DIGITS_TEST_FRACTION, random_state=seed,
        stratify=bunch.target)
    train_idx, test_idx = torch.from_numpy(train_idx), torch.from_numpy(test_idx)
    mean, std = images[train_idx].mean().item(), images[train_idx].std().item()
    return Splits(
        TensorImages(images[train_idx], labels[train_idx], train_augment=augment_train,
                     flip=False),
        TensorImages(images[test_idx], labels[test_idx]), 10, 1, DIGITS_SIZE, (mean,), (std,),
        source="sklearn.datasets.load_digits", classes=tuple(str(d) for d in range(10)),
    )
