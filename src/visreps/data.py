"""Image discovery, ordering, decoding to RGB, and the dataset/loader that feeds extraction.

Order: images are sorted by their path relative to the image root, written with ``/``
(POSIX), compared as plain strings; the same order on every operating system. An explicit
order comes from a text file of relative paths, one per line.
"""

from __future__ import annotations

import errno
import hashlib
import io
import os
import stat
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any, cast

from .errors import ImageError

if TYPE_CHECKING:
    from torch.utils.data import Dataset

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
    found = _walk(rootp)
    if not found:
        raise ImageError(
            f"no images found under {str(root)!r} (looked for {', '.join(IMAGE_EXTENSIONS)} in any letter case)"
        )
    return [ImageItem(p, _label_of(p)) for p in found]


def _walk(root: Path) -> list[str]:
    """Relative POSIX paths of the images under ``root``, sorted, each real file once.

    Symbolic links to folders and files are followed, but every real folder is entered once (a
    link back to an ancestor, ``ln -s .. loop``, cannot cycle) and every real file, reached
    through links under several names, is listed once, under the name that sorts first.
    Names that are not valid UTF-8 keep their bytes as surrogate escapes (``os.fsdecode``).
    """
    seen_dirs: set[tuple[int, int]] = set()
    found: list[tuple[str, tuple[int, int]]] = []

    def visit(folder: Path, rel: str) -> None:
        try:
            st = folder.stat()
        except OSError:
            return  # a dangling link
        key = (st.st_dev, st.st_ino)
        if key in seen_dirs:
            return
        seen_dirs.add(key)
        try:
            entries = sorted(os.scandir(folder), key=lambda e: e.name)
        except OSError as e:
            raise ImageError(f"cannot list image folder {str(folder)!r}: {e.strerror}; check its permissions") from None
        for entry in entries:
            if entry.name.startswith("."):
                continue
            path = f"{rel}{entry.name}"
            try:
                if entry.is_dir(follow_symlinks=True):
                    visit(Path(entry.path), path + "/")
                    continue
            except OSError:
                pass  # a link loop: not a folder; as a name like an image, it is listed below
            if not _is_image(entry.name):
                continue
            # a name like an image is never dropped: a dangling link, a link loop or a FIFO is listed and
            # fails when read (an error naming it, or with --skip-bad-images a recorded failure)
            try:
                fst = entry.stat(follow_symlinks=True)
            except OSError:
                fst = None
            if fst is None or not stat.S_ISREG(fst.st_mode):
                try:
                    lst = entry.stat(follow_symlinks=False)
                    found.append((path, (lst.st_dev, lst.st_ino)))
                except OSError:  # vanished since the listing: still named when it is read
                    found.append((path, (-1, len(found))))
                continue
            found.append((path, (fst.st_dev, fst.st_ino)))

    visit(root, "")
    found.sort()
    files: set[tuple[int, int]] = set()
    out = []
    for path, key in found:
        if key not in files:
            files.add(key)
            out.append(path)
    return out


def _ordered(root: Path, order: str | os.PathLike | Sequence[str]) -> list[ImageItem]:
    if isinstance(order, (str, os.PathLike)):
        opath = Path(order).expanduser()
        if not opath.is_file():
            raise ImageError(
                f"order file {str(order)!r} does not exist; give a text file with one relative image path per line"
            )
        raw_bytes = opath.read_bytes()
        if raw_bytes.startswith(b"\xef\xbb\xbf"):
            raw_bytes = raw_bytes[3:]
        # bytes that are not UTF-8 become surrogate escapes, as os.fsdecode gives file names that are not UTF-8
        lines = raw_bytes.decode("utf-8", "surrogateescape").splitlines()
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
            raise ImageError(
                f"{where}, line {lineno}: {line!r} must be a path relative to the image folder {str(root)!r}"
            )
        rel_s = str(rel)
        if rel_s in seen:
            raise ImageError(
                f"{where}, line {lineno}: {rel_s!r} is listed twice (first on line {seen[rel_s]}); list each image once"
            )
        seen[rel_s] = lineno
        target = root / Path(*rel.parts)
        if target.is_dir():
            raise ImageError(f"{where}, line {lineno}: {rel_s!r} is a folder under {str(root)!r}, not an image")
        # a FIFO, a dangling link or a link loop is listed and fails when read (never opened, never dropped)
        if not target.is_file() and not target.is_symlink() and not target.exists():
            if _has_surrogates(rel_s):
                raise ImageError(
                    f"{where}, line {lineno}: {rel_s!r} does not exist under {str(root)!r}, and the line is not valid "
                    "UTF-8; save the order file as UTF-8 text"
                )
            raise ImageError(f"{where}, line {lineno}: {rel_s!r} does not exist under {str(root)!r}")
        entries.append(rel_s)
    if not entries:
        raise ImageError(f"{where} lists no images")
    return [ImageItem(p, _label_of(p)) for p in entries]


def _has_surrogates(text: str) -> bool:
    return any("\udc80" <= ch <= "\udcff" for ch in text)


def load_image(path: str | os.PathLike):
    """Open an image as 8-bit RGB with its EXIF orientation applied (see :func:`read_image`)."""
    return read_image(path)[0]


#: bytes of the content hash recorded per image (BLAKE2b, 128 bits; hex in manifest.csv's ``blake2b`` column)
DIGEST_SIZE = 16


