"""Render every figure kind of visreps for the docs pages, from synthetic data (offline, a few seconds).

The docs build calls :func:`render` (``.ci/docs_hooks.py``) and serves the PNGs as ``figures/<name>.png``,
so the pages always show what the code draws now; nothing rendered is committed. Run by hand::

    python docs/figures/make_figures.py OUT_DIR

Seven sources as output folders (AlexNet pretrained and with two random seeds, ResNet-18 pretrained and
random, VGG-16 from a weights file, CORnet-S), 16 images in two categories, and two references ("hIT",
"mIT") of four subjects each, all drawn from one latent structure plus noise.
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd

N = 16
PATHS = [f"{'animals' if i < 8 else 'objects'}/img{i:02d}.png" for i in range(N)]
ALEX = ["features.2", "features.5", "features.12", "classifier.4"]
RES = ["layer1", "layer2", "layer3", "layer4", "fc"]
SOURCES = [
    ("alex_pre", "torchvision:alexnet", {"kind": "pretrained"}, ALEX, 0.5),
    ("alex_r1", "torchvision:alexnet", {"kind": "random", "seed": 1}, ALEX, 3.0),
    ("alex_r2", "torchvision:alexnet", {"kind": "random", "seed": 2}, ALEX, 3.0),
    ("res_pre", "timm:resnet18", {"kind": "pretrained"}, RES, 0.7),
    ("res_r1", "timm:resnet18", {"kind": "random", "seed": 1}, RES, 3.0),
    ("vgg", "torchvision:vgg16", {"kind": "file", "file": "vgg16_finetuned.safetensors"}, ["f30", "c4"], 1.0),
    ("cornet", "cornet:s", {"kind": "pretrained"}, ["V1", "V2", "V4", "IT"], 1.0),
]


def _folders(root: Path) -> tuple[list[Path], dict[str, Path]]:
    rng = np.random.default_rng(0)
    latent = rng.standard_normal((N, 6))
    latent[:8] += 1.5  # two categories
    folders = []
    for name, model, weights, layers, noise in SOURCES:
        f = root / name
        f.mkdir(parents=True)
        meta = {"model": model, "weights": weights, "status": "complete", "format": "npy", "layers": {}}
        for k, layer in enumerate(layers):
            X = latent @ rng.standard_normal((6, 20)) * (1 + k) / len(layers) + noise * rng.standard_normal((N, 20))
            np.save(f / f"{layer}.npy", X.astype(np.float32))
            meta["layers"][layer] = {"shape": [N, 20], "dtype": "float32", "file": f"{layer}.npy"}
        labels = [p.split("/")[0] for p in PATHS]
        pd.DataFrame({"index": range(N), "path": PATHS, "label": labels}).to_csv(f / "manifest.csv", index=False)
        (f / "metadata.json").write_text(json.dumps(meta))
        folders.append(f)
    from scipy.spatial.distance import pdist, squareform

    refs = {}
    for k, name in enumerate(("hIT", "mIT")):
        r = np.random.default_rng(k + 1)
        stack = np.stack([squareform(pdist(latent + 0.8 * r.standard_normal((N, 6)), "correlation")) for _ in range(4)])
        refs[name] = root / f"{name}.npy"
        np.save(refs[name], stack)
    return folders, refs


def render(out: str | Path) -> list[Path]:
    """Write every figure kind as PNG into ``out``; returns the files."""
    from visreps.analysis import encode
    from visreps.analysis.compare import compare_features, compare_to_reference, rsa_inference
    from visreps.plotting import (
        plot_comparison,
        plot_encoding,
        plot_model_comparison,
        plot_rdm,
        plot_rdms,
        plot_reference_comparison,
    )

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        folders, refs = _folders(Path(tmp))
        kw = dict(noise_ceiling=True, bootstrap="subjects", n_bootstrap=100, test="pairwise")
        res = {name: rsa_inference(folders, path, **kw) for name, path in refs.items()}
        done = [
            plot_model_comparison(res, out / "inference_bars.png", title="RSA: seven networks vs IT", dpi=110),
            plot_model_comparison(res, out / "inference_curve.png", kind="curve", title="RSA by layer", dpi=110),
            plot_model_comparison(
                res["hIT"],
                out / "inference_relative.png",
                kind="curve",
                depth="relative",
                width="double",
                title="RSA by relative depth",
                dpi=110,
            ),  # fmt: skip
        ]
        small = [folders[0], folders[1], folders[3]]
        one = {"hIT": np.load(refs["hIT"])[0], "mIT": np.load(refs["mIT"])[0]}
        picked = {str(f): [lay] for f, lay in zip(small, ["features.12", "features.12", "layer4"])}
        ref = compare_to_reference(small, one, layers=picked, n_bootstrap=200)
        done.append(plot_reference_comparison(ref, out / "reference_bars.png", title="RSA: one subject", dpi=110))
        table, rdms = compare_features(small, return_rdms=True)
        done.append(plot_comparison(table, out / "heatmap.png", title="RSA: the layers compared", dpi=110))
        last = {k: v for k, v in rdms.items() if k.endswith(("classifier.4", "fc", "layer4"))}
        cats = [p.split("/")[0] for p in PATHS]
        done.append(plot_rdms(last, out / "rdms.png", categories=cats, order="category", rank=True, dpi=110))
        done.append(plot_rdm(next(iter(rdms.values())), out / "rdm.png", categories=cats, width="single", dpi=110))
        Y = np.random.default_rng(3).standard_normal((N, 30)) + np.load(folders[0] / "features.12.npy")[:, :1]
        enc = encode(small, Y, folds=4)
        done.append(plot_encoding(enc, out / "encoding.png", title="Encoding: ridge, cross-validated", dpi=110))
    del done
    return sorted(out.glob("*.png"))


if __name__ == "__main__":
    for p in render(sys.argv[1] if len(sys.argv) > 1 else "figures"):
        print(p)
