"""``python -m visreps.cli``: the ``visreps`` command."""

from . import main

main()
