"""The Jenkins LTS preset, wired the way Jenkins' own Docker install guide does it."""

from __future__ import annotations

from dockyard.images import recipes
from dockyard.stack.presets import Preset

PRESET = Preset(
    name="jenkins",
    image=f"dockyard/jenkins:{recipes.TAG}",
    image_role=None,
    home="/var/jenkins_home",
    ui_port=8080,
)
