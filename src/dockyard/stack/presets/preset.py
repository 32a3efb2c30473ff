"""The shape of a CI preset."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Preset:
    name: str
    image: str
    image_role: str | None = None  # dockyard image role to build when the image is missing
    home: str = "/root"  # the persistent home volume is mounted here
    entrypoint: tuple[str, ...] | None = None
    command: tuple[str, ...] | None = None
    workdir: str | None = None
    env: dict[str, str] = field(default_factory=dict)
    files: dict[str, bytes] = field(default_factory=dict)  # put in before the first start
    ui_port: int | None = None  # container port of a web UI, published on 127.0.0.1 on request
    user: str | None = None
    uid: int = 0  # the user the CI runs as owns the client certificates (the key is 0600)
