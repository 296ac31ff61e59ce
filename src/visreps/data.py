"""Image discovery, ordering, decoding to RGB, and the dataset/loader that feeds extraction.

Order: images are sorted by their path relative to the image root, written with ``/``
(POSIX), compared as plain strings; the same order on every operating system. An explicit
order comes from a text file of relative paths, one per line.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Callable, Sequence

from .errors import ImageError

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp")


@dataclass(frozen=True)
class ImageItem:
    """One image: its path relative to the root (POSIX) and its label (parent folder, ``""`` if flat)."""

    path: str
    label: str

    def absolute(self, root: Path) -> Path:
        return root / Path(*PurePosixPath(self.path).parts)


def _is_image(name: str) -> bool:
    return name.lower().endswith(IMAGE_EXTENSIONS) and not name.startswith(".")


def _label_of(rel: str) -> str:
    parent = str(PurePosixPath(rel).parent)
    return "" if parent == "." else parent


def find_images(root: str | os.PathLike, *, order: str | os.PathLike | Sequence[str] | None = None) -> list[ImageItem]:
    """All images under ``root`` (flat, or class subfolders at any depth), in a deterministic order.

    Args:
        root: the image folder.
        order: a text file of relative paths (one per line; blank lines and ``#`` comments
            ignored), or a list of relative paths: exactly these images in exactly this order.

    Raises:
        ImageError: the folder does not exist or holds no images; an order entry is missing
            or listed twice.
    """
    rootp = Path(root).expanduser()
    if not rootp.exists():
        raise ImageError(f"image folder {str(root)!r} does not exist; give the folder that holds your images")
    if not rootp.is_dir():
        raise ImageError(f"{str(root)!r} is not a folder; give the folder that holds your images")
    if order is not None:
        return _ordered(rootp, order)
    found: list[str] = []
    for dirpath, dirnames, filenames in os.walk(rootp, followlinks=True):
        dirnames[:] = [d for d in dirnames if not d.startswith(".")]
        rel_dir = Path(dirpath).relative_to(rootp).as_posix()
        for f in filenames:
            if _is_image(f):
                found.append(f if rel_dir == "." else f"{rel_dir}/{f}")
    if not found:
        raise ImageError(
            f"no images found under {str(root)!r} (looked for {', '.join(IMAGE_EXTENSIONS)} in any letter case)"
        )
    found.sort()
    return [ImageItem(p, _label_of(p)) for p in found]


def _ordered(root: Path, order: str | os.PathLike | Sequence[str]) -> list[ImageItem]:
    if isinstance(order, (str, os.PathLike)):
        opath = Path(order).expanduser()
        if not opath.is_file():
            raise ImageError(f"order file {str(order)!r} does not exist; give a text file with one relative image path per line")
        lines = opath.read_text(encoding="utf-8-sig").splitlines()
        where = f"order file {str(order)!r}"
    else:
        lines = list(order)
        where = "the order list"
    entries: list[str] = []
    seen: dict[str, int] = {}
    for lineno, raw in enumerate(lines, 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        rel = PurePosixPath(line.replace("\\", "/"))
        if rel.is_absolute() or ".." in rel.parts:
            raise ImageError(f"{where}, line {lineno}: {line!r} must be a path relative to the image folder {str(root)!r}")
        rel_s = str(rel)
        if rel_s in seen:
            raise ImageError(f"{where}, line {lineno}: {rel_s!r} is listed twice (first on line {seen[rel_s]}); list each image once")
        seen[rel_s] = lineno
        if not (root / Path(*rel.parts)).is_file():
            raise ImageError(f"{where}, line {lineno}: {rel_s!r} does not exist under {str(root)!r}")
        entries.append(rel_s)
    if not entries:
        raise ImageError(f"{where} lists no images")
    return [ImageItem(p, _label_of(p)) for p in entries]


def load_image(path: str | os.PathLike):
    """Open an image as 8-bit RGB with its EXIF orientation applied.

    Grayscale, palette, RGBA/LA (alpha dropped, as torchvision's loader does), CMYK and YCbCr go
    through PIL's conversion; 16-bit and 32-bit integer images are scaled from their range
    (0-65535) to 0-255 rather than clipped; float images are clipped to 0-255.

    Raises:
        ImageError: the file is empty, truncated or not an image.
    """
    import numpy as np
    from PIL import Image, ImageOps, UnidentifiedImageError

    p = Path(path)
    try:
        if p.stat().st_size == 0:
            raise ImageError(f"image {str(path)!r} is an empty (zero-byte) file")
        with Image.open(p) as img:
            img.load()
            img = ImageOps.exif_transpose(img)
            mode = img.mode
            if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I"):
                arr = np.asarray(img, dtype=np.float64)
                if mode != "I" or arr.max() > 255:
                    arr = arr / 257.0
                img = Image.fromarray(np.clip(np.rint(arr), 0, 255).astype(np.uint8), mode="L")
            elif mode == "F":
                arr = np.asarray(img, dtype=np.float64)
                if arr.size and arr.max() <= 1.0:
                    arr = arr * 255.0
                img = Image.fromarray(np.clip(np.rint(arr), 0, 255).astype(np.uint8), mode="L")
            elif mode == "P" and "transparency" in img.info:
                img = img.convert("RGBA")
            if img.mode != "RGB":
                img = img.convert("RGB")
            return img
    except ImageError:
        raise
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError, Image.DecompressionBombError) as e:
        raise ImageError(f"cannot read image {str(path)!r}: {e}") from e


BAD_IMAGE_HINT = "remove or replace it, or skip unreadable images with --skip-bad-images (skip_bad_images=True)"


class ImageDataset:
    """A map-style dataset: index → (index, tensor or None, error message).

    Decoding errors never raise inside a worker; they travel back as messages so that the main
    process can stop with one clean error naming the file, or skip it.
    """

    def __init__(self, root: str | os.PathLike, items: Sequence[ImageItem], transform: Callable):
        self.root = Path(root).expanduser()
        self.items = list(items)
        self.transform = transform

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int):
        item = self.items[i]
        try:
            img = load_image(item.absolute(self.root))
            return i, self.transform(img), ""
        except ImageError as e:
            return i, None, str(e)
        except Exception as e:  # noqa: BLE001 - a transform failing on one image is that image's error
            return i, None, f"cannot preprocess image {item.path!r}: {e}"


def collate(batch):
    """Stack the good images; keep the indices and the errors of the bad ones."""
    import torch

    good = [(i, x) for i, x, err in batch if x is not None]
    bad = [(i, err) for i, x, err in batch if x is None]
    idx = [i for i, _ in good]
    x = torch.stack([t for _, t in good]) if good else None
    return idx, x, bad


def _ignore_sigint(_worker_id: int) -> None:
    """Ctrl-C is handled once, by the main process; workers must not print their own tracebacks."""
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)


def make_loader(dataset: ImageDataset, *, batch_size: int, num_workers: int, pin_memory: bool = False):
    """A DataLoader in dataset order; worker processes decode while the model runs."""
    from torch.utils.data import DataLoader

    kwargs = {}
    if num_workers > 0:
        kwargs = {"prefetch_factor": 4, "persistent_workers": False, "worker_init_fn": _ignore_sigint}
    return DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=False,
        num_workers=num_workers,
        collate_fn=collate,
        pin_memory=pin_memory,
        **kwargs,
    )


def default_workers(n_images: int, batch_size: int) -> int:
    """Worker processes for decoding: none for tiny runs, else up to the number of cores (max 8)."""
    if n_images <= batch_size:
        return 0
    return max(1, min(8, (os.cpu_count() or 2)))
