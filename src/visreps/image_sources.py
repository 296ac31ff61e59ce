"""Image sources beyond folders: HDF5 and ``.npy`` image arrays, text lists of image paths, one image file.

A source is given where an image folder is given (``visreps extract MODEL stimuli.hdf5``,
``visreps.extract(model, "stimuli.hdf5", ...)``) and gives the items (rows of the manifest), the
image and content hash of each item, and the dataset the extraction reads through. Row names:

- folder: the image's path relative to the folder (as before, :func:`visreps.data.find_images`);
- HDF5 array: ``KEY/INDEX`` (``imgBrick/0``, ``imgBrick/1``...; ``KEY`` is the dataset's path in the file);
- ``.npy`` array: ``FILENAME/INDEX`` (``stimuli.npy/0``...);
- text list: each line as written (absolute, or relative to the list file's folder);
- one image file: its file name.

Arrays hold ``N × H × W × 3`` uint8 RGB images (the NSD layout); they are read one image at a time
(HDF5 with h5py, ``.npy`` memory-mapped), never loaded whole, and every process (each DataLoader
worker, each Ray task) opens the file itself. The content hash of an array image is
:func:`visreps.data.content_hash` of its ``H × W × 3`` bytes (C order).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path, PurePosixPath
from typing import Any

from .data import IMAGE_EXTENSIONS, ImageDataset, ImageItem, content_hash, find_images, read_image
from .errors import ImageError

HDF5_SUFFIXES = (".h5", ".hdf5", ".hdf")
KEY_HINT = "choose one with --images-key (images_key=...)"


class FolderSource:
    """A folder of images, exactly as :func:`visreps.data.find_images` finds them."""

    kind = "folder"

    def __init__(self, path: Path):
        self.given = path
        self.root = path.expanduser().resolve()

    def items(self, order: Any = None) -> list[ImageItem]:
        return find_images(self.given, order=order)

    def read(self, item: ImageItem):
        return read_image(item.absolute(self.root))

    def dataset(self, items: Sequence[ImageItem], transform: Callable) -> ImageDataset:
        return ImageDataset(self.root, items, transform)

    def describe(self) -> dict[str, Any] | None:
        return None  # folders keep the metadata they always had


class SourceDataset(ImageDataset):
    """:class:`~visreps.data.ImageDataset` reading its items through a source."""

    def __init__(self, source: Any, items: Sequence[ImageItem], transform: Callable):
        super().__init__(source.root, items, transform)
        self.source = source

    def read(self, item: ImageItem):
        return self.source.read(item)


class ListSource:
    """Image files named one per line in a text file (or one image file: a list of itself)."""

    kind = "list"

    def __init__(self, path: Path, entries: list[tuple[int, str]], base: Path, kind: str = "list"):
        self.root = path.expanduser().resolve()
        self.base = base
        self.entries = entries
        self.kind = kind

    def _file(self, rel: str) -> Path:
        p = Path(rel).expanduser()
        return p if p.is_absolute() else self.base / p

    def items(self, order: Any = None) -> list[ImageItem]:
        seen: dict[str, int] = {}
        for lineno, name in self.entries:
            if name in seen:
                raise ImageError(
                    f"image list {str(self.root)!r}, line {lineno}: {name!r} is listed twice "
                    f"(first on line {seen[name]}); list each image once"
                )
            seen[name] = lineno
            f = self._file(name)
            if f.is_dir():
                raise ImageError(f"image list {str(self.root)!r}, line {lineno}: {name!r} is a folder, not an image")
            # as in folders: a FIFO or a dangling link is listed and fails when read, never opened
            if not f.exists() and not f.is_symlink():
                raise ImageError(
                    f"image list {str(self.root)!r}, line {lineno}: {name!r} does not exist "
                    f"(relative paths are read from {str(self.base)!r})"
                )
        return _apply_order([ImageItem(name, "") for _, name in self.entries], order, self)

    def read(self, item: ImageItem):
        return read_image(self._file(item.path))

    def dataset(self, items: Sequence[ImageItem], transform: Callable) -> ImageDataset:
        return SourceDataset(self, items, transform)

    def describe(self) -> dict[str, Any]:
        return {"kind": self.kind, "base": str(self.base)}


class ArraySource:
    """An ``N × H × W × 3`` uint8 image array in an HDF5 dataset or a ``.npy`` file, read by index."""

    def __init__(self, path: Path, kind: str, key: str | None):
        self.root = path.expanduser().resolve()
        self.kind = kind
        self.key = key
        self.name = key if kind == "hdf5" else self.root.name
        self._handle: Any = None
        self._pid = -1
        arr = self._array()
        shape, dtype = tuple(arr.shape), str(arr.dtype)
        where = f"{str(path)!r}" + (f" (array {key!r})" if kind == "hdf5" else "")
        if len(shape) != 4 or shape[-1] != 3 or dtype != "uint8":
            raise ImageError(
                f"{where} holds an array of shape {shape} and dtype {dtype}; images must be one "
                "N × H × W × 3 uint8 array (RGB, 0-255): convert it, e.g. np.clip(a * 255, 0, 255).astype('uint8')"
            )
        if shape[0] == 0:
            raise ImageError(f"{where} holds no images (its first dimension is 0)")
        self.n = shape[0]
        self.close()

    def _array(self):
        """The array, opened once per process (a forked DataLoader worker must not share the parent's handle)."""
        if self._handle is None or self._pid != os.getpid():
            self._handle = None
            if self.kind == "npy":
                import numpy as np

                try:
                    arr = np.load(self.root, mmap_mode="r", allow_pickle=False)
                except (OSError, ValueError) as e:
                    raise ImageError(f"cannot read {str(self.root)!r} as a .npy array: {e}") from None
                self._handle = (None, arr)
            else:
                import h5py

                f = h5py.File(self.root, "r")
                self._handle = (f, f[self.key])
            self._pid = os.getpid()
        return self._handle[1]

    def close(self) -> None:
        if self._handle is not None and self._handle[0] is not None and self._pid == os.getpid():
            self._handle[0].close()
        self._handle = None

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_handle": None, "_pid": -1}

    def items(self, order: Any = None) -> list[ImageItem]:
        return _apply_order([ImageItem(f"{self.name}/{i}", "") for i in range(self.n)], order, self)

    def read(self, item: ImageItem):
        import numpy as np
        from PIL import Image

        i = int(item.path.rpartition("/")[2])
        try:
            pixels = np.ascontiguousarray(self._array()[i])
        except (OSError, ValueError, KeyError) as e:
            raise ImageError(f"cannot read image {i} of {str(self.root)!r}: {e}") from None
        return Image.fromarray(pixels, mode="RGB"), content_hash(pixels.tobytes())

    def dataset(self, items: Sequence[ImageItem], transform: Callable) -> ImageDataset:
        return SourceDataset(self, items, transform)

    def describe(self) -> dict[str, Any]:
        return {"kind": self.kind, "key": self.key, "n": self.n}


def open_source(images: str | os.PathLike, *, images_key: str | None = None):
    """The image source at ``images``: a folder, an HDF5 or ``.npy`` image array, a ``.txt`` list or one image.

    Raises:
        ImageError: the path does not exist, is of no known kind, or the array is not images;
            an HDF5 file holds several arrays and ``images_key`` does not choose one.
    """
    path = Path(images)
    p = path.expanduser()
    suffix = p.suffix.lower()
    if not p.exists() and suffix in (*HDF5_SUFFIXES, ".npy", ".txt", *IMAGE_EXTENSIONS):
        raise ImageError(f"image file {str(images)!r} does not exist; check the path")
    if not p.is_file():  # folders, and other missing paths (find_images says what is wrong)
        if images_key is not None:
            raise ImageError(f"images_key (--images-key) applies to HDF5 files; {str(images)!r} is not one")
        return FolderSource(path)
    if suffix in HDF5_SUFFIXES:
        return ArraySource(p, "hdf5", _hdf5_key(p, images_key))
    if images_key is not None:
        raise ImageError(f"images_key (--images-key) applies to HDF5 files; {str(images)!r} is not one")
    if suffix == ".npy":
        return ArraySource(p, "npy", None)
    if suffix == ".txt":
        return ListSource(path, _list_lines(p, f"image list {str(images)!r}"), p.resolve().parent)
    if suffix in IMAGE_EXTENSIONS:
        return ListSource(path, [(1, p.name)], p.resolve().parent, kind="image")
    raise ImageError(
        f"{str(images)!r} is not an image source visreps reads: give a folder of images, an HDF5 "
        f"({', '.join(HDF5_SUFFIXES)}) or .npy image array, a .txt list of image paths, or one image file"
    )


def _hdf5_key(path: Path, key: str | None) -> str:
    import h5py

    try:
        with h5py.File(path, "r") as f:
            names: list[str] = []
            f.visititems(lambda name, obj: names.append(name) if isinstance(obj, h5py.Dataset) else None)
    except OSError as e:
        raise ImageError(f"cannot read {str(path)!r} as an HDF5 file: {e}") from None
    if key is not None:
        key = key.strip("/")
        if key not in names:
            raise ImageError(
                f"{str(path)!r} has no array {key!r}; it holds: {', '.join(names) or 'no arrays'}; {KEY_HINT}"
            )
        return key
    if not names:
        raise ImageError(f"{str(path)!r} holds no arrays; give an HDF5 file with an N × H × W × 3 uint8 image array")
    if len(names) > 1:
        raise ImageError(f"{str(path)!r} holds several arrays ({', '.join(names)}); {KEY_HINT}")
    return names[0]


def _list_lines(path: Path, where: str) -> list[tuple[int, str]]:
    """The non-blank, non-``#`` lines of a UTF-8 text file (BOM dropped), with their line numbers."""
    raw = path.read_bytes()
    if raw.startswith(b"\xef\xbb\xbf"):
        raw = raw[3:]
    out = []
    for lineno, line in enumerate(raw.decode("utf-8", "surrogateescape").splitlines(), 1):
        line = line.strip()
        if line and not line.startswith("#"):
            out.append((lineno, str(PurePosixPath(line.replace("\\", "/"))) if not Path(line).is_absolute() else line))
    if not out:
        raise ImageError(f"{where} lists no images")
    return out


def _apply_order(items: list[ImageItem], order: Any, source: Any) -> list[ImageItem]:
    """Exactly the items the order names, in its order (by row name; unknown or repeated names refused)."""
    if order is None:
        return items
    if isinstance(order, (str, os.PathLike)):
        opath = Path(order).expanduser()
        where = f"order file {str(order)!r}"
        if not opath.is_file():
            raise ImageError(f"{where} does not exist; give a text file with one image row name per line")
        lines = _list_lines(opath, where)
    else:
        where = "the order list"
        lines = [(i, str(s).strip()) for i, s in enumerate(order, 1) if str(s).strip()]
        if not lines:
            raise ImageError(f"{where} lists no images")
    by_name = {it.path: it for it in items}
    seen: dict[str, int] = {}
    out = []
    for lineno, name in lines:
        if name not in by_name:
            example = items[0].path
            raise ImageError(
                f"{where}, line {lineno}: {name!r} is not an image of {str(source.root)!r} "
                f"(its rows are named like {example!r})"
            )
        if name in seen:
            raise ImageError(
                f"{where}, line {lineno}: {name!r} is listed twice (first on line {seen[name]}); list each image once"
            )
        seen[name] = lineno
        out.append(by_name[name])
    return out
