"""What every command shares on the terminal: its consoles and how a failure is shown.

A failure is two lines, the cause and the fix, then exit status 1; Docker engine errors nobody
anticipated are shown the same way instead of as a traceback.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import NoReturn, TypeVar

import typer
from rich.console import Console
from rich.markup import escape

from dockyard.errors import DockyardError

# Scripts read whole lines: when not on a terminal, do not wrap at 80 columns.
_WIDE = None if sys.stdout.isatty() else 240
out = Console(soft_wrap=True, width=_WIDE)
err = Console(stderr=True, soft_wrap=True, width=_WIDE)
T = TypeVar("T")


def fail(exc: DockyardError) -> NoReturn:
    err.print(f"[bold red]error:[/] {escape(exc.message)}", highlight=False)
    if exc.fix:
        err.print(f"[bold]fix:[/] {escape(exc.fix)}", highlight=False)
    raise typer.Exit(1)


def run(action: Callable[[], T]) -> T:
    """Run an API call; a DockyardError (or an unanticipated engine error) ends the command."""
    from docker.errors import DockerException

    try:
        try:
            return action()
        except DockerException as exc:
            raise DockyardError(
                f"the Docker engine refused: {str(exc).strip().splitlines()[-1]}",
                fix="see the engine's message; dockyard doctor explains stack failures",
            ) from exc
    except DockyardError as exc:
        fail(exc)
