"""CI presets: what the CI container of a stack is, as data.

A preset names its image (a dockyard image role to build offline, or an image users pull),
where its persistent home lives, the files it needs before start, and its web UI port.
Each lives in its own module with a ``PRESET``, loaded when asked for.
"""

from __future__ import annotations

import importlib

from dockyard.errors import DockyardError
from dockyard.stack.presets.preset import Preset

__all__ = ["NAMES", "Preset", "get"]
NAMES = ("agent", "buildbot", "jenkins")


def get(name: str) -> Preset:
    if name not in NAMES:
        raise DockyardError(f"unknown CI preset {name!r}", fix="use " + ", ".join(NAMES))
    preset: Preset = importlib.import_module(f"dockyard.stack.presets.{name}").PRESET
    return preset
