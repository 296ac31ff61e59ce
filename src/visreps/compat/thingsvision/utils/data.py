"""``thingsvision.utils.data`` (2.x): :class:`ImageDataset`, :class:`DataLoader` and :func:`load_batches`.

The dataset finds the images and their order exactly as THINGSvision 2.7.3 does and writes that
order to ``<out_path>/file_names.txt``; images are decoded by :func:`visreps.data.load_image`.
:meth:`Extractor.extract_features <visreps.compat.thingsvision.core.extraction.Extractor.extract_features>`
does not iterate the loader: it hands the images, their order, the transform and the batch size
to visreps' extraction engine (:func:`visreps.extraction.prepare` / :func:`~visreps.extraction.run`).
"""

from __future__ import annotations

import math
import os
import re
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ....errors import ImageError, VisrepsError
from ..._files import atomic
from .._warn import warn_once

__all__ = ["DataLoader", "ImageDataset", "load_batches"]

#: THINGSvision 2.x's image file pattern (its ``parse_img_name``), kept as it is so the same files are found
EXTENSIONS = r"(.eps|.jpg|.JPG|.jpeg|.JPEG|.png|.PNG|.tif|.tiff)$"


def parse_img_name(img_name: str) -> bool:
    """Whether ``img_name`` is an image file by THINGSvision 2.x's pattern :data:`EXTENSIONS`."""
    return re.search(EXTENSIONS, img_name) is not None


def _check_backend(backend: Any) -> str:
    if backend not in ("pt", "tf"):
        raise VisrepsError(
            f"backend {backend!r} is not valid; use 'pt' (PyTorch) or 'tf' (TensorFlow/Keras): extractor.get_backend()"
        )
    return backend


class ImageDataset:
    """THINGSvision 2.x's ``ImageDataset``: the images of ``root`` in a fixed order, written to ``file_names.txt``.

    Maps to :func:`visreps.data.find_images` with ``order=`` (the native API writes the order to
    ``manifest.csv`` beside the features: ``visreps.extract(model, root, order=names, out=folder)``).

    Order, as in 2.7.3: a flat folder gives its image files (:data:`EXTENSIONS`) sorted by name, or
    ``file_names`` as given; ``file_names.txt`` then lists the names as given. With class subfolders,
    each class folder in sorted order (or in ``class_names`` order), its images found recursively in
    sorted order; ``file_names.txt`` then lists ``os.path.join(root, class, file)`` paths.

    Fixed (2.7.3 raised ``TypeError``): class subfolders *and* ``file_names`` give exactly the listed
    images (``class/file``) in the listed order.

    Args:
        root: the image folder.
        out_path: where ``file_names.txt`` is written (created if missing).
        backend: ``pt`` or ``tf`` (``extractor.get_backend()``).
        class_names: the class folders to use, in this order.
        file_names: the images to use, in this order (relative to ``root``).
        transforms: the image transform (``extractor.get_transformations()``).

    Attributes:
        samples: image paths (``os.path.join(root, ...)``) in extraction order; also ``images``.
        file_names: for a flat folder, the image names in order.
        classes, idx_to_cls, cls_to_idx, type: as in 2.7.3 (``class_dataset`` or ``instance_dataset``).
    """

    def __init__(
        self,
        root: str,
        out_path: str,
        backend: str,
        class_names: list[str] | None = None,
        file_names: list[str] | None = None,
        transforms: Any = None,
    ) -> None:
        warn_once("visreps.compat.thingsvision.utils.data.ImageDataset")
        self.root = os.fspath(root)
        self.out_path = os.fspath(out_path)
        self.backend = _check_backend(backend)
        self.class_names = list(class_names) if class_names is not None else None
        self.file_names = list(file_names) if file_names is not None else None
        self.transforms = transforms
        if not os.path.isdir(self.root):
            raise ImageError(f"image folder {self.root!r} does not exist; give the folder that holds your images")
        print("\n...Creating dataset.")
        os.makedirs(self.out_path, exist_ok=True)
        self.samples = self._find()
        if not self.samples:
            raise ImageError(f"no images found under {self.root!r} (THINGSvision's file pattern {EXTENSIONS})")
        with atomic(Path(self.out_path) / "file_names.txt") as tmp:
            tmp.write_text("".join(f"{line}\n" for line in self._listed), encoding="utf-8")

    def _find(self) -> list[str]:
        children = sorted(d.name for d in os.scandir(self.root) if d.is_dir())
        if not children:
            self.type = "instance_dataset"
            if isinstance(self.class_names, list) and isinstance(self.file_names, list):
                raise VisrepsError(
                    f"{self.root!r} has no class subfolders: pass file_names only and leave class_names empty"
                )
            if not self.file_names:
                self.file_names = sorted(
                    f.name for f in os.scandir(self.root) if f.is_file() and parse_img_name(f.name)
                )
            self._listed = list(self.file_names)
            return [os.path.join(self.root, name) for name in self.file_names]
        self.type = "class_dataset"
        if self.file_names:
            return self._listed_classes()
        self.classes = list(self.class_names) if self.class_names else children
        self._index_classes()
        samples: list[str] = []
        for cls in self.classes if self.class_names else sorted(self.cls_to_idx):
            target_dir = os.path.join(self.root, cls)
            if not os.path.isdir(target_dir):
                warnings.warn(f"\nDirectory for class <{cls}> does not exist.\n", stacklevel=3)
                continue
            for folder, _, files in sorted(os.walk(target_dir, followlinks=True)):
                for file in sorted(files):
                    path = os.path.join(folder, file)
                    if os.path.isfile(path) and parse_img_name(file):
                        samples.append(path)
        self._listed = list(samples)
        return samples

    def _listed_classes(self) -> list[str]:
        classes: list[str] = []
        samples: list[str] = []
        for name in self.file_names or []:
            parts = re.split(r"[\\/]+", name)
            if len(parts) < 2:
                raise VisrepsError(
                    f"file_names entry {name!r}: {self.root!r} has class subfolders, so give 'class/file' paths"
                )
            path = os.path.join(self.root, *parts)
            if not os.path.isfile(path):
                raise ImageError(f"file_names entry {name!r} does not exist under {self.root!r}")
            if parts[0] not in classes:
                classes.append(parts[0])
            samples.append(path)
        self.classes = list(self.class_names) if self.class_names else classes
        self._index_classes()
        self._listed = list(samples)
        return samples

    def _index_classes(self) -> None:
        self.idx_to_cls = dict(enumerate(self.classes))
        self.cls_to_idx = {cls: idx for idx, cls in self.idx_to_cls.items()}

    @property
    def images(self) -> list[str]:
        return self.samples

    def relative_paths(self) -> list[str]:
        """The images as POSIX paths relative to ``root`` (the ``order`` visreps' engine takes)."""
        return [Path(os.path.relpath(p, self.root)).as_posix() for p in self.samples]

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, idx: int) -> Any:
        from ....data import load_image

        img = load_image(self.samples[idx])
        if self.transforms is None:
            raise VisrepsError("ImageDataset needs transforms=extractor.get_transformations() to make model inputs")
        if self.backend == "tf" and not getattr(self.transforms, "visreps_transform", False):
            import numpy as np

            return self.transforms(np.asarray(img, dtype=np.float32))  # keras' img_to_array, as 2.x does
        return self.transforms(img)

    def __repr__(self) -> str:
        return f"ImageDataset({len(self.samples)} images from {self.root!r}, backend={self.backend!r})"


