"""Fetching MNIST, Fashion-MNIST, CIFAR-10 and CIFAR-100 from their publishers, checked against known MD5 sums.

The sums are the published ones that torchvision checks too. Files land in ``root`` so that
``load_dataset(name, root=root)`` reads them; CIFAR archives are unpacked there as well.
"""
from __future__ import annotations

import hashlib
import os
import tarfile
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from tqdm import tqdm

from fedleak.data.base import DataFormatError


@dataclass(frozen=True)
class Resource:
    """One file to fetch: its name, MD5 sum, base URLs to try in turn, and whether it is a .tar.gz to unpack."""

    filename: str
    md5: str
    mirrors: tuple[str, ...]
    unpack: bool = False


_MNIST_MIRRORS = ("https://ossci-datasets.s3.amazonaws.com/mnist/", "http://yann.lecun.com/exdb/mnist/")
_FASHION_MIRRORS = ("http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
                    "https://raw.githubusercontent.com/zalandoresearch/fashion-mnist/master/data/fashion/")
_CIFAR_MIRRORS = ("https://www.cs.toronto.edu/~kriz/",)

RESOURCES: dict[str, tuple[Resource, ...]] = {
    "mnist": (
        Resource("train-images-idx3-ubyte.gz", "f68b3c2dcbeaaa9fbdd348bbdeb94873", _MNIST_MIRRORS),
        Resource("train-labels-idx1-ubyte.gz", "d53e105ee54ea40749a09fcbcd1e9432", _MNIST_MIRRORS),
        Resource("t10k-images-idx3-ubyte.gz", "9fb629c4189551a2d022fa330f9573f3", _MNIST_MIRRORS),
        Resource("t10k-labels-idx1-ubyte.gz", "ec29112dd5afa0611ce80d1b7f02629c", _MNIST_MIRRORS),
    ),
    "fashion_mnist": (
        Resource("train-images-idx3-ubyte.gz", "8d4fb7e6c68d591d4c3dfef9ec88bf0d", _FASHION_MIRRORS),
        Resource("train-labels-idx1-ubyte.gz", "25c81989df183df01b3e8a0aad5dffbe", _FASHION_MIRRORS),
        Resource("t10k-images-idx3-ubyte.gz", "bef4ecab320f06d8554ea6380940ec79", _FASHION_MIRRORS),
        Resource("t10k-labels-idx1-ubyte.gz", "bb300cfdad3c16e7a12a480ee83cd310", _FASHION_MIRRORS),
    ),
    "cifar10": (Resource("cifar-10-python.tar.gz", "c58f30108f718f92721af3b95e74349a", _CIFAR_MIRRORS, True),),
    "cifar100": (Resource("cifar-100-python.tar.gz", "eb9058c3a382ffc7106e4002c42a8d85", _CIFAR_MIRRORS, True),),
}


def md5sum(path) -> str:
    digest = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def fetch(url: str, dest: Path, *, progress: bool = True) -> None:
    """Copy ``url`` (http, https or file) to ``dest``, showing a tqdm bar when ``progress``."""
    with urllib.request.urlopen(url, timeout=60) as response, open(dest, "wb") as out:
        total = int(response.headers.get("Content-Length") or 0) or None
        with tqdm(total=total, unit="B", unit_scale=True, desc=dest.name, disable=not progress) as bar:
            for block in iter(lambda: response.read(1 << 20), b""):
                out.write(block)
                bar.update(len(block))


def fetch_verified(resource: Resource, root: Path, *, progress: bool = True) -> Path:
    """``root/<filename>`` with the right MD5, fetched from the first mirror that serves it unless already there."""
    dest = root / resource.filename
    if dest.is_file() and md5sum(dest) == resource.md5:
        return dest
    partial, problems = dest.with_name(dest.name + ".part"), []
    for base in resource.mirrors:
        url = base + resource.filename
        try:
            fetch(url, partial, progress=progress)
        except (urllib.error.URLError, OSError) as err:
            problems.append(f"{url}: {err}")
            continue
        digest = md5sum(partial)
        if digest == resource.md5:
            partial.replace(dest)
            return dest
        problems.append(f"{url}: MD5 {digest}, expected {resource.md5}")
    partial.unlink(missing_ok=True)
    raise DataFormatError(f"{resource.filename}: no mirror gave the expected file:\n  " + "\n  ".join(problems))


def unpack_tar(archive: Path, root: Path) -> None:
    """Extract a .tar.gz into ``root``, refusing links, members that would land outside ``root``, and members whose
    path in ``root`` passes through a symbolic link already there (extraction would write wherever it points;
    a link loop would end in a raw error)."""
    target = root.resolve()
    try:
        with tarfile.open(archive, "r:gz") as tar:
            members = tar.getmembers()
            for member in members:
                inside = Path(os.path.normpath(target / member.name))
                if not (member.isfile() or member.isdir()) or not inside.is_relative_to(target):
                    raise DataFormatError(f"{archive}: refusing member {member.name!r} (link or outside {root})")
                step = target
                for part in inside.relative_to(target).parts:
                    step = step / part
                    if step.is_symlink():
                        raise DataFormatError(f"{archive}: refusing to extract {member.name!r}: {step} is a "
                                              "symbolic link already in the folder; remove it first")
            safe = {"filter": "data"} if hasattr(tarfile, "data_filter") else {}  # Python >= 3.10.12 / 3.11.4
            tar.extractall(target, members=members, **safe)
    except (tarfile.TarError, EOFError) as err:
        raise DataFormatError(f"{archive}: not a readable .tar.gz ({err})") from None


def download(name: str, root, *, progress: bool = True) -> Path:
    """Fetch dataset ``name`` (mnist, fashion_mnist, cifar10 or cifar100) into ``root``, verify it, unpack it.

    Returns ``root``, ready for ``load_dataset(name, root=root)``. Files already present and correct are kept.
    """
    if name not in RESOURCES:
        raise ValueError(f"cannot download {name!r}; downloadable: {', '.join(RESOURCES)}")
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    for resource in RESOURCES[name]:
        path = fetch_verified(resource, root, progress=progress)
        if resource.unpack:
            unpack_tar(path, root)
    return root
