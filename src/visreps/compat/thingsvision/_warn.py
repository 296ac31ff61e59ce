"""The one warning of the THINGSvision 2.x compatibility layer: once per session, pointing to the native API."""

from __future__ import annotations

import sys
import warnings

#: where the two APIs are shown side by side
DOCS = "docs/thingsvision.md, 'Coming from THINGSvision 2.x'"

_state = {"warned": False}


def _from_compat(depth: int) -> bool:
    name = sys._getframe(depth).f_globals.get("__name__") or ""
    return name == "visreps.compat" or name.startswith("visreps.compat.")


def warn_once(name: str) -> None:
    """Emit one :class:`DeprecationWarning` per session, on the first call of any 2.x wrapper from a script.

    The message names the wrapper called and the native API (``visreps.load_model``,
    ``visreps.extract``, ``visreps.analysis``); it is attributed to the script's line (shown by
    default when that is ``__main__``). Calls from inside :mod:`visreps.compat` do not count.
    """
    if _state["warned"] or _from_compat(3):
        return
    _state["warned"] = True
    warnings.warn(
        f"{name} is visreps' THINGSvision 2.x compatibility API; the native API is visreps.load_model, "
        f"visreps.extract(model, images, layers=[...], out=folder) and visreps.analysis ({DOCS}). "
        "This warning is shown once per session.",
        DeprecationWarning,
        stacklevel=3,
    )


def reset() -> None:
    """Warn again on the next call (for tests)."""
    _state["warned"] = False
