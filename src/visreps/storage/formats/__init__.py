"""The output formats: one module each, one :class:`~visreps.storage.formats._base.Format` object per module.

:data:`FORMATS` maps each name of :data:`visreps.options.FORMATS` to its format (``tests/test_formats.py`` ties
the two); :func:`get_format` resolves a name or an alias. Adding a format: write ``formats/<name>.py`` defining
``FORMAT``, and add its name to :data:`visreps.options.FORMATS`; the module is found by its name.
"""

from __future__ import annotations

from importlib import import_module

from ... import options
from ...errors import VisrepsError
from ._base import Format, safe_file_name

__all__ = ["FORMATS", "Format", "get_format", "safe_file_name"]

#: name → format, in the order of :data:`visreps.options.FORMATS`
FORMATS: dict[str, Format] = {name: import_module(f"{__name__}.{name}").FORMAT for name in options.FORMATS}
_ALIASES = {alias: f for f in FORMATS.values() for alias in f.aliases}


def get_format(fmt: str | Format) -> Format:
    """The format named ``fmt`` (any case; ``h5``/``hdf`` for ``hdf5``).

    Raises:
        VisrepsError: an unknown name, with the valid ones.
    """
    if isinstance(fmt, Format):
        return fmt
    name = str(fmt).lower()
    found = FORMATS.get(name) or _ALIASES.get(name)
    if found is None:
        raise VisrepsError(f"file format {fmt!r} is not supported; use one of {', '.join(FORMATS)}")
    return found
