"""dockyard: Docker for containerized CI, done safely.

The importable API mirrors the CLI: see :mod:`dockyard.engine.service` for engines and
:mod:`dockyard.images.builder` for offline images.
"""

__version__ = "0.1.0"
