import ast
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from conftest import EXAMPLES
from visreps.cli import main


def run(*args):
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


HEAVY = (
    "torch",
    "torchvision",
    "timm",
    "open_clip",
    "tensorflow",
    "keras",
    "numpy",
    "pandas",
    "scipy",
    "matplotlib",
    "PIL",
    "h5py",
    "ray",
)


def test_help_starts_fast_and_imports_no_torch():
    """`visreps --help` is fast because importing the CLI and printing the help import no heavy library.

    That is checked rather than timed: a clock limit (it was < 0.5 s for the import, < 5 s for --help)
    fails on a loaded machine although nothing is wrong.
    """
    code = (
        "import sys\n"
        "from visreps.cli import main\n"
        f"heavy = {HEAVY!r}\n"
        "print('imported:', *[m for m in heavy if m in sys.modules])\n"
        "try:\n"
        "    main(['--help'])\n"
        "except SystemExit as e:\n"
        "    assert not e.code, e.code\n"
        "print('imported:', *[m for m in heavy if m in sys.modules])\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.splitlines()
    assert out[0] == "imported:" and out[-1] == "imported:", (out[0], out[-1])  # after the import, after --help
    assert any(line.strip().startswith("extract") for line in out)  # the help was printed
    r = subprocess.run([sys.executable, "-m", "visreps.cli", "--help"], capture_output=True, text=True, check=False)
    assert r.returncode == 0 and "Usage:" in r.stdout, r.stderr


def test_command_modules_import_only_the_base_module():
    """visreps.cli is a package without cycles: command modules import ``_base`` (and lower layers), never each other
    nor the package; ``__init__`` imports ``_base`` and the command modules."""
    import visreps.cli

    folder = Path(visreps.cli.__file__).parent
    modules = {p.stem for p in folder.glob("*.py")}
    assert {"__init__", "__main__", "_base", "extract", "text", "rsa", "compare", "cka"} <= modules
    for path in folder.glob("*.py"):
        inside = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.level == 1:
                inside |= {node.module} if node.module else {a.name for a in node.names}
            elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("visreps.cli"):
                inside.add(node.module)
        if path.stem == "__main__":
            assert inside == {"main"}, inside  # `from . import main`: the group, from the package
        elif path.stem == "__init__":
            assert inside <= modules - {"__init__", "__main__"}, inside
        else:
            assert inside <= {"_base"}, (path.name, inside)


@pytest.mark.parametrize(
    "extra, engine, more",
    [
        ([], "local", {"num_workers": None}),
        (["--workers", "3"], "local", {"num_workers": 3}),
        (["--engine", "ray", "--allow-pickle"], ("ray", 2, None), {"allow_pickle": True}),
        (["--engine", "ray", "--ray-actors", "4", "--ray-address", "auto"], ("ray", 4, "auto"), {}),
    ],
)
def test_extract_passes_the_engine(monkeypatch, tmp_path, extra, engine, more):
    """--engine local runs in this process with --workers decoders; --engine ray hands RayEngine(...) to extract."""
    import visreps.extraction

    seen = {}
    monkeypatch.setattr(visreps.extraction, "extract", lambda model, images, **kw: seen.update(kw, model=model))
    r = run(
        "extract",
        "torchvision:alexnet",
        str(EXAMPLES),
        "--layers",
        "a, b",
        "--out",
        str(tmp_path / "o"),
        "-q",
        "--random",
        "--pool",
        "avg",
        "--batch-size",
        "auto",
        *extra,
    )
    assert r.exit_code == 0, r.output
    if isinstance(engine, str):
        assert seen["engine"] == engine
    else:
        assert (seen["engine"].name, seen["engine"].num_actors, seen["engine"].address) == engine
        assert "num_workers" not in seen
    for key, value in more.items():
        assert seen[key] == value
    assert seen["model"] == "torchvision:alexnet" and seen["layers"] == ["a", "b"] and seen["pool"] == "avg"
    assert seen["pretrained"] is False and seen["batch_size"] == "auto" and seen["progress"] is False
    assert seen["out"] == str(tmp_path / "o") and seen["format"] == "npy" and seen["command"].startswith("visreps")
    assert seen["allow_pickle"] is ("--allow-pickle" in extra)


def test_extract_and_outputs(tmp_path):
    r = run(
        "extract",
        "torchvision:alexnet",
        str(EXAMPLES),
        "--random",
        "--layers",
        "features.2,classifier.1",
        "--out",
        str(tmp_path / "o"),
        "-q",
        "--batch-size",
        "4",
    )
    assert r.exit_code == 0, r.output
    a = np.load(tmp_path / "o" / "features.2.npy")
    assert a.shape == (6, 64 * 27 * 27)


@pytest.mark.parametrize(
    "args, message",
    [
        (
            ["extract", "torchvision:alexnet", "NOPE", "--layers", "x", "--out", "o"],
            "image folder 'NOPE' does not exist",
        ),
        (
            ["extract", "torchvision:alexnet", str(EXAMPLES), "--random", "--layers", "features.99", "--out", "o"],
            "no layer 'features.99'; closest: features.9",
        ),
        (["extract", "nosuchmodel", str(EXAMPLES), "--layers", "x", "--out", "o"], "unknown model 'nosuchmodel'"),
        (
            [
                "extract",
                "torchvision:alexnet",
                str(EXAMPLES),
                "--weights",
                "missing.pth",
                "--layers",
                "x",
                "--out",
                "o",
            ],
            "weights file 'missing.pth' does not exist",
        ),
        (["layers", "timm:nosuch"], "timm has no model 'nosuch'"),
        (["models", "zzzzqqq"], "no model matches 'zzzzqqq'"),
    ],
)
def test_errors_are_one_line_exit_2(tmp_path, monkeypatch, args, message):
    monkeypatch.chdir(tmp_path)
    r = CliRunner().invoke(main, args)
    assert r.exit_code == 2, r.output
    lines = [ln for ln in r.output.strip().splitlines() if ln]
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], r.output
    assert "Traceback" not in r.output


