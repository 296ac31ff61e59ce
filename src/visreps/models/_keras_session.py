"""Importing Keras 3 next to torch, and building a Keras model as in a fresh, seeded session.

torch (with ``triton`` when installed) is imported before TensorFlow: triton imported after TensorFlow
crashes the process. TensorFlow's start-up banners are silenced, and a missing extra is a
:class:`~visreps.errors.MissingExtraError` naming the install command.
"""

from __future__ import annotations

import collections
import contextlib
import importlib.util
import os
import random
import sys

import numpy as np

from ..errors import MissingExtraError

INSTALL_HINT = "pip install 'visreps[keras]'"


def import_keras():
    """Import Keras 3 (and its TensorFlow backend) safely next to torch, or say how to install it."""

    def spec(mod: str):
        try:
            return importlib.util.find_spec(mod)
        except (ImportError, ValueError):
            return None

    backend = os.environ.get("KERAS_BACKEND", "tensorflow")
    if spec("keras") is None or (backend == "tensorflow" and spec("tensorflow") is None):
        raise MissingExtraError(f"Keras models need TensorFlow and Keras 3, which are not installed: {INSTALL_HINT}")
    import torch  # noqa: F401  torch's own imports first: triton imported after TensorFlow segfaults

    # importing triton after TensorFlow segfaults: do it now, unless TensorFlow is already loaded
    # (then importing triton would crash, and torch has managed without it so far)
    if spec("triton") is not None and "tensorflow" not in sys.modules:
        try:
            import triton  # noqa: F401
        except Exception:  # noqa: BLE001 - a broken triton only matters to torch.compile
            pass
    quiet = "TF_CPP_MIN_LOG_LEVEL" not in os.environ and "keras" not in sys.modules
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # TensorFlow's C++ info and warnings
    try:
        with quiet_stderr(quiet):  # TensorFlow prints banners (oneDNN...) before its logging starts
            import keras
    except ImportError as e:
        raise MissingExtraError(f"cannot import Keras ({e}): {INSTALL_HINT}") from e
    major = int(str(getattr(keras, "__version__", "0")).split(".")[0] or 0)
    if major < 3:
        raise MissingExtraError(f"Keras {keras.__version__} is installed; visreps needs Keras 3: {INSTALL_HINT}")
    return keras


@contextlib.contextmanager
def quiet_stderr(enabled: bool = True):
    """Silence file descriptor 2 (C++ writes included) for the duration; Python exceptions still propagate."""
    if not enabled:
        yield
        return
    try:
        sys.stderr.flush()
        saved = os.dup(2)
        devnull = os.open(os.devnull, os.O_WRONLY)
    except (OSError, ValueError, AttributeError):
        yield
        return
    os.dup2(devnull, 2)
    try:
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


@contextlib.contextmanager
def fresh_names():
    """Build with Keras's layer-name counters as in a fresh session (``activation``, not ``activation_37``)."""
    try:
        from keras.src.backend.common import global_state
    except ImportError:  # pragma: no cover - Keras internals moved: names stay Keras's own
        yield
        return
    old = global_state.get_global_attribute("object_name_uids")
    fresh: collections.defaultdict = collections.defaultdict(int)
    global_state.set_global_attribute("object_name_uids", fresh)
    try:
        yield
    finally:
        if old is not None:
            for k, v in fresh.items():  # later user layers must not reuse names of this model
                old[k] = max(old.get(k, 0), v)
        global_state.set_global_attribute("object_name_uids", old if old is not None else fresh)


@contextlib.contextmanager
def seeded(keras, seed: int):
    """``keras.utils.set_random_seed(seed)`` for the build, without moving Python's or NumPy's global RNGs."""
    py_state, np_state = random.getstate(), np.random.get_state()
    keras.utils.set_random_seed(int(seed))
    try:
        yield
    finally:
        random.setstate(py_state)
        np.random.set_state(np_state)
