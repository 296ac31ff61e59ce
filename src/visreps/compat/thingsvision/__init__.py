"""THINGSvision 2.x's API on visreps' engine: scripts run with ``thingsvision`` → ``visreps.compat.thingsvision``.

.. code-block:: python

    from visreps.compat.thingsvision import get_extractor        # was: from thingsvision import get_extractor
    from visreps.compat.thingsvision.utils.data import ImageDataset, DataLoader
    from visreps.compat.thingsvision.utils.storing import save_features
    from visreps.compat.thingsvision.core.rsa import compute_rdm, correlate_rdms
    from visreps.compat.thingsvision.core.cka import get_cka

Modules, mirroring THINGSvision 2.7.3's paths:

* :mod:`.core.extraction`: :func:`get_extractor`, :func:`get_extractor_from_model` and the
  extractor (``extract_features``, ``get_transformations``, ``get_module_names`` ...), over
  :func:`visreps.load_model` and the extraction engine;
* :mod:`.utils.data`: ``ImageDataset`` (writes ``file_names.txt``), ``DataLoader``, ``load_batches``;
* :mod:`.utils.storing`: ``save_features``, ``split_features``, ``merge_features``, ``store_features``;
* :mod:`.core.rsa`: ``compute_rdm``, ``correlate_rdms``, ``plot_rdm``; :mod:`.core.cka`: ``get_cka``.

Each wrapper's docstring names the visreps call it maps to and what it fixes of 2.7.3's known
bugs. The first call from a script emits one ``DeprecationWarning`` per session pointing to the
native API (docs/thingsvision.md).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ._warn import warn_once
from .core.extraction import Extractor, get_extractor, get_extractor_from_model

__all__ = [
    "Extractor",
    "__version__",
    "center_features",
    "get_extractor",
    "get_extractor_from_model",
    "normalize_features",
]

#: the THINGSvision release whose API this package reproduces
__version__ = "2.7.3"


def center_features(X: Any) -> Any:
    """Subtract the column means in place and return ``X`` (2.x); maps to ``visreps.analysis.center_features``."""
    warn_once("visreps.compat.thingsvision.center_features")
    X -= X.mean(axis=0)
    return X


def normalize_features(X: Any) -> Any:
    """Divide every row by its L2 norm in place and return ``X`` (2.x); maps to
    ``visreps.analysis.normalize_features``. Fixed: an all-zero row stays zero (2.7.3 gave NaN)."""
    warn_once("visreps.compat.thingsvision.normalize_features")
    norms = np.linalg.norm(X, axis=1)[:, np.newaxis]
    X /= np.where(norms == 0, 1, norms)
    return X
