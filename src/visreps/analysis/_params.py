"""The parameters the encoding and behaviour analyses share, each written once: the type of a layer selection,
and the checks of a choice from a fixed list (:mod:`visreps.options`), of a whole number with a least value and of
a bootstrap (resamples and interval level).

Each check raises :class:`~visreps.errors.VisrepsError` naming the parameter, the value given and what is valid.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from ..errors import VisrepsError

#: ``layers=`` of the analyses: layers of every folder (a list, or one comma-separated string), a dict folder or
#: model → layers, or ``None`` (all layers)
LayerSelection = Sequence[str] | Mapping[str, Sequence[str]] | str | None


def check_choice(value: Any, choices: Sequence[str], what: str, *, sep: str = "=") -> str:
    """``value`` lower-cased, if it is one of ``choices``; ``sep`` joins name and value in the message
    (``method='lasso'`` or ``kernel 'poly'``)."""
    v = str(value).lower()
    if v not in choices:
        raise VisrepsError(f"{what}{sep}{value!r} is not known; use one of {', '.join(choices)}")
    return v


def is_whole(value: Any) -> bool:
    """An integer (Python or numpy), not a bool."""
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


def check_count(value: Any, what: str, minimum: int | None = None) -> int:
    """``value`` as an int (a whole number, also as a float such as ``5.0``), at least ``minimum`` where given."""
    try:
        n = int(value)
    except (TypeError, ValueError):
        raise VisrepsError(f"{what} must be a whole number, got {value!r}") from None
    if isinstance(value, bool) or n != value:
        raise VisrepsError(f"{what} must be a whole number, got {value!r}")
    if minimum is not None and n < minimum:
        raise VisrepsError(f"{what} must be at least {minimum}, got {n}")
    return n


def check_bootstrap(n_bootstrap: Any, ci: Any, *, zero: str = "no interval") -> None:
    """``n_bootstrap`` a non-negative integer (``zero``: what 0 means) and ``ci`` a level strictly between 0 and 1."""
    if not is_whole(n_bootstrap) or n_bootstrap < 0:
        raise VisrepsError(f"n_bootstrap must be a non-negative integer (0: {zero}), got {n_bootstrap!r}")
    if not (isinstance(ci, (int, float)) and 0 < ci < 1):
        raise VisrepsError(f"ci must be a level between 0 and 1 (e.g. 0.95), got {ci!r}")
