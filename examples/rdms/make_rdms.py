"""Make the synthetic per-subject reference RDMs of examples/rdms for the images of examples/images.

Run from the repository root: ``python examples/rdms/make_rdms.py`` (numpy and Pillow only; the
same files every time). What it makes, for the 6 images in file-name order (``order.txt``):

* a "true" RDM: 1 − Pearson r between the images' 16 × 16 grey-level thumbnails (plus their
  mean RGB colour, weighted like 16 pixels), scaled to mean 1;
* ``subjects/sub-01.npy`` … ``sub-05.npy``: the true RDM plus symmetric Gaussian noise
  (sd 0.25, seed 0), clipped at 0, zero diagonal: five noisy "subjects";
* ``brain_rdm.npy``: the mean of the five subjects' RDMs (one group-level RDM).

The numbers are synthetic: they only let the docs and tests run `visreps compare --reference
examples/rdms/subjects --noise-ceiling --bootstrap subjects,images --test pairwise` end to end.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

HERE = Path(__file__).resolve().parent
IMAGES = HERE.parent / "images"
SUBJECTS, NOISE_SD, SEED = 5, 0.25, 0


def true_rdm(paths: list[Path]) -> np.ndarray:
    feats = []
    for p in paths:
        with Image.open(p) as im:
            rgb = np.asarray(im.convert("RGB").resize((16, 16), Image.Resampling.BILINEAR), dtype=np.float64) / 255
        grey = rgb.mean(axis=2).ravel()
        feats.append(np.concatenate([grey, np.repeat(rgb.reshape(-1, 3).mean(axis=0), 16)]))
    rdm = 1.0 - np.corrcoef(np.array(feats))
    np.fill_diagonal(rdm, 0.0)
    return rdm / rdm[np.triu_indices(len(paths), 1)].mean()


def main() -> None:
    paths = sorted(p for p in IMAGES.iterdir() if p.suffix.lower() in (".jpg", ".jpeg", ".png"))
    truth = true_rdm(paths)
    rng = np.random.default_rng(SEED)
    n = len(paths)
    out = HERE / "subjects"
    out.mkdir(exist_ok=True)
    subjects = []
    for s in range(SUBJECTS):
        noise = np.triu(rng.normal(scale=NOISE_SD, size=(n, n)), 1)
        rdm = np.maximum(truth + noise + noise.T, 0.0)
        np.fill_diagonal(rdm, 0.0)
        subjects.append(rdm)
        np.save(out / f"sub-{s + 1:02d}.npy", rdm)
    np.save(HERE / "brain_rdm.npy", np.mean(subjects, axis=0))
    (HERE / "order.txt").write_text("".join(p.name + "\n" for p in paths), encoding="utf-8")


if __name__ == "__main__":
    main()
