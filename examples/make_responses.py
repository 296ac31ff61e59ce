"""Make the synthetic response set in ``examples/responses/`` for the six photos in ``examples/images``.

The responses are not from a brain: they are a seeded linear mix of eight simple image statistics
plus noise, so that an encoding model has something real to find and the noise ceiling is known.

For each image (sorted file names), the statistics are computed on the photo resized to
64 × 64: mean red, green and blue; luminance contrast (SD of the grey levels); edge energy (mean
gradient magnitude of the grey image); mean saturation; the share of spectral energy above a
quarter of the Nyquist frequency; and the brightness difference between the top and bottom
halves. They are z-scored across the six images into ``S`` (6 × 8).

Responses of ``T = 16`` targets ("voxels") in ``R = 4`` repetitions::

    signal = S @ W             W ~ N(0, 1/8), shape (8, 16), seed 0
    responses[r] = signal + ε_r      ε ~ N(0, σ²), σ = 0.5 · SD(signal), seed 0

so every target's true reliability of the 4-repetition mean is about ``1 / (1 + 0.25/4) ≈ 0.94``.

Writes:

* ``responses/responses.npz``: ``responses`` (repetitions × images × targets, float64) and
  ``images`` (the file names, the order of the rows);
* ``responses/responses_mean.csv``: the mean over repetitions, one row per image (column
  ``image``, then ``t00`` … ``t15``).

Run from the repository root: ``python examples/make_responses.py`` (numpy and Pillow only).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

HERE = Path(__file__).resolve().parent
IMAGES = HERE / "images"
OUT = HERE / "responses"
N_TARGETS, N_REPS, SEED = 16, 4, 0


def image_statistics(path: Path) -> np.ndarray:
    """Eight statistics of one photo (see the module documentation)."""
    with Image.open(path) as im:
        rgb = np.asarray(im.convert("RGB").resize((64, 64), Image.Resampling.BILINEAR), dtype=np.float64) / 255.0
        hsv = np.asarray(im.convert("RGB").resize((64, 64), Image.Resampling.BILINEAR).convert("HSV"), dtype=np.float64)
    grey = rgb @ np.array([0.299, 0.587, 0.114])
    gy, gx = np.gradient(grey)
    spec = np.abs(np.fft.fftshift(np.fft.fft2(grey - grey.mean()))) ** 2
    fy, fx = np.meshgrid(np.fft.fftshift(np.fft.fftfreq(64)), np.fft.fftshift(np.fft.fftfreq(64)), indexing="ij")
    high = spec[np.hypot(fy, fx) > 0.125].sum() / spec.sum()
    return np.array(
        [
            *rgb.reshape(-1, 3).mean(axis=0),
            grey.std(),
            np.hypot(gx, gy).mean(),
            hsv[..., 1].mean() / 255.0,
            high,
            grey[:32].mean() - grey[32:].mean(),
        ]
    )


def main() -> None:
    paths = sorted(p for p in IMAGES.iterdir() if p.suffix.lower() in (".jpg", ".jpeg", ".png"))
    S = np.stack([image_statistics(p) for p in paths])
    S = (S - S.mean(axis=0)) / S.std(axis=0)
    rng = np.random.default_rng(SEED)
    W = rng.normal(0.0, 1.0 / np.sqrt(S.shape[1]), size=(S.shape[1], N_TARGETS))
    signal = S @ W
    sigma = 0.5 * signal.std()
    responses = signal[None] + rng.normal(0.0, sigma, size=(N_REPS, *signal.shape))
    OUT.mkdir(exist_ok=True)
    names = np.array([p.name for p in paths])
    np.savez(OUT / "responses.npz", responses=responses, images=names)
    header = "image," + ",".join(f"t{t:02d}" for t in range(N_TARGETS))
    lines = [header] + [
        f"{name}," + ",".join(f"{v:.17g}" for v in row) for name, row in zip(names, responses.mean(axis=0))
    ]
    (OUT / "responses_mean.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    print(f"{len(paths)} images × {N_TARGETS} targets × {N_REPS} repetitions → {OUT}")


if __name__ == "__main__":
    main()
