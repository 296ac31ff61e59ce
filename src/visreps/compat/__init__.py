"""The 2021 THINGSvision API, kept working as thin wrappers over visreps's engine.

Scripts import it under its old names, :mod:`visreps.vision` and :mod:`visreps.model_class`
(small modules that re-export these). Modules, each importing only those listed after it:

* :mod:`~visreps.compat.vision`: the functions (``load_model``, ``load_dl``, ``save_features``,
  ``compute_rdm`` ...);
* :mod:`~visreps.compat.model_class`: the ``Model`` class;
* :mod:`~visreps.compat._core`: what both need (model names, ``show_model``, ``ImageLoader``,
  ``extract_features``);
* :mod:`~visreps.compat._files`: the 2021 file formats (single files, row-block splits, text slices);
* this package: :func:`deprecated`, the one decorator behind every ``DeprecationWarning``.
"""

from __future__ import annotations

import functools
import sys
import warnings
from collections.abc import Callable
from typing import Any, TypeVar

__all__ = ["README_SECTION", "deprecated"]

README_SECTION = "README section 'Coming from THINGSvision'"

F = TypeVar("F", bound=Callable[..., Any])


def _in_compat(module: str) -> bool:
    return module == __name__ or module.startswith(__name__ + ".")


def deprecated(new: str, *, name: str | None = None) -> Callable[[F], F]:
    """Make a function (or a class's ``__init__``) of the 2021 API warn that it is deprecated.

    Every call from a script emits one :class:`DeprecationWarning`,
    ``"<name> is the THINGSvision 2021 compatibility API; use <new> (README section 'Coming from
    THINGSvision')"``, attributed to the script's line (shown by default when that is in
    ``__main__``). Calls from inside :mod:`visreps.compat` (``compare_models`` loading models,
    ``Model.show`` asking for a module ...) do not warn: the script's own call already did, so the
    compatibility code calls the public functions themselves and no function exists twice.

    Args:
        new: the modern call to use instead.
        name: the deprecated name as scripts spell it (default ``visreps.vision.<function name>``).
    """

    def decorate(func: F) -> F:
        message = (
            f"{name or f'visreps.vision.{func.__name__}'} is the THINGSvision 2021 compatibility API; "
            f"use {new} ({README_SECTION})"
        )

        @functools.wraps(func)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            if not _in_compat(sys._getframe(1).f_globals.get("__name__") or ""):  # the caller's module
                warnings.warn(message, DeprecationWarning, stacklevel=2)
            return func(*args, **kwargs)

        return wrapper  # type: ignore[return-value]

    return decorate
