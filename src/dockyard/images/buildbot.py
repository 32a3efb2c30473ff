"""The ``buildbot`` image's contents: a Buildbot master and worker from Debian packages.

Image recipes live with the images (the preset that runs this image imports from here, not the
other way round). Debian ships no ``buildbot-www``, and Buildbot 3.7 refuses to serve even its
REST API without a ``base`` www plugin, so the image carries a stand-in plugin.
"""

from __future__ import annotations

from importlib import resources

from dockyard.images import recipes

HOME = "/var/lib/buildbot"
UI_PORT = 8010
ENTRYPOINT = "/usr/local/bin/dockyard-buildbot"
# python3-ply by name: debootstrap does not resolve the virtual python3-ply-lex-3.10 that
# python3-pycparser (via autobahn, cffi) depends on.
PACKAGES = (
    "buildbot",
    "buildbot-worker",
    "python3-ply",
    "docker.io",
    "git",
    "ca-certificates",
    "curl",
)

_SITE = "/usr/lib/python3/dist-packages"
_PLUGIN = "dockyard_buildbot_www"
_PLUGIN_INIT = b'''"""dockyard's stand-in for buildbot-www: a page that points at the REST API."""

from buildbot.www.plugin import Application

ep = Application(__name__, "dockyard: REST API only (buildbot-www is not packaged in Debian)")
'''


def _packaged(name: str) -> bytes:
    return resources.files("dockyard.images").joinpath(f"files/buildbot/{name}").read_bytes()


def image_files() -> dict[str, tuple[bytes, int]]:
    """What the ``buildbot`` image adds to its packages: entrypoint, master.cfg, www stand-in."""
    dist_info = f"{_SITE}/{_PLUGIN}-{recipes.TAG}.dist-info"
    return {
        ENTRYPOINT: (_packaged("start.sh"), 0o755),
        "/etc/dockyard/buildbot/master.cfg": (_packaged("master.cfg"), 0o644),
        f"{_SITE}/{_PLUGIN}/__init__.py": (_PLUGIN_INIT, 0o644),
        f"{_SITE}/{_PLUGIN}/VERSION": (recipes.TAG.encode() + b"\n", 0o644),
        f"{_SITE}/{_PLUGIN}/static/index.html": (_packaged("index.html"), 0o644),
        f"{dist_info}/METADATA": (
            f"Metadata-Version: 2.1\nName: {_PLUGIN}\nVersion: {recipes.TAG}\n".encode(),
            0o644,
        ),
        # Buildbot finds www plugins by entry point: "base" is the one it insists on.
        f"{dist_info}/entry_points.txt": (f"[buildbot.www]\nbase = {_PLUGIN}:ep\n".encode(), 0o644),
    }
