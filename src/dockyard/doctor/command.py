"""The ``dockyard doctor`` command: gather, check, render (rich, or ``--json``); exit 1 on a
failure so scripts and CI can gate on it."""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.markup import escape

if TYPE_CHECKING:  # the CLI imports this module at start: the checks load when run
    from dockyard.doctor.checks import Finding

DETAIL_LINES = 8  # of a log tail shown under a failure; --json has all of it
_MARKS = {"ok": "[green]✓[/]", "warn": "[yellow]![/]", "fail": "[bold red]✗[/]"}


def doctor(
    stack: Annotated[str, typer.Option("--stack", "-s", help="stack name")] = "dockyard",
    as_json: Annotated[bool, typer.Option("--json", help="machine-readable output")] = False,
) -> None:
    """Find what is wrong with a stack, seen from its CI container, and say how to fix it.

    Exits 1 when a check fails; warnings (vfs, the plaintext start-up delay) do not.
    """
    from dockyard.doctor import checks, gather

    findings = checks.diagnose(gather.gather(stack))
    healthy = checks.healthy(findings)
    if as_json:
        document = {
            "stack": stack,
            "healthy": healthy,
            "findings": [finding.as_dict() for finding in findings],
        }
        typer.echo(json.dumps(document, indent=2))
    else:
        render(stack, findings, Console(soft_wrap=True, width=None if sys.stdout.isatty() else 240))
    if not healthy:
        raise typer.Exit(1)


def render(stack: str, findings: Sequence[Finding], console: Console) -> None:
    """One line per check; under each problem its fix and the end of its log."""
    width = max((len(f.check) for f in findings), default=0)
    for finding in findings:
        console.print(f"{_MARKS[finding.status]} {finding.check:<{width}}  {escape(finding.cause)}")
        indent = " " * (width + 4)
        if finding.status != "ok" and finding.fix:
            console.print(f"{indent}[bold]fix:[/] {escape(finding.fix)}")
        if finding.status != "ok" and finding.detail:
            for line in finding.detail.splitlines()[-DETAIL_LINES:]:
                console.print(f"{indent}[dim]│ {escape(line)}[/]")
    failed = sum(f.status == "fail" for f in findings)
    warned = sum(f.status == "warn" for f in findings)
    if failed:
        console.print(
            f"stack [bold]{stack}[/]: [bold red]{failed} problem(s)[/], {warned} warning(s)"
        )
    else:
        console.print(f"stack [bold]{stack}[/]: [green]healthy[/], {warned} warning(s)")
