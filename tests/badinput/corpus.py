"""Builders of bad inputs for ``tests/test_bad_input.py`` (issue 10: the bad-input corpus).

Every function writes one kind of bad input into a folder it is given, with PIL, numpy or torch,
so nothing binary is committed. The functions only build files; what visreps must do with them is
the table ``SPEC`` in ``tests/test_bad_input.py``.

Also here: :func:`snapshot`, the sha256 of every file of a folder tree, which the tests take
before and after each run to prove that no file of the user's was touched.
"""

from __future__ import annotations

import hashlib
import os
import pathlib
import shutil
from collections.abc import Iterable
from pathlib import Path

import numpy as np

#: the good images of the shared folder: two formats, flat, sorted as visreps sorts them
GOOD_NAMES: tuple[str, ...] = ("a.png", "b.png", "c.jpg", "d.jpg", "e.png", "f.png")


# --------------------------------------------------------------------------- images


def write_image(path: Path | bytes, *, size: tuple[int, int] = (32, 32), seed: int = 0, fmt: str | None = None) -> None:
    """A random RGB image at ``path`` (a ``Path``, or raw file-system bytes for names that are not UTF-8)."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    img = Image.fromarray(rng.integers(0, 256, size=(size[1], size[0], 3), dtype=np.uint8))
    if isinstance(path, bytes):
        with open(path, "wb") as f:
            img.save(f, format=fmt or "PNG")
    else:
        path.parent.mkdir(parents=True, exist_ok=True)
        img.save(path, format=fmt)


def good_images(
    folder: Path, names: Iterable[str] = GOOD_NAMES, *, size: tuple[int, int] = (32, 32), seed: int = 0
) -> list[str]:
    """Write readable images named ``names`` into ``folder``; returns the names."""
    names = list(names)
    for i, name in enumerate(names):
        write_image(folder / name, size=size, seed=seed + i)
    return names


def copy_images(src: Path, dst: Path, names: Iterable[str] | None = None) -> Path:
    """Copy the images of ``src`` (all, or ``names``) into a new folder ``dst``; returns ``dst``."""
    dst.mkdir(parents=True, exist_ok=True)
    for p in sorted(src.iterdir()):
        if names is None or p.name in set(names):
            shutil.copy2(p, dst / p.name)
    return dst


def corrupt_image(folder: Path, name: str = "x.jpg", *, seed: int = 1, n_bytes: int = 3000) -> Path:
    """Random bytes under an image name: no decoder recognises them."""
    p = folder / name
    p.write_bytes(np.random.default_rng(seed).integers(0, 256, n_bytes, dtype=np.uint8).tobytes())
    return p


def zero_byte_image(folder: Path, name: str = "zero.png") -> Path:
    """An empty file under an image name (a failed download, a full disk)."""
    p = folder / name
    p.write_bytes(b"")
    return p


def text_as_image(folder: Path, name: str = "notes.jpg") -> Path:
    """A text file under an image name."""
    p = folder / name
    p.write_text("this is not an image\n", encoding="utf-8")
    return p


def symlink_loop(folder: Path, name: str = "loop") -> Path:
    """A link inside the image folder to its own parent (``ln -s .. loop``): walking it naively never ends."""
    p = folder / name
    os.symlink("..", p)
    return p


def non_utf8_image(folder: Path, raw_name: bytes = b"caf\xe9.png", *, seed: int = 7) -> str:
    """A readable image whose file name is Latin-1 bytes, not valid UTF-8.

    Returns the name as Python sees it (``os.fsdecode``: the bad byte as a surrogate escape, ``"caf\\udce9.png"``).
    """
    write_image(os.path.join(os.fsencode(folder), raw_name), seed=seed)
    return os.fsdecode(raw_name)


# --------------------------------------------------------------------------- order files


def order_file(path: Path, names: Iterable[str], *, encoding: str = "utf-8") -> Path:
    """A text file of relative image paths, one per line, in ``encoding``."""
    path.write_bytes("".join(f"{n}\n" for n in names).encode(encoding))
    return path


# --------------------------------------------------------------------------- weights


def random_weights(path: Path, *, n_bytes: int = 4096, seed: int = 3) -> Path:
    """Random bytes under a weights name (a truncated download, the wrong file)."""
    path.write_bytes(np.random.default_rng(seed).integers(0, 256, n_bytes, dtype=np.uint8).tobytes())
    return path


class _TouchOnLoad:
    """Unpickling this object calls ``pathlib.Path.touch(marker)``: a stand-in for code a checkpoint may run."""

    def __init__(self, marker: Path):
        self.marker = Path(marker)

    def __reduce__(self):
        return (pathlib.Path.touch, (self.marker,))


def pickle_weights(path: Path, marker: Path) -> Path:
    """A ``torch.save`` checkpoint whose unpickling creates ``marker``: loading it without consent runs code."""
    import torch

    torch.save({"state_dict": _TouchOnLoad(marker)}, path)
    return path


# --------------------------------------------------------------------------- damaged outputs


def cut_tail(path: Path, n_bytes: int) -> Path:
    """Remove the last ``n_bytes`` bytes of ``path`` (a copy cut short, a full disk)."""
    size = path.stat().st_size
    os.truncate(path, max(0, size - n_bytes))
    return path


def cut_half(path: Path) -> Path:
    """Keep the first half of ``path``."""
    os.truncate(path, path.stat().st_size // 2)
    return path


def drop_last_line(path: Path) -> Path:
    """Remove the last line of a text file (the file stays parseable, one row short)."""
    lines = path.read_bytes().splitlines(keepends=True)
    path.write_bytes(b"".join(lines[:-1]))
    return path


def user_npy(path: Path) -> Path:
    """A user's own array file."""
    np.save(path, np.arange(10, dtype=np.float64))
    return path


