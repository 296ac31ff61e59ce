"""Every fixed choice of the CLI is a tuple of :mod:`visreps.options`, and the library reads the same tuples."""

from __future__ import annotations

import sys

import click
import pytest

from visreps import options
from visreps.cli import main

OPTION_VALUES = {name: value for name, value in vars(options).items() if name.isupper() and isinstance(value, tuple)}


def _commands(group: click.Group, prefix: str = ""):
    for name, cmd in group.commands.items():
        if isinstance(cmd, click.Group):
            yield from _commands(cmd, f"{prefix}{name} ")
        else:
            yield f"{prefix}{name}", cmd


CHOICES = [
    (f"{command} {param.opts[0] if param.opts else param.name}", tuple(param.type.choices))
    for command, cmd in _commands(main)
    for param in cmd.params
    if isinstance(param.type, click.Choice)
]


def test_the_cli_has_choice_lists():
    assert len(CHOICES) >= 25, CHOICES


@pytest.mark.parametrize(("where", "choices"), CHOICES, ids=[w for w, _ in CHOICES])
def test_every_cli_choice_list_is_a_library_tuple(where, choices):
    matches = [name for name, value in OPTION_VALUES.items() if tuple(value) == choices]
    assert matches, f"{where}: {choices} is not a tuple of visreps.options; declare it there and import it"


def test_the_library_reads_the_same_tuples():
    from visreps import capture, pooling, reduce, storage, text
    from visreps.analysis import behaviour, compare, encoding, frrsa, inference, partition, responses, rsa
    from visreps.analysis import cka as cka_module
    from visreps.analysis import timeseries as ts
    from visreps.plotting import FIGURE_FORMATS

    assert storage.FORMATS is options.FORMATS
    assert pooling.POOL_MODES is options.POOL_MODES and text.TEXT_POOL_MODES is options.TEXT_POOL_MODES
    assert capture.PRECISIONS is options.PRECISIONS and capture.RECURRENT_MODES is options.RECURRENT_MODES
    assert reduce.METHODS is options.REDUCE_METHODS
    assert rsa.METHODS is options.RDM_METHODS and rsa.COMPARISONS is options.COMPARISONS
    cka = sys.modules[cka_module.__module__]
    assert cka.KERNELS is options.CKA_KERNELS and compare.SESSIONS is options.SESSIONS
    assert inference.TEST_TYPES is options.TEST_TYPES and inference.CORRECTIONS is options.CORRECTIONS
    assert inference.BOOTSTRAP_FACTORS is options.BOOTSTRAP_FACTORS
    assert encoding.METHODS is options.ENCODING_MODELS and encoding.INNER is options.INNER_CV
    assert encoding.SOLVERS is options.SOLVERS and responses.NAN_POLICIES is options.NAN_POLICIES
    assert partition.SCALES is options.PARTITION_SCALES and behaviour.SIMILARITIES is options.OOO_SIMILARITIES
    assert frrsa.MEASURES is options.FRRSA_MEASURES and ts.METHODS is options.CORRELATIONS
    assert FIGURE_FORMATS is options.FIGURE_FORMATS


def test_options_imports_nothing():
    import ast
    from pathlib import Path

    tree = ast.parse(Path(options.__file__).read_text(encoding="utf-8"))
    imports = [n for n in ast.walk(tree) if isinstance(n, (ast.Import, ast.ImportFrom))]
    assert [getattr(n, "module", None) for n in imports] == ["__future__"]
