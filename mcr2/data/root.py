"""Where the data files are: the data root, its check, and the errors that name a missing or
unreadable file.

Data root (:func:`data_root`): an explicit ``root`` argument, else the environment variable
``MCR2_DATA``, else the project's ``data/`` folder. Files expected under it (torchvision's layout):

    MNIST/raw/{train,t10k}-{images-idx3,labels-idx1}-ubyte   MNIST, 60 000 train / 10 000 test
    usps.bz2, usps.t.bz2                                     USPS (LIBSVM text), 7 291 / 2 007
    cifar-100-python/  or  cifar100_images.npz               CIFAR-100 backgrounds (report)
    cifar-10-batches-py/                                     CIFAR-10 backgrounds (authors' code)
"""
from __future__ import annotations

import hashlib
import os
from pathlib import Path

import torch

from ..config import BACKGROUNDS, DOMAINS  # the choices, defined once with the config

MNIST_FILES = (
    "MNIST/raw/train-images-idx3-ubyte",
    "MNIST/raw/train-labels-idx1-ubyte",
    "MNIST/raw/t10k-images-idx3-ubyte",
    "MNIST/raw/t10k-labels-idx1-ubyte",
)
USPS_FILES = {"train": "usps.bz2", "test": "usps.t.bz2"}
CIFAR100_NPZ = "cifar100_images.npz"
CIFAR100_DIR = "cifar-100-python"
CIFAR10_DIR = "cifar-10-batches-py"

_REPO = Path(__file__).resolve().parents[2]
_FIX = (
    "Fix: set MCR2_DATA=/path/to/shared/data (a folder holding MNIST/raw/, usps.bz2, "
    "usps.t.bz2, cifar100_images.npz), pass root=..., put the files in "
    f"{_REPO / 'data'}, or pass download=True on a machine with internet."
)


class DataNotFoundError(FileNotFoundError):
    """A dataset's files are missing under the data root (the message says what and how to fix)."""


class DataCorruptError(DataNotFoundError):
    """A dataset file exists but cannot be read (bad header, wrong size, broken compression)."""


def _resolve_root(root=None) -> tuple[Path, str, list[Path]]:
    """(root, how it was chosen, folders searched)."""
    if root is not None:
        p = Path(root).expanduser()
        return p.resolve(), "the root argument", [p.resolve()]
    env = os.environ.get("MCR2_DATA")
    if env:
        p = Path(env).expanduser()
        if p.is_absolute():
            return p, "MCR2_DATA", [p]
        # A relative MCR2_DATA is read against the working directory, then against the
        # project root, so MCR2_DATA=../shared/data also works from inside book/.
        candidates = [(Path.cwd() / p).resolve(), (_REPO / p).resolve()]
        for c in candidates:
            if c.is_dir():
                return c, "MCR2_DATA", candidates
        return candidates[0], "MCR2_DATA", candidates
    p = _REPO / "data"
    return p, "the project default (MCR2_DATA is not set)", [p]


def data_root(root=None) -> Path:
    """The data folder: ``root`` if given, else ``$MCR2_DATA``, else ``<repo>/data``."""
    return _resolve_root(root)[0]


def check_data_root(root=None, *, domains=("mnist", "usps"), backgrounds=("cifar100",)) -> Path:
    """The data root, after checking that the files of ``domains`` and ``backgrounds`` are there.

    Cheap (file presence only, contents are checked on load): run it before any work starts, so
    a missing root fails at once with one :class:`DataNotFoundError` that lists every missing file,
    the folders searched and the fix. ``domains``: any of :data:`DOMAINS`; ``backgrounds``:
    "cifar100" (``cifar-100-python/`` or ``cifar100_images.npz``) and/or "cifar10".
    """
    path, how, searched = _resolve_root(root)
    for d in domains:
        _check_choice("domain", d, DOMAINS)
    for b in backgrounds:
        _check_choice("background", b, BACKGROUNDS)
    need_mnist = any(d in ("mnist", "digits") for d in domains)
    need_usps = any(d in ("usps", "digits") for d in domains)
    missing = [f for f in MNIST_FILES if need_mnist and not (path / f).is_file()]
    missing += [f for f in USPS_FILES.values() if need_usps and not (path / f).is_file()]
    if "cifar100" in backgrounds and not ((path / CIFAR100_DIR).is_dir() or (path / CIFAR100_NPZ).is_file()):
        missing.append(f"{CIFAR100_NPZ} (or {CIFAR100_DIR}/)")
    if "cifar10" in backgrounds and not (path / CIFAR10_DIR).is_dir():
        missing.append(f"{CIFAR10_DIR}/")
    if missing:
        state = "does not exist" if not path.is_dir() else f"lacks {', '.join(missing)}"
        raise DataNotFoundError(
            f"data root {path} (chosen by {how}) {state}. Searched: {', '.join(str(s) for s in searched)}. "
            + _FIX
        )
    return path


def _not_found(dataset: str, files, root) -> DataNotFoundError:
    path, how, searched = _resolve_root(root)
    msg = (
        f"{dataset}: data not found. Expected {', '.join(files)} under the data root. "
        f"Searched: {', '.join(str(s) for s in searched)} (chosen by {how}). " + _FIX
    )
    return DataNotFoundError(msg)


def _corrupt(dataset: str, file: Path, reason: str) -> DataCorruptError:
    return DataCorruptError(
        f"{dataset}: file {file} is unreadable or corrupt ({reason}). Replace it with a good "
        f"copy (see data/README.md), or set MCR2_DATA=/path/to/shared/data to a folder holding "
        f"good copies."
    )


def _check_choice(name, value, valid):
    if value not in valid:
        raise ValueError(f"{name}={value!r} is not valid; choose one of {list(valid)}")


def _check_limit(limit):
    if limit is not None and (not isinstance(limit, int) or limit < 1):
        raise ValueError(f"limit must be a positive int or None, got {limit!r}")


def _stat(path: Path):
    st = path.stat()
    return (st.st_size, st.st_mtime_ns)


def _generator(seed: int, split: str, purpose: str) -> torch.Generator:
    # SHA-256, not hash(): Python salts str hashes per process.
    digest = hashlib.sha256(f"mcr2:{seed}:{split}:{purpose}".encode()).digest()
    g = torch.Generator()
    g.manual_seed(int.from_bytes(digest[:8], "little") & (2**63 - 1))
    return g