class DataLoader:
    """THINGSvision 2.x's ``DataLoader``: mini-batches of ``batch_size`` images in the dataset's order.

    Maps to the batch loop of visreps' engine (``visreps.extract(..., batch_size=...)``), which is
    what ``extract_features`` runs when given this loader. Iterating it yields the stacked inputs
    (``torch.Tensor`` for ``pt``, ``numpy`` arrays for ``tf``); the last batch may be smaller.
    """

    def __init__(self, dataset: Any, batch_size: int, backend: str) -> None:
        warn_once("visreps.compat.thingsvision.utils.data.DataLoader")
        if not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size < 1:
            raise VisrepsError(f"batch_size must be a positive integer, got {batch_size!r}")
        self.dataset = dataset
        self.batch_size = batch_size
        self.backend = _check_backend(backend)
        self.n_batches = int(math.ceil(len(dataset) / batch_size))
        self.remainder = len(dataset) % batch_size

    def __len__(self) -> int:
        return self.n_batches

    def __iter__(self) -> Iterator[Any]:
        for k in range(self.n_batches):
            rows = range(k * self.batch_size, min((k + 1) * self.batch_size, len(self.dataset)))
            images = [self.dataset[i] for i in rows]
            if self.backend == "pt":
                import torch

                yield torch.stack(images, dim=0)
            else:
                import numpy as np

                yield np.stack([np.asarray(x) for x in images], axis=0)

    def __repr__(self) -> str:
        return f"DataLoader({len(self.dataset)} images, batch_size={self.batch_size}, backend={self.backend!r})"


def load_batches(
    root: str, out_path: str, backend: str, batch_size: int,
    class_names: list[str] | None = None, file_names: list[str] | None = None, transforms: Any = None,
) -> DataLoader:  # fmt: skip
    """THINGSvision 2.x's ``load_batches``: an :class:`ImageDataset` in a :class:`DataLoader`."""
    warn_once("visreps.compat.thingsvision.utils.data.load_batches")
    dataset = ImageDataset(root, out_path, backend, class_names, file_names, transforms)
    return DataLoader(dataset=dataset, batch_size=batch_size, backend=backend)
