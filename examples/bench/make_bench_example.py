"""Make the example of ``visreps bench`` in ``examples/bench/``: 32 small images and two synthetic targets.

Nothing here is from a brain: the targets are seeded functions of simple image statistics plus
noise, so that a bench has structure to find and the noise ceilings are known.

* ``stimuli/``: 32 images of 64 × 64 pixels in two class folders (``gratings/``: oriented
  sinusoidal gratings of random orientation, frequency and colour; ``blobs/``: Gaussian blobs of
  random position, size and colour on a tinted background), seed 0. Two classes, so the bench's
  split is stratified by them.
* ``hIT_subjects.npy``: ``(4, 32, 32)`` RDMs of 4 "subjects". With ``S`` the z-scored statistics of
  the images (mean R, G, B; grey-level SD; edge energy; share of horizontal edge energy; class)
  and ``ε_s ~ N(0, 0.7²)`` per subject (seed 1), subject ``s``'s RDM is the correlation distance
  (1 − Pearson r) between the rows of ``S + ε_s``.
* ``v4.npy``: ``(4, 32, 20)`` responses (repetitions × images × units, rows in image order):
  ``S W + ε_r`` with ``W ~ N(0, 1/7)`` (7 × 20) and ``ε_r ~ N(0, 0.5²)`` per repetition (seed 2).
* ``triplets.csv``: 1,000 odd-one-out choices of a simulated observer on random triplets of the images
  (900 triplets, 100 of them shown twice; seed 3): the image left out of the pair closest in ``S + ε``,
  ``ε ~ N(0, 0.7²)`` per trial. Columns ``image_1, image_2, image_3, choice``.

Run from the repository root: ``python examples/bench/make_bench_example.py`` (numpy and Pillow only).
The images are listed in the order visreps reads them (sorted relative paths).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

HERE = Path(__file__).resolve().parent
STIMULI = HERE / "stimuli"
N_PER_CLASS, SIZE = 16, 64


def grating(rng: np.random.Generator) -> np.ndarray:
    y, x = np.mgrid[0:SIZE, 0:SIZE] / SIZE
    theta, freq, phase = rng.uniform(0, np.pi), rng.uniform(2, 8), rng.uniform(0, 2 * np.pi)
    wave = 0.5 + 0.5 * np.sin(2 * np.pi * freq * (x * np.cos(theta) + y * np.sin(theta)) + phase)
    colour = rng.uniform(0.3, 1.0, size=3)
    return wave[..., None] * colour


def blob(rng: np.random.Generator) -> np.ndarray:
    y, x = np.mgrid[0:SIZE, 0:SIZE] / SIZE
    cx, cy, s = rng.uniform(0.25, 0.75), rng.uniform(0.25, 0.75), rng.uniform(0.08, 0.25)
    g = np.exp(-((x - cx) ** 2 + (y - cy) ** 2) / (2 * s**2))
    bg, fg = rng.uniform(0.0, 0.4, size=3), rng.uniform(0.5, 1.0, size=3)
    return bg * (1 - g[..., None]) + fg * g[..., None]


def statistics(rgb: np.ndarray, cls: int) -> np.ndarray:
    grey = rgb @ np.array([0.299, 0.587, 0.114])
    gy, gx = np.gradient(grey)
    energy = np.hypot(gx, gy).mean()
    horizontal = (gy**2).sum() / max((gx**2).sum() + (gy**2).sum(), 1e-12)
    return np.array([*rgb.reshape(-1, 3).mean(axis=0), grey.std(), energy, horizontal, cls], dtype=np.float64)


def main() -> None:
    rng = np.random.default_rng(0)
    stats = []
    for cls, (folder, make) in enumerate((("blobs", blob), ("gratings", grating))):
        (STIMULI / folder).mkdir(parents=True, exist_ok=True)
        for i in range(N_PER_CLASS):
            rgb = np.clip(make(rng), 0, 1)
            Image.fromarray((rgb * 255).round().astype(np.uint8)).save(STIMULI / folder / f"{folder[0]}{i:02d}.png")
            stats.append(statistics(rgb, cls))
    S = np.asarray(stats)
    S = (S - S.mean(axis=0)) / S.std(axis=0)
    n = len(S)
    rng = np.random.default_rng(1)
    rdms = []
    for _ in range(4):
        X = S + rng.normal(0, 0.7, size=S.shape)
        rdm = 1 - np.corrcoef(X)
        np.fill_diagonal(rdm, 0)
        rdms.append((rdm + rdm.T) / 2)
    np.save(HERE / "hIT_subjects.npy", np.stack(rdms))
    rng = np.random.default_rng(2)
    W = rng.normal(0, 1 / np.sqrt(S.shape[1]), size=(S.shape[1], 20))
    signal = S @ W
    np.save(HERE / "v4.npy", np.stack([signal + rng.normal(0, 0.5, size=signal.shape) for _ in range(4)]))
    names = [f"{folder}/{folder[0]}{i:02d}.png" for folder in ("blobs", "gratings") for i in range(N_PER_CLASS)]
    triplets(S, names, np.random.default_rng(3))
    print(f"wrote {n} images to {STIMULI}, hIT_subjects.npy (4, {n}, {n}), v4.npy (4, {n}, 20), triplets.csv")


def triplets(S: np.ndarray, names: list[str], rng: np.random.Generator, m: int = 900, repeated: int = 100) -> None:
    """``triplets.csv``: ``m`` odd-one-out choices of a simulated observer, ``repeated`` of the triplets shown twice.

    The observer sees ``S + ε`` (``ε ~ N(0, 0.7²)`` per trial) and names as odd the image left out of
    the closest pair (Euclidean distance), as a person does in the THINGS task. Columns ``image_1,
    image_2, image_3, choice`` (the odd one out, by name); the repeats make a noise ceiling.
    """
    n = len(names)
    trip = np.array([rng.choice(n, 3, replace=False) for _ in range(m)])
    trip = np.concatenate([trip, trip[rng.choice(m, repeated, replace=False)]])
    rows = []
    for a, b, c in trip:
        X = S[[a, b, c]] + rng.normal(0, 0.7, size=(3, S.shape[1]))
        d = [np.linalg.norm(X[1] - X[2]), np.linalg.norm(X[0] - X[2]), np.linalg.norm(X[0] - X[1])]
        odd = (a, b, c)[int(np.argmin(d))]  # the pair left: d[k] is the distance of the pair without item k
        rows.append(f"{names[a]},{names[b]},{names[c]},{names[odd]}")
    (HERE / "triplets.csv").write_text("image_1,image_2,image_3,choice\n" + "\n".join(rows) + "\n")


if __name__ == "__main__":
    main()
