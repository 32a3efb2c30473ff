"""The default CI container: dockyard's generic agent (docker CLI, git, bash, curl)."""

from dockyard.images import recipes
from dockyard.stack.presets import Preset

PRESET = Preset(
    name="agent",
    image=recipes.recipe(recipes.AGENT).ref,
    image_role=recipes.AGENT,
    home="/root",
    command=("sleep", "infinity"),
    workdir="/workspace",
)
