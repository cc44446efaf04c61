"""The `capbot` command line. Each command group lives in its own module and registers on import."""

from __future__ import annotations

import sys

import typer

from capbot.cli.root import app
from pydantic import ValidationError

from storage.errors import UserError

# Importing these modules registers their commands on `app` and its groups.
from capbot.cli import (  # noqa: E402,F401
    caption_cmds,
    data_cmds,
    db_cmds,
    download_cmds,
    eval_cmds,
    modal_cmds,
    models_cmds,
    retrain_cmds,
    run_cmds,
    train_cmds,
)


def command():  # type: ignore[no-untyped-def]
    """The whole command tree as click runs it, with its help polished (`capbot.cli.helptext`)."""
    import typer.main

    from capbot.cli.helptext import polish

    return polish(typer.main.get_command(app))


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; user errors print one line and exit non-zero, without a traceback."""
    try:
        command().main(args=argv, prog_name="capbot", standalone_mode=False)
    except UserError as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        return exc.exit_code
    except ValidationError as exc:  # a bad CAPBOT_* variable or .env line
        print(f"error: invalid settings: {_settings_problem(exc)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except SystemExit as exc:  # typer/click exit paths (--help, usage errors)
        return int(exc.code or 0)
    except typer.Abort:
        print("aborted", file=sys.stderr)
        return 1
    except typer.TyperException as exc:  # usage errors (bad or unknown options) with standalone_mode=False
        # typer vendors its own click, so the `click` package's exception classes never match these.
        show = getattr(exc, "show", None)
        if callable(show):
            show()
        else:
            print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    return 0


def _settings_problem(exc: ValidationError) -> str:
    first = exc.errors()[0]
    field = ".".join(str(part) for part in first["loc"])
    return f"CAPBOT_{field.upper()}: {first['msg']}" + (f" (and {exc.error_count() - 1} more)" if exc.error_count() > 1 else "")
