"""The ``visreps`` command line: the ``main`` group, its error handling, and its commands.

Every error is one line on stderr and exit code 2; Ctrl-C says what was done and exits 130.
Each family of commands lives in a module of its own (:mod:`.extract`, :mod:`.models`,
:mod:`.folders`, :mod:`.text`, :mod:`.rsa`, :mod:`.compare`, :mod:`.cka`...) that imports only
:mod:`._base`; this module adds them to ``main``. Heavy libraries are imported inside the commands,
so ``visreps --help`` starts fast.
"""

from __future__ import annotations

from typing import IO, Any

import click

from ..errors import ExtractionInterrupted, VisrepsError
from . import align, behaviour, bench, cka, compare, encode, extract, folders, models, rsa, text

__all__ = ["VisrepsGroup", "main"]


class _Error(click.ClickException):
    exit_code = 2

    def show(self, file: IO[Any] | None = None) -> None:
        click.echo(f"error: {self.format_message()}", err=True)


# click >= 8.2 signals "no arguments: print the help" with this usage error, which stays as click shows it
_NO_ARGS_IS_HELP = getattr(click.exceptions, "NoArgsIsHelpError", ())


def _usage_line(e: click.UsageError) -> _Error:
    """Click's usage error (unknown option or command, missing or bad argument) as one line naming `--help`."""
    path = e.ctx.command_path if e.ctx is not None else "visreps"
    message = " ".join(e.format_message().split())
    return _Error(f"{message} Run `{path} --help` for usage.")


def _warning_line(message: Any, category: Any, filename: str, lineno: int, file: Any = None, line: Any = None) -> None:
    click.echo(f"warning: {message}", err=True)


class VisrepsGroup(click.Group):
    """The ``visreps`` group: a :class:`VisrepsError` (and a missing file, or memory) becomes one line on
    stderr with exit code 2, and so does a usage error (bad option, missing argument), which points at
    ``--help``; Ctrl-C exits 130 after saying what was done."""

    def make_context(self, info_name: str | None, args: list[str], parent: click.Context | None = None, **extra: Any):
        try:
            return super().make_context(info_name, args, parent, **extra)
        except _NO_ARGS_IS_HELP:
            raise  # `visreps` alone prints the help
        except click.UsageError as e:  # an option of the group itself (`visreps --bogus`)
            raise _usage_line(e) from None

    def invoke(self, ctx: click.Context) -> Any:
        import warnings

        try:
            with warnings.catch_warnings():  # a warning is one line ("warning: ..."), not Python's file:line format
                warnings.showwarning = _warning_line
                return super().invoke(ctx)
        except _NO_ARGS_IS_HELP:
            raise
        except click.UsageError as e:  # a command's options and arguments, or an unknown command
            raise _usage_line(e) from None
        except ExtractionInterrupted as e:  # says how many images are done and how to resume
            click.echo(str(e), err=True)
            ctx.exit(130)
        except VisrepsError as e:
            raise _Error(str(e)) from None
        except KeyboardInterrupt:
            click.echo("interrupted", err=True)
            ctx.exit(130)
        except MemoryError:
            raise _Error("out of memory; lower --batch-size, or pool the layer (--pool avg)") from None
        except BrokenPipeError:  # `visreps models | head`: the reader left; say nothing more
            import os
            import sys

            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            ctx.exit(141)
        except OSError as e:  # a file the command reads or writes: name it instead of a traceback
            where = f" {e.filename!r}" if e.filename is not None else ""
            raise _Error(
                f"cannot access{where}: {e.strerror or e}; check the path, its permissions and free space"
            ) from None


@click.group(cls=VisrepsGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="visreps")
def main() -> None:
    """Extract hidden-layer activations of deep networks for a folder of images, and compare them."""


for _command in (
    extract.extract,
    models.layers,
    models.models,
    folders.merge,
    folders.verify,
    text.text,
    rsa.rsa,
    compare.compare,
    cka.cka,
    align.align,
    encode.encode,
    *behaviour.COMMANDS,
    bench.bench,
):
    main.add_command(_command)
del _command
