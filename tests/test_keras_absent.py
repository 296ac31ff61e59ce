"""visreps works without TensorFlow: importing and listing never import it; loading a Keras model
without the extra says how to install it."""

from __future__ import annotations

import importlib.util
import subprocess
import sys

import pytest

from visreps.errors import MissingExtraError

pytestmark = pytest.mark.slow  # subprocesses / a heavy backend: not in the fast subset

TF_INSTALLED = importlib.util.find_spec("tensorflow") is not None


def test_import_and_listing_do_not_import_tensorflow():
    code = (
        "import sys, visreps\n"
        "visreps.list_models(source='torchvision')\n"
        "names = visreps.list_models(source='keras')\n"
        "assert 'keras:ResNet50' in names, names[:5]\n"
        "visreps.models.available_offline('keras:ResNet50')\n"
        "heavy = sorted(m for m in sys.modules if m.split('.')[0] in ('tensorflow', 'keras'))\n"
        "assert not heavy, heavy\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=300)


def _load_resnet():
    import visreps

    visreps.load_model("keras:ResNet50", pretrained=False)


@pytest.mark.skipif(TF_INSTALLED, reason="TensorFlow is installed (the simulated case below runs instead)")
def test_missing_extra_error_without_tensorflow():
    with pytest.raises(MissingExtraError, match=r"pip install 'visreps\[keras\]'"):
        _load_resnet()


def test_missing_extra_error_when_keras_cannot_be_found(monkeypatch):
    # None in sys.modules makes find_spec and import fail as if the packages were not installed
    monkeypatch.setitem(sys.modules, "keras", None)
    monkeypatch.setitem(sys.modules, "tensorflow", None)
    with pytest.raises(MissingExtraError, match=r"pip install 'visreps\[keras\]'"):
        _load_resnet()