def content_hash(data: bytes) -> bytes:
    """The content hash of an image file's bytes: BLAKE2b with a 16-byte digest."""
    return hashlib.blake2b(data, digest_size=DIGEST_SIZE).digest()


def read_image(path: str | os.PathLike):
    """Read an image file once: its content hash and the image as 8-bit RGB, EXIF orientation applied.

    Grayscale, palette, RGBA/LA (alpha dropped, as torchvision's loader does), CMYK and YCbCr go
    through PIL's conversion; 16-bit and 32-bit integer images are scaled from their range
    (0-65535) to 0-255 rather than clipped; float images are clipped to 0-255.

    Returns:
        ``(image, digest)``: a PIL RGB image and :func:`content_hash` of the file's bytes.

    Raises:
        ImageError: the file is empty, truncated or not an image.
    """
    import numpy as np
    from PIL import Image, ImageOps, UnidentifiedImageError

    p = Path(path)
    _check_regular(p)
    try:
        data = p.read_bytes()
        if not data:
            raise ImageError(f"image {str(path)!r} is an empty (zero-byte) file")
        digest = content_hash(data)
        with Image.open(io.BytesIO(data)) as img:
            img.load()
            # in place: the same pixels, without the copy (~0.5 ms a photo) it makes when there is nothing to turn
            ImageOps.exif_transpose(img, in_place=True)
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
            return img, digest
    except ImageError:
        raise
    except UnidentifiedImageError:
        raise ImageError(
            f"cannot read image {str(path)!r}: not an image format Pillow knows (or a damaged file)"
        ) from None
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as e:
        raise ImageError(f"cannot read image {str(path)!r}: {e}") from e


def _check_regular(p: Path) -> None:
    """Raise :class:`ImageError` unless ``p`` is a regular file (or a link to one), without opening it: a
    FIFO would block the read, a dangling link or a link loop has nothing to read."""
    try:
        st = p.stat()
    except OSError as e:
        if p.is_symlink():
            try:
                target = os.readlink(p)
            except OSError:
                target = "?"
            what = "a symbolic link loop" if e.errno == errno.ELOOP else "a symbolic link to a missing file"
            raise ImageError(f"cannot read image {str(p)!r}: it is {what} ({target!r})") from None
        raise ImageError(f"cannot read image {str(p)!r}: {e.strerror or e}") from None
    if not stat.S_ISREG(st.st_mode):
        kind = (
            "a FIFO (named pipe)"
            if stat.S_ISFIFO(st.st_mode)
            else "a socket"
            if stat.S_ISSOCK(st.st_mode)
            else "a device"
            if stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode)
            else "not a regular file"
        )
        raise ImageError(f"cannot read image {str(p)!r}: it is {kind}, not an image file (not opened)")


BAD_IMAGE_HINT = "remove or replace it, or skip unreadable images with --skip-bad-images (skip_bad_images=True)"


class ImageDataset:
    """A map-style dataset: index → (index, tensor or None, error message, content hash).

    Decoding errors never raise inside a worker; they travel back as messages so that the main
    process can stop with one clean error naming the file, or skip it. The content hash
    (:func:`content_hash` of the file's bytes, ``b""`` for a bad image) is computed from the bytes
    that were decoded, so it describes exactly the image the features come from.
    """

    def __init__(self, root: str | os.PathLike, items: Sequence[ImageItem], transform: Callable):
        self.root = Path(root).expanduser()
        self.items = list(items)
        self.transform = transform

    def __len__(self) -> int:
        return len(self.items)

    def read(self, item: ImageItem):
        """``(image, digest)`` of one item (:func:`read_image`; other sources override it)."""
        return read_image(item.absolute(self.root))

    def __getitem__(self, i: int):
        item = self.items[i]
        try:
            img, digest = self.read(item)
        except ImageError as e:
            return i, None, str(e), b""
        try:
            return i, self.transform(img), "", digest
        except Exception as e:  # noqa: BLE001 - a transform failing on one image is that image's error
            return i, None, f"cannot preprocess image {item.path!r}: {e}", b""


def collate(batch):
    """Stack the good images; keep the indices and the errors of the bad ones.

    Returns ``(idx, x, bad, digests)``: positions of the good images, their stacked inputs (``None``
    if none is good), ``(position, message)`` of the bad ones, and the good images' content hashes.
    """
    import torch

    good = [(i, x, d) for i, x, err, d in batch if x is not None]
    bad = [(i, err) for i, x, err, _ in batch if x is None]
    idx = [i for i, _, _ in good]
    x = torch.stack([t for _, t, _ in good]) if good else None
    return idx, x, bad, [d for _, _, d in good]


def _ignore_sigint(_worker_id: int) -> None:
    """Ctrl-C is handled once, by the main process; workers must not print their own tracebacks."""
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)


def make_loader(dataset: ImageDataset, *, batch_size: int, num_workers: int, pin_memory: bool = False):
    """A DataLoader in dataset order; worker processes decode while the model runs."""
    from torch.utils.data import DataLoader

    kwargs: dict[str, Any] = {}
    if num_workers > 0:
        kwargs = {"prefetch_factor": 4, "persistent_workers": False, "worker_init_fn": _ignore_sigint}
    return DataLoader(
        cast("Dataset", dataset),  # a map-style dataset by its interface (torch is not imported with this module)
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
