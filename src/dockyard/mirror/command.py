"""``dockyard mirror ls|rm``: the host's pull-through caches. Parse, call, render; no logic."""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from dockyard import ui

app = typer.Typer(
    help="Pull-through caches (one per upstream, shared by stacks and pools).",
    no_args_is_help=True,
)


@app.command("ls")
def ls(
    as_json: Annotated[bool, typer.Option("--json", help="machine-readable output")] = False,
) -> None:
    """Every cache: upstream, state, networks, hits, misses, size, and what is wrong."""
    from dockyard import docker_api
    from dockyard.mirror import service

    def gather() -> list[dict[str, Any]]:
        client = docker_api.shared()
        return [service.report(client, c["Name"].lstrip("/")) for c in service.ls(client)]

    found = ui.run(gather)
    if as_json:
        typer.echo(json.dumps(found, indent=2))
        return
    table = Table(
        "mirror", "upstream", "state", "hits", "misses", "size MiB", "networks", "problem"
    )
    for item in found:
        size = item.get("size", 0) / 1024**2
        limit = item.get("max_size", 0) / 1024**2
        table.add_row(
            str(item["name"]),
            str(item.get("upstream")),
            str(item["state"]),
            str(item.get("hits", "-")),
            str(item.get("misses", "-")),
            f"{size:.0f} / {limit:.0f}",
            ", ".join(item.get("networks") or ()),
            escape(str(item.get("problem") or "")),
        )
    ui.out.print(table)


@app.command("rm")
def rm(
    name: str,
    volumes: Annotated[bool, typer.Option(help="also remove its cached blobs")] = False,
) -> None:
    """Remove a cache (engines using it fall back to their upstream until it is back)."""
    from dockyard import docker_api
    from dockyard.mirror import service

    for removed in ui.run(lambda: service.rm(docker_api.shared(), name, volumes=volumes)):
        ui.out.print(f"removed {removed}")
