"""Click's usage errors (unknown option or command, missing or bad argument) are one line on stderr, exit code 2."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from visreps.cli import main


@pytest.mark.parametrize(
    "args, expected",
    [
        (["extract"], "error: Missing argument 'MODEL'. Run `visreps extract --help` for usage."),
        (
            ["extract", "m", "imgs", "--layer", "x"],
            "error: No such option '--layer'. Did you mean '--layers'? Run `visreps extract --help` for usage.",
        ),
        (
            ["extract", "m", "imgs", "-l", "x", "-o", "o", "--pool", "bad"],
            "error: Invalid value for '--pool': 'bad' is not one of 'flatten', 'none', 'avg', 'max', 'cls', "
            "'patch_mean'. Run `visreps extract --help` for usage.",
        ),
        (["nosuch"], "error: No such command 'nosuch'. Run `visreps --help` for usage."),
        (["--bogus"], "error: No such option '--bogus'. Run `visreps --help` for usage."),
        (["verify"], "error: Missing argument 'FOLDER'. Run `visreps verify --help` for usage."),
    ],
)
def test_usage_error_is_one_line_with_exit_code_2(args, expected):
    r = CliRunner().invoke(main, args, prog_name="visreps")
    assert r.exit_code == 2, r.output
    assert r.stdout == ""
    assert r.stderr.splitlines() == [expected]


def test_no_arguments_still_prints_the_help():
    r = CliRunner().invoke(main, [], prog_name="visreps")
    assert "Usage: visreps [OPTIONS] COMMAND" in r.output and "extract" in r.output
