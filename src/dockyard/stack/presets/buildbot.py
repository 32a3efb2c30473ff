"""The Buildbot preset: a real CI server (master and one local worker) from Debian packages."""

from __future__ import annotations

from dockyard.images import recipes
from dockyard.stack.presets import Preset

PRESET = Preset(
    name="buildbot",
    image=f"dockyard/buildbot:{recipes.TAG}",
    image_role="buildbot",
    home="/var/lib/buildbot",
    ui_port=8010,
    env={"DOCKYARD_REGISTRY": "registry:5000"},
)
