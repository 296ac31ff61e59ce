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

from .core.extraction import Extractor, center_features, get_extractor, get_extractor_from_model, normalize_features

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
