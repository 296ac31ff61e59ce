"""Real photos for benchmarks: seeded crops of scikit-image's sample photographs, saved as JPEG."""

from __future__ import annotations

from pathlib import Path

import numpy as np

PHOTOS = [
    "astronaut",
    "chelsea",
    "coffee",
    "rocket",
    "motorcycle_left",
    "immunohistochemistry",
    "hubble_deep_field",
    "retina",
]


def make_photos(folder: Path, n: int, *, size=(500, 375), seed: int = 0) -> Path:
    """``n`` JPEG photos (``size`` pixels, quality 90) cut from the sample photos; reused if present."""
    from PIL import Image
    from skimage import data

    folder = Path(folder)
    if folder.is_dir() and len(list(folder.glob("*.jpg"))) == n:
        return folder
    folder.mkdir(parents=True, exist_ok=True)
    sources = []
    for name in PHOTOS:
        try:
            sources.append(Image.fromarray(getattr(data, name)()).convert("RGB"))
        except Exception:  # noqa: BLE001 - a sample missing from this scikit-image version
            continue
    rng = np.random.default_rng(seed)
    for i in range(n):
        src = sources[i % len(sources)]
        w, h = src.size
        scale = rng.uniform(0.55, 1.0)
        cw, ch = int(w * scale), int(h * scale)
        x0, y0 = rng.integers(0, w - cw + 1), rng.integers(0, h - ch + 1)
        img = src.crop((x0, y0, x0 + cw, y0 + ch)).resize(size, Image.BICUBIC)
        if rng.random() < 0.5:
            img = img.transpose(Image.FLIP_LEFT_RIGHT)
        img.save(folder / f"photo_{i:05d}.jpg", quality=90)
    return folder
