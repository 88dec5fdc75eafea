"""The ``ledger`` command group, and the one place errors become exit codes.

Every command makes one library call. Errors are turned into a one-line
``Error: …`` and an exit code in one place, ``LedgerGroup.invoke``; the codes are
listed in ``ledger.errors``. The command modules register themselves on :func:`cli`.
"""

from __future__ import annotations

import os
import warnings
from typing import Any

import click

from ..errors import LedgerError, LedgerWarning

INTERNAL_ERROR = 70


#: Click's "no command given: here is the help" (8.2+), which is help, not an error.
_HELP_ERRORS = tuple(
    e for e in (getattr(click.exceptions, "NoArgsIsHelpError", None),) if e is not None
)


def _usage_error(ctx: click.Context, exc: click.UsageError) -> None:
    """A usage error (unknown option, missing argument, bad value or choice) as one
    ``Error: …`` line, exit 2, like every other error (click would print the usage and a
    hint as well); ``--help`` shows the usage."""
    if isinstance(exc, _HELP_ERRORS):
        raise exc
    click.echo(f"Error: {' '.join(exc.format_message().split())}", err=True)
    ctx.exit(exc.exit_code)


class LedgerGroup(click.Group):
    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        try:
            return super().parse_args(ctx, args)
        except click.UsageError as exc:  # (the group's own options: ledger --bogus)
            _usage_error(ctx, exc)
            raise  # pragma: no cover (ctx.exit raised)

    def invoke(self, ctx: click.Context) -> Any:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", LedgerWarning)
            result = self._invoke(ctx)
        # After the answer: each LedgerWarning as one line (a command that failed printed
        # its Error line instead); any other warning as Python would have shown it.
        seen: set[str] = set()
        for w in caught:
            if issubclass(w.category, LedgerWarning):
                if str(w.message) not in seen:
                    seen.add(str(w.message))
                    click.echo(f"Warning: {w.message}", err=True)
            else:
                warnings.showwarning(w.message, w.category, w.filename, w.lineno, w.file, w.line)
        return result

    def _invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except LedgerError as exc:
            click.echo(f"Error: {exc}", err=True)
            ctx.exit(exc.exit_code)
        except click.UsageError as exc:
            _usage_error(ctx, exc)
        except (click.exceptions.Exit, click.exceptions.Abort, click.ClickException):
            raise
        except KeyboardInterrupt:
            click.echo("Error: interrupted", err=True)
            ctx.exit(130)
        except BrokenPipeError:
            ctx.exit(0)
        except Exception as exc:  # a bug, not a user mistake: say so, keep it short
            if os.environ.get("LEDGER_DEBUG"):
                raise
            click.echo(
                f"Error: internal error ({type(exc).__name__}: {exc}); rerun with LEDGER_DEBUG=1"
                " for the traceback and please report it",
                err=True,
            )
            ctx.exit(INTERNAL_ERROR)


@click.group(cls=LedgerGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="ledger")
def cli() -> None:
    """Append-only, tamper-evident provenance ledger for ML model registries.

    Every register, approve and deploy is an Ed25519-signed, hash-chained event stored
    in Parquet. Set LEDGER_PATH and LEDGER_KEY to avoid repeating --ledger and --key.
    Every command's --help gives examples that run on the demo ledger.

    \b
    Examples:
      ledger demo
      ledger status --ledger demo-ledger
    """
