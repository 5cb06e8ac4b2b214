"""MNIST and Fashion-MNIST from their official IDX files (verified download or ``--data-dir``).

Images come as ``(N, 1, 28, 28)`` float32 in [0, 1] (the layout of every image dataset in
lrtune); labels as int64. The standard split of seed 000: the first 5 000 training images are
the validation set, the other 55 000 the training set, and the 10 000 ``t10k`` images the test
set. The split is fixed by the files, so ``seed`` does not change it.
"""

from __future__ import annotations

from dataclasses import dataclass
from os import PathLike

import numpy as np
import torch

from lrtune.data.download import RemoteFile, download, find_local
from lrtune.data.idx import read_idx
from lrtune.data.splits import Splits


@dataclass(frozen=True)
class IdxDataset:
    """Where a dataset of four IDX files lives and what its labels mean."""

    name: str
    mirrors: tuple[str, ...]
    train_images: RemoteFile
    train_labels: RemoteFile
    test_images: RemoteFile
    test_labels: RemoteFile
    class_names: tuple[str, ...]
    homepage: str


# sha256 of the official .gz files, as pinned identically by several independent public projects
MNIST = IdxDataset(
    name="mnist",
    mirrors=(
        "https://ossci-datasets.s3.amazonaws.com/mnist/",
        "https://storage.googleapis.com/cvdf-datasets/mnist/",
        "http://yann.lecun.com/exdb/mnist/",
    ),
    train_images=RemoteFile(
        "train-images-idx3-ubyte.gz",
        "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609"),
    train_labels=RemoteFile(
        "train-labels-idx1-ubyte.gz",
        "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c"),
    test_images=RemoteFile(
        "t10k-images-idx3-ubyte.gz",
        "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6"),
    test_labels=RemoteFile(
        "t10k-labels-idx1-ubyte.gz",
        "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6"),
    class_names=tuple(str(d) for d in range(10)),
    homepage="http://yann.lecun.com/exdb/mnist/",
)

FASHION_MNIST = IdxDataset(
    name="fashion-mnist",
    mirrors=(
        "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
        "https://raw.githubusercontent.com/zalandoresearch/fashion-mnist/master/data/fashion/",
    ),
    train_images=RemoteFile(
        "train-images-idx3-ubyte.gz",
        "08dc20ab1689590a0bcd66e874647b6ee8464e2d501b5a3f1f78831db19a3fdc"),
    train_labels=RemoteFile(
        "train-labels-idx1-ubyte.gz",
        "b0197879cbda89f3dc7b894f9fd52b858e68ea4182b6947c9d8c2b67e5f18dcc"),
    test_images=RemoteFile(
        "t10k-images-idx3-ubyte.gz",
        "78dcbbfb5a27efaf1b6c1d616caca68560be8766c5bffcb2791df9273a534229"),
    test_labels=RemoteFile(
        "t10k-labels-idx1-ubyte.gz",
        "42bd18137a62d5998cdeae52bf3a0676ac6b706f5cf8439b47bb5b151ae3dccf"),
    class_names=("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                 "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"),
    homepage="https://github.com/zalandoresearch/fashion-mnist",
)


IMAGE_SHAPE = (28, 28)  # both MNIST and Fashion-MNIST


def _fetch(dataset: IdxDataset, remote: RemoteFile, data_dir) -> np.ndarray:
    if data_dir is not None:
        path = find_local(dataset.name, data_dir, remote.name, dataset.homepage)
    else:
        files = (dataset.train_images, dataset.train_labels, dataset.test_images,
                 dataset.test_labels)
        hint = f"get {', '.join(f.name for f in files)} from {dataset.homepage}"
        path = download(dataset.name, remote, dataset.mirrors, hint=hint)
    return read_idx(path)


def _images_and_labels(dataset: IdxDataset, images: RemoteFile, labels: RemoteFile, data_dir):
    X = _fetch(dataset, images, data_dir)
    y = _fetch(dataset, labels, data_dir)
    if X.ndim != 3 or X.dtype != np.uint8:
        raise ValueError(f"{dataset.name}: {images.name} holds {X.dtype} of shape {X.shape}, "
                         "expected uint8 images (N, rows, cols)")
    if X.shape[1:] != IMAGE_SHAPE:  # the models and the 784-feature MLP are built for 28x28
        raise ValueError(f"{dataset.name}: {images.name} images are {X.shape[1]}×{X.shape[2]}, "
                         f"expected {IMAGE_SHAPE[0]}×{IMAGE_SHAPE[1]}")
    if y.ndim != 1 or len(y) != len(X):
        raise ValueError(f"{dataset.name}: {labels.name} has shape {y.shape}, expected "
                         f"({len(X)},), one label per image of {images.name}")
    if len(y) and int(y.max()) >= len(dataset.class_names):
        raise ValueError(f"{dataset.name}: {labels.name} has label {int(y.max())}, expected "
                         f"< {len(dataset.class_names)}")
    pixels = torch.from_numpy(X).unsqueeze(1).float().div_(255.0)
    return pixels, torch.from_numpy(y.astype(np.int64))


def load_idx_dataset(dataset: IdxDataset, *, data_dir: str | PathLike | None = None,
                     n_valid: int = 5000) -> Splits:
    """Load one of the IDX datasets with the standard split.

    Args:
        dataset: :data:`MNIST` or :data:`FASHION_MNIST`.
        data_dir: a folder holding the four files (``.gz`` or unpacked); ``None`` downloads
            them (verified by sha256) into :func:`~lrtune.data.download.cache_dir`.
        n_valid: how many of the first training images form the validation set.

    Returns:
        Splits of ``(N, 1, 28, 28)`` float32 images in [0, 1] and int64 labels, with the
        dataset's class names.
    """
    X_train, y_train = _images_and_labels(
        dataset, dataset.train_images, dataset.train_labels, data_dir)
    X_test, y_test = _images_and_labels(dataset, dataset.test_images, dataset.test_labels, data_dir)
    if not 0 < n_valid < len(X_train):
        raise ValueError(f"n_valid must be in (0, {len(X_train)}), got {n_valid}")
    return Splits(
        name=dataset.name,
        train=(X_train[n_valid:], y_train[n_valid:]),
        valid=(X_train[:n_valid], y_train[:n_valid]),
        test=(X_test, y_test),
        task="classification",
        class_names=list(dataset.class_names),
    )
