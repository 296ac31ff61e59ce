"""``import visreps.vision as vision``: the 2021 THINGSvision functional API.

The code lives in :mod:`visreps.compat.vision`; this module re-exports it under the name scripts
use (README section "Coming from THINGSvision").
"""

from .compat.vision import *  # noqa: F403
from .compat.vision import (  # noqa: F401  (names outside __all__ that scripts and tests use)
    ENSEMBLE_WEIGHTS,
    ENSEMBLES,
    FILE_NAMES,
    README_SECTION,
    __all__,
    _read_class_file,
    model_id,
)
