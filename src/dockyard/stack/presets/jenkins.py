"""The Jenkins LTS preset, wired the way Jenkins' own Docker install guide does it.

The guide's topology is the stack's: one network, the engine as ``docker`` with TLS on 2376,
``DOCKER_HOST``/``DOCKER_CERT_PATH``/``DOCKER_TLS_VERIFY`` in the Jenkins container, the
client certificates read-only at ``/certs/client``, the home volume on ``/var/jenkins_home``.
Its image (``jenkins/jenkins:lts-jdk17`` plus the docker CLI and the ``docker-workflow``
plugin) comes from Docker Hub and download.docker.com, which dockyard's build machines cannot
reach: :func:`dockerfile` is the recipe to build it elsewhere, and it is never built here.
The guide also publishes 50000, for inbound agents on other machines: a stack has none, so
only the UI port is published, on 127.0.0.1 and only when asked.
"""

from __future__ import annotations

from importlib import resources

from dockyard.images import recipes
from dockyard.stack.presets import Preset

HOME = "/var/jenkins_home"
UI_PORT = 8080
BASE_IMAGE = "jenkins/jenkins:lts-jdk17"
PLUGINS = ("blueocean", "docker-workflow")


def _packaged(name: str) -> str:
    return resources.files("dockyard.stack.presets").joinpath(f"files/jenkins/{name}").read_text()


def dockerfile() -> str:
    """The image recipe, as the guide writes it: build it with ``docker build -t IMAGE -``."""
    return _packaged("Dockerfile")


def jenkinsfile() -> str:
    """An example pipeline that builds and pushes ``examples/hello`` with ``sh`` steps."""
    return _packaged("Jenkinsfile")


PRESET = Preset(
    name="jenkins",
    image=f"dockyard/jenkins:{recipes.TAG}",
    image_role=None,  # pulled or built elsewhere: see dockerfile()
    home=HOME,
    ui_port=UI_PORT,
    user=None,  # the image's own user, jenkins
    uid=1000,
)
