"""``cultural-music`` command line: a thin layer that parses flags and calls the library.

Exit codes: 0 success; 1 a clear error (one line on stderr, ``--verbose`` adds the traceback);
2 bad usage; 130 interrupted.
"""

from __future__ import annotations

import sys
import traceback

import click

from cultural_music.cli import cache as cache_cmd
from cultural_music.cli import cv as cv_cmd
from cultural_music.cli import demo as demo_cmd
from cultural_music.cli import embed as embed_cmd
from cultural_music.cli import evaluate as evaluate_cmd
from cultural_music.cli import export as export_cmd
from cultural_music.cli import features as features_cmd
from cultural_music.cli import predict as predict_cmd
from cultural_music.cli import serve as serve_cmd
from cultural_music.cli import similar as similar_cmd
from cultural_music.cli import train as train_cmd
from cultural_music.errors import CulturalMusicError

__all__ = ["main", "cli", "COMMANDS"]


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--verbose", "-v", is_flag=True, help="Show full tracebacks on errors.")
@click.version_option(package_name="cultural-music")
@click.pass_context
def cli(ctx: click.Context, verbose: bool) -> None:
    """Learn kinds of music (or any folder-per-class audio) from folders, then name new recordings."""
    ctx.ensure_object(dict)
    ctx.obj["verbose"] = verbose


# Every command, by name (``cultural-music --help`` lists them sorted).
COMMANDS: tuple[click.Command, ...] = (
    cache_cmd.cache, cv_cmd.cv, demo_cmd.demo, embed_cmd.embed, evaluate_cmd.evaluate, export_cmd.export, features_cmd.features,
    train_cmd.models, predict_cmd.predict, serve_cmd.serve, similar_cmd.similar, train_cmd.train,
)
for _command in COMMANDS:
    cli.add_command(_command)


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the exit code (also used by tests)."""
    args = sys.argv[1:] if argv is None else argv
    try:
        cli.main(args=args, prog_name="cultural-music", standalone_mode=False)
    except click.exceptions.Exit as exc:
        return int(exc.exit_code or 0)
    except click.ClickException as exc:
        exc.show()
        return exc.exit_code
    except (click.exceptions.Abort, KeyboardInterrupt) as exc:
        click.echo("aborted" if isinstance(exc, click.exceptions.Abort) else "interrupted", err=True)
        return 130
    except MemoryError:
        click.echo("error: out of memory (try a smaller --batch-size or --workers 1)", err=True)
        return 1
    except (CulturalMusicError, OSError) as exc:
        if "--verbose" in args or "-v" in args:
            traceback.print_exc()
        click.echo(f"error: {_message(exc)}", err=True)
        return 1
    return 0  # commands report failure by raising (CulturalMusicError -> 1, usage -> 2)


def _message(exc: BaseException) -> str:
    """One line for an error: the package's own message, or ``FILE: reason`` for an OS error."""
    if isinstance(exc, OSError) and not isinstance(exc, CulturalMusicError):
        name = f"{exc.filename}: " if getattr(exc, "filename", None) else ""
        return f"{name}{exc.strerror or exc}"
    return str(exc)
