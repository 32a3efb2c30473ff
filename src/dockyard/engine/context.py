"""Docker contexts for engines, written in the CLI's own on-disk format.

Writing the files directly (``~/.docker/contexts``) works without a docker CLI on the host;
the layout is the CLI's: ``meta/<sha256(name)>/meta.json`` and ``tls/<sha256>/docker/*.pem``.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

from dockyard import state


def config_dir() -> Path:
    return Path(os.environ.get("DOCKER_CONFIG") or Path.home() / ".docker")


def write(name: str, variables: dict[str, str]) -> str:
    """Create or replace context ``name`` pointing where ``variables`` (an engine env) say."""
    digest = hashlib.sha256(name.encode()).hexdigest()
    root = config_dir() / "contexts"
    tls = variables.get("DOCKER_TLS_VERIFY") == "1"
    meta = {
        "Name": name,
        "Metadata": {"Description": "dockyard engine"},
        "Endpoints": {"docker": {"Host": variables["DOCKER_HOST"], "SkipTLSVerify": False}},
    }
    state.write_private(root / "meta" / digest / "meta.json", json.dumps(meta).encode(), 0o644)
    if tls:
        source = Path(variables["DOCKER_CERT_PATH"])
        for pem in ("ca.pem", "cert.pem", "key.pem"):
            mode = 0o600 if pem == "key.pem" else 0o644
            state.write_private(
                root / "tls" / digest / "docker" / pem, (source / pem).read_bytes(), mode
            )
    return name