# --------------------------------------------------------------------------- snapshots


def _sha256(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def snapshot(roots: dict[str, Path]) -> dict[str, str]:
    """``"<tag>/<relative path>" → sha256`` of every file under each root (``tag → folder``).

    Links are recorded as ``"link → target"`` and never followed, so a link loop is one entry.
    Files that cannot be read are recorded as ``"unreadable: <error>"``.
    """
    out: dict[str, str] = {}
    for tag, root in roots.items():
        root_s = os.fspath(root)
        if not os.path.isdir(root_s):
            continue
        for dirpath, dirnames, filenames in os.walk(root_s):
            for name in dirnames + filenames:
                full = os.path.join(dirpath, name)
                key = f"{tag}/{os.path.relpath(full, root_s)}"
                if os.path.islink(full):
                    out[key] = f"link → {os.readlink(full)}"
                elif name in filenames:
                    try:
                        out[key] = _sha256(full)
                    except OSError as e:
                        out[key] = f"unreadable: {e}"
    return out


# --------------------------------------------------------------------------- analysis inputs (issue 19)


def features_folder(images: Path, out: Path, *, nan: bool = False) -> Path:
    """A finished extraction folder of a tiny seeded network (layers ``avgpool``: 4, ``fc``: 5 features).

    ``nan``: the ``fc`` weights are NaN and the folder is written as visreps wrote it before each batch
    was checked for finite values (a complete folder whose ``fc.npy`` holds NaN).
    """
    from collections import OrderedDict
    from contextlib import nullcontext
    from unittest import mock

    import torch

    import visreps
    from visreps import storage
    from visreps.models import Preprocessing

    torch.manual_seed(0)
    net = torch.nn.Sequential(
        OrderedDict(
            conv=torch.nn.Conv2d(3, 4, 3, padding=1),
            relu=torch.nn.ReLU(),
            avgpool=torch.nn.AdaptiveAvgPool2d(1),
            flat=torch.nn.Flatten(),
            fc=torch.nn.Linear(4, 5),
        )
    ).eval()
    if nan:
        with torch.no_grad():
            net.fc.weight.fill_(float("nan"))
    with mock.patch.object(storage.sinks, "check_finite", lambda *a, **k: None) if nan else nullcontext():
        visreps.extract(
            net,
            images,
            out=out,
            layers=["avgpool", "fc"],
            preprocessing=Preprocessing(resize=20, crop=16),
            progress=False,
            num_workers=0,
        )
    return out


def swap_manifest_rows(folder: Path, i: int = 0, j: int = 1) -> Path:
    """Swap the paths of rows ``i`` and ``j`` of ``manifest.csv`` (its size stays the same); returns its path."""
    man = folder / "manifest.csv"
    lines = man.read_text(encoding="utf-8").splitlines()
    a, b = lines[1 + i].split(",", 1), lines[1 + j].split(",", 1)
    lines[1 + i], lines[1 + j] = f"{a[0]},{b[1]}", f"{b[0]},{a[1]}"
    man.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return man


def noisy_rdm(X: np.ndarray, *, seed: int = 2, noise: float = 0.7) -> np.ndarray:
    """A correlation-distance RDM of ``X`` plus noise: a reference that agrees with ``X`` in part."""
    from scipy.spatial.distance import pdist, squareform

    rng = np.random.default_rng(seed)
    return squareform(pdist(X + noise * rng.standard_normal(X.shape), "correlation"))


def groups_file(path: Path, images: Iterable[str], groups: Iterable[str], *, encoding: str = "latin-1") -> Path:
    """An ``image,group`` table in ``encoding``."""
    rows = "".join(f"{i},{g}\n" for i, g in zip(images, groups, strict=True))
    path.write_bytes(("image,group\n" + rows).encode(encoding))
    return path