def test_existing_output_refused_then_overwritten(tmp_path):
    args = [
        "extract",
        "torchvision:alexnet",
        str(EXAMPLES),
        "--random",
        "--layers",
        "features.0",
        "--out",
        str(tmp_path),
        "-q",
    ]
    assert run(*args).exit_code == 0
    r = CliRunner().invoke(main, args)
    assert r.exit_code == 2 and "--overwrite" in r.output
    assert run(*args, "--overwrite").exit_code == 0


def test_layers_tree_and_models_listing():
    r = run("layers", "torchvision:alexnet")
    assert r.exit_code == 0
    assert "features.0" in r.output and "(64, 55, 55)" in r.output and "Conv2d" in r.output
    r = run("models", "lite0")
    lines = r.output.splitlines()
    assert lines[0] == "timm (2 models)"
    assert any(line.startswith("  timm:tf_efficientnet_lite0  [offline]  (EfficientNet-Lite0") for line in lines)
    assert any(line.startswith("  timm:efficientnet_lite0  (") for line in lines)
    r = run("models", "lite0", "--offline-only")
    assert r.output.splitlines()[0] == "timm (1 model)"
    assert "    cite: Tan & Le, EfficientNet" in r.output and "    weights licence: Apache-2.0" in r.output
    assert r.output.splitlines()[-1].startswith("  timm:tf_efficientnet_lite0  [offline]  (EfficientNet-Lite0")


def test_layers_cornet_s_prints_the_seed_tree():
    """`visreps layers cornet:s` shows every module of the original CORnet-S print-out, same names and arguments."""
    import re

    from test_cornet import ORIGINAL_S_TREE

    r = run("layers", "cornet:s")
    assert r.exit_code == 0
    shown = {}
    for line in r.output.splitlines()[2:]:
        name, shape, module = re.split(r"\s{2,}", line.strip(), maxsplit=2)
        shown[name] = (shape, module.replace("bias=True, track", "track"))  # torch 2 prints BatchNorm's bias flag
    stack = []
    count = 0
    for line in ORIGINAL_S_TREE.splitlines()[1:]:
        m = re.match(r"^( *)\((\w+)\): (.*)$", line)
        if not m:
            continue
        depth = len(m.group(1)) // 2 - 1
        stack[depth:] = [m.group(2)]
        name = ".".join(stack)
        text = m.group(3)
        if text.endswith("("):  # a container: its class name
            assert shown[name][1].startswith(text), (name, shown[name])
        else:
            assert shown[name][1] == text, (name, shown[name], text)
        count += 1
    assert count == len(shown) == 71  # the same modules, none missing, none added
    for area, shape in [
        ("V1", "(64, 56, 56)"),
        ("V2", "(128, 28, 28)"),
        ("V4", "(256, 14, 14)"),
        ("IT", "(512, 7, 7)"),
        ("decoder.output", "(1000)"),
    ]:
        assert shown[area][0] == shape
