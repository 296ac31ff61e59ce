"""Read + hash speed and memory of the image sources, side by side on the same photos.

The same N photos (500×375 JPEG crops, ``_photos.py``) as a JPEG folder, an HDF5 array chunked one
image per chunk, an HDF5 array stored contiguously, and a ``.npy`` file. For each source a child
process reads every image through :mod:`visreps.image_sources` (decode to RGB + content hash, no
model) and prints images/s and the growth of its peak RSS (``VmHWM``, Linux). For HDF5 it stays
far below the array's size: images are read by index, never loaded whole. A ``.npy`` file is
memory-mapped, so the pages it touched count in RSS as page cache the kernel can drop, not as
memory the process holds. Sources are run in turn, interleaved, three
rounds; the median is printed.

    python benchmarks/bench_image_sources.py [--n 1000] [--work DIR]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from _photos import make_photos

CHILD = """
import json, sys, time
from visreps.image_sources import open_source

def hwm_kb():  # this process's peak RSS (ru_maxrss would carry the parent's peak over fork + exec)
    return next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith("VmHWM"))

src = open_source(sys.argv[1])
items = src.items()
before = hwm_kb()
t0 = time.perf_counter()
for it in items:
    src.read(it)
dt = time.perf_counter() - t0
grew = hwm_kb() - before
print(json.dumps({"ips": len(items) / dt, "rss_mb": grew / 1024}))
"""


def make_sources(work: Path, n: int) -> dict[str, Path]:
    import h5py
    import numpy as np
    from PIL import Image

    folder = make_photos(work / "photos", n)
    files = sorted(folder.glob("*.jpg"))
    pixels = np.stack([np.asarray(Image.open(f).convert("RGB")) for f in files])
    with h5py.File(work / "chunked.h5", "w") as f:
        f.create_dataset("imgBrick", data=pixels, chunks=(1, *pixels.shape[1:]))
    with h5py.File(work / "contiguous.h5", "w") as f:
        f.create_dataset("imgBrick", data=pixels)
    np.save(work / "stimuli.npy", pixels)
    print(f"{n} photos {pixels.shape[1:]}, array {pixels.nbytes / 2**20:.0f} MB")
    return {
        "JPEG folder": folder,
        "HDF5 chunked": work / "chunked.h5",
        "HDF5 contiguous": work / "contiguous.h5",
        ".npy": work / "stimuli.npy",
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=1000)
    ap.add_argument("--work", type=Path, default=None)
    args = ap.parse_args()
    work = args.work or Path(tempfile.mkdtemp(prefix="visreps-bench-sources-"))
    work.mkdir(parents=True, exist_ok=True)
    sources = make_sources(work, args.n)
    runs: dict[str, list[dict]] = {k: [] for k in sources}
    for _ in range(3):
        for name, path in sources.items():
            out = subprocess.run([sys.executable, "-c", CHILD, str(path)], capture_output=True, text=True, check=True)
            runs[name].append(json.loads(out.stdout))
    print(f"{'source':<18} {'images/s':>9} {'peak RSS growth':>16}")
    for name, rs in runs.items():
        ips = statistics.median(r["ips"] for r in rs)
        rss = statistics.median(r["rss_mb"] for r in rs)
        print(f"{name:<18} {ips:>9.0f} {rss:>13.0f} MB")


if __name__ == "__main__":
    main()
