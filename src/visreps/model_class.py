"""``from visreps.model_class import Model``: the ``Model`` class of the THINGSvision paper (2021).

The code lives in :mod:`visreps.compat.model_class`; this module re-exports it under the name
scripts use (README section "Coming from THINGSvision").
"""

from .compat.model_class import Model

__all__ = ["Model"]
