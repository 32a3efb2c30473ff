"""``python -m dockyard``: the CLI, also how dockyard starts its own background guards."""

from dockyard.cli import main

main()
