"""Mirror config -> the cache container, its registry config and its eviction loop: pure.

dockerd sends ``--registry-mirror`` only pulls of Docker Hub names (``debian:12``,
``library/...``); other registries are reached through the cache by name
(``dockyard-mirror-HASH:5000/NAME``). The distribution registry keeps no size limit of its
own, so the container runs a small supervisor that evicts the oldest blobs past ``max_size``
(a proxy re-fetches an evicted blob on the next pull) and restarts the registry when it exits
(2.8 exits at start when the upstream is unreachable).
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from dockyard import labels
from dockyard.config import MirrorConfig

PORT = 5000
DEBUG_PORT = 5001  # expvar counters; bound to the container's loopback only
STORAGE = "/var/lib/docker-registry"
CONFIG_PATH = "/etc/dockyard/mirror.yml"
SCRIPT_PATH = "/etc/dockyard/mirror.sh"
AUTH_PATH = "/etc/dockyard/upstream-auth"  # base64 user:password, 0600, for the probe
LIMIT_PATH = "/etc/dockyard/mirror-limit-kb"  # max_size, rewritten in place: no restart
ROLE_MIRROR = "mirror"
ROLE_MIRROR_DATA = "mirror-data"
UPSTREAM = labels.PREFIX + "upstream"
AUTHENTICATED = labels.PREFIX + "authenticated"  # "true" when credentials are configured
SPEC_HASH = labels.PREFIX + "spec-hash"
EVICT_EVERY = 5  # seconds between size checks
EVICT_TO = 0.9  # evict down to this share of max_size, so one pull does not evict again


def name_of(upstream: str, username: str | None = None) -> str:
    """One cache per upstream (and login) on a host: named by them, so every user of it finds
    the same one, and two logins to one upstream never share what each may read."""
    key = upstream if username is None else f"{upstream}\n{username}"
    return f"dockyard-mirror-{hashlib.sha256(key.encode()).hexdigest()[:8]}"


def volume_of(name: str) -> str:
    return f"{name}-data"


def address(name: str) -> str:
    """``HOST:PORT`` engines reach the cache at (trusted over plain HTTP on its networks)."""
    return f"{name}:{PORT}"


def url(name: str) -> str:
    return f"http://{address(name)}"


def registry_config(cfg: MirrorConfig, password: str | None) -> str:
    """The registry's config (JSON is YAML): proxy mode, deletes on, no blob descriptor cache
    (a cached descriptor of an evicted blob would be served as a broken blob)."""
    proxy: dict[str, str] = {"remoteurl": cfg.upstream}
    if cfg.username:
        proxy["username"] = cfg.username
        proxy["password"] = password or ""
    document: dict[str, Any] = {
        "version": 0.1,
        "log": {"level": "info", "fields": {"service": "mirror"}},
        "storage": {"filesystem": {"rootdirectory": STORAGE}, "delete": {"enabled": True}},
        "http": {
            "addr": f":{PORT}",
            "headers": {"X-Content-Type-Options": ["nosniff"]},
            "debug": {"addr": f"127.0.0.1:{DEBUG_PORT}"},
        },
        "proxy": proxy,
    }
    return json.dumps(document, indent=2) + "\n"


def supervisor_script() -> str:
    """PID 2 of the cache container: runs the registry (restarting it) and evicts past the
    limit in :data:`LIMIT_PATH` (read each round, so a new ``max_size`` needs no restart),
    oldest blob first."""
    share = int(EVICT_TO * 100)
    return f"""#!/bin/sh
# dockyard mirror supervisor: keeps the registry running and its storage under max_size.
ROOT={STORAGE}
REGISTRY=/usr/bin/docker-registry
evict() {{
  LIMIT_KB=$(cat {LIMIT_PATH} 2>/dev/null || echo 0)
  [ "$LIMIT_KB" -gt 0 ] 2>/dev/null || return 0
  TARGET_KB=$((LIMIT_KB * {share} / 100))
  used=$(du -sk "$ROOT" | cut -f1)
  [ "$used" -le "$LIMIT_KB" ] && return 0
  echo "dockyard-mirror: ${{used}}k used, limit ${{LIMIT_KB}}k: evicting oldest blobs" >&2
  find "$ROOT/docker/registry/v2/blobs" -type f -name data -printf '%T@ %s %p\\n' \\
    | sort -n | while read -r _ size path; do
      [ "$used" -le "$TARGET_KB" ] && break
      rm -rf "${{path%/data}}"
      used=$((used - size / 1024))
      echo "dockyard-mirror: evicted ${{path%/data}}" >&2
    done
}}
( while :; do
    "$REGISTRY" serve {CONFIG_PATH}
    echo "dockyard-mirror: registry exited with $?, restarting in {EVICT_EVERY}s" >&2
    sleep {EVICT_EVERY}
  done ) &
while :; do evict; sleep {EVICT_EVERY}; done
"""


def spec_hash(cfg: MirrorConfig, image_id: str) -> str:
    """What defines the container (credentials by reference only: no secret in a label).
    Not ``max_size``: that is rewritten in place, so users of one cache with different
    limits do not restart it in turn (the last to start sets it)."""
    defined = [cfg.model_dump(mode="json", exclude={"max_size"}), image_id]
    defined += [registry_config(cfg, None), supervisor_script()]
    return hashlib.sha256(json.dumps(defined, sort_keys=True).encode()).hexdigest()[:16]


def mirror_labels(cfg: MirrorConfig, image_id: str) -> dict[str, str]:
    found = labels.managed(ROLE_MIRROR, mirror=name_of(cfg.upstream, cfg.username))
    found[UPSTREAM] = cfg.upstream
    found[AUTHENTICATED] = "true" if cfg.username else "false"
    found[SPEC_HASH] = spec_hash(cfg, image_id)
    return found


def create_body(cfg: MirrorConfig, image: str, image_id: str, network: str) -> dict[str, Any]:
    """The cache container: dockyard's own registry image, the supervisor as command. The
    config (with any password) is copied in 0600 before start: never in Env or Cmd."""
    name = name_of(cfg.upstream, cfg.username)
    return {
        "Image": image,
        "Entrypoint": ["sh"],
        "Cmd": [SCRIPT_PATH],
        "Hostname": name,
        "Labels": mirror_labels(cfg, image_id),
        "ExposedPorts": {f"{PORT}/tcp": {}},
        "HostConfig": {
            "Binds": [f"{volume_of(name)}:{STORAGE}"],
            "NetworkMode": network,
            "Init": True,
            "RestartPolicy": {"Name": "unless-stopped"},
        },
        "NetworkingConfig": {"EndpointsConfig": {network: {}}},
    }


def limit_file(cfg: MirrorConfig) -> dict[str, bytes]:
    return {LIMIT_PATH: f"{cfg.max_size // 1024}\n".encode()}


def files(cfg: MirrorConfig, password: str | None) -> dict[str, bytes]:
    found = {
        CONFIG_PATH: registry_config(cfg, password).encode(),
        SCRIPT_PATH: supervisor_script().encode(),
        **limit_file(cfg),
    }
    if cfg.username:
        found[AUTH_PATH] = base64.b64encode(f"{cfg.username}:{password or ''}".encode())
    return found


# --- reading it back -------------------------------------------------------------------------

SIZE_MARK = "dockyard-size-kb:"
LIMIT_MARK = "dockyard-limit-kb:"


def stats_command() -> list[str]:
    """Run inside the cache: its expvar counters (through bash's /dev/tcp: the image has no
    HTTP client) and the storage size."""
    fetch = (
        f"exec 3<>/dev/tcp/127.0.0.1/{DEBUG_PORT} && "
        "printf 'GET /debug/vars HTTP/1.0\\r\\n\\r\\n' >&3 && cat <&3"
    )
    sizes = f"echo {SIZE_MARK}$(du -sk {STORAGE} | cut -f1); echo {LIMIT_MARK}$(cat {LIMIT_PATH})"
    return ["bash", "-c", f"{fetch}; echo; {sizes}"]


@dataclass(frozen=True)
class Stats:
    hits: int = 0
    misses: int = 0
    bytes_pulled: int = 0  # from upstream
    bytes_served: int = 0  # to engines
    size: int = 0  # bytes on the volume
    max_size: int = 0  # the limit it evicts at
    running: bool = True  # the registry answered its debug port

    def as_dict(self) -> dict[str, Any]:
        return {
            "hits": self.hits,
            "misses": self.misses,
            "bytes_pulled": self.bytes_pulled,
            "bytes_served": self.bytes_served,
            "size": self.size,
            "max_size": self.max_size,
            "running": self.running,
        }


def parse_stats(output: str) -> Stats:
    """Hits and misses of blobs and manifests together, as the registry counts them."""
    size_kb, limit_kb = (
        int(found.group(1)) if (found := re.search(rf"{mark}(\d+)", output)) else 0
        for mark in (SIZE_MARK, LIMIT_MARK)
    )
    start = output.find("{")
    end = output.rfind("}")
    try:
        data = json.loads(output[start : end + 1]) if start >= 0 else {}
    except ValueError:
        data = {}
    proxy = (data.get("registry") or {}).get("proxy") or {}
    if not proxy:
        return Stats(size=size_kb * 1024, max_size=limit_kb * 1024, running=False)
    kinds = [proxy.get("blobs") or {}, proxy.get("manifests") or {}]
    return Stats(
        hits=sum(int(k.get("Hits", 0)) for k in kinds),
        misses=sum(int(k.get("Misses", 0)) for k in kinds),
        bytes_pulled=sum(int(k.get("BytesPulled", 0)) for k in kinds),
        bytes_served=sum(int(k.get("BytesPushed", 0)) for k in kinds),
        size=size_kb * 1024,
        max_size=limit_kb * 1024,
    )


def probe_command(upstream: str) -> list[str] | None:
    """Run inside the cache: ``GET /v2/`` of a plain-HTTP upstream, without and then with the
    cache's credentials (read from its 0600 file, never on a command line). The registry
    hides a refusal (it answers ``manifest unknown`` from its own store), so this is how
    credential trouble is named. None for HTTPS: bash speaks no TLS."""
    parts = urlsplit(upstream)
    if parts.scheme != "http" or not parts.hostname:
        return None
    host, port = parts.hostname, parts.port or 80
    request = (
        f"req() {{ exec 3<>/dev/tcp/{host}/{port} || return 1; "
        f"printf 'GET /v2/ HTTP/1.0\\r\\nHost: {host}\\r\\n%b\\r\\n' \"$1\" >&3; "
        "head -c 600 <&3 | tr -d '\\r' | grep -i -e '^HTTP/' -e '^www-authenticate'; "
        "exec 3<&-; }; "
    )
    script = (
        request + "echo @plain; req '' || exit 1; "
        f"if [ -s {AUTH_PATH} ]; then echo @auth; "
        f'req "Authorization: Basic $(cat {AUTH_PATH})\\r\\n"; fi'
    )
    return ["bash", "-c", script]


def judge_probe(output: str, code: int, *, credentials: bool) -> tuple[str, str, str] | None:
    """What the upstream's answers to the probe say is wrong, if anything."""
    sections: dict[str, list[str]] = {}
    current = ""
    for line in output.splitlines():
        if line.startswith("@"):
            current = line[1:].strip()
            sections[current] = []
        elif current:
            sections[current].append(line.strip())
    plain = sections.get("plain") or []
    if code != 0 or not plain or not plain[0].startswith("HTTP/"):
        return (
            "cannot reach its upstream",
            output.strip()[:200] or "no answer",
            "check mirror.upstream and that this host reaches it",
        )
    basic = any("basic" in line.lower() for line in plain[1:])
    if " 401" not in plain[0] or not basic:
        return None  # open, or token auth (Docker Hub's kind), which the registry speaks
    authed = sections.get("auth") or []
    if not credentials or not authed:
        return (
            "needs credentials for its upstream",
            plain[0],
            "set mirror.username and password_file or password_env",
        )
    if " 401" in authed[0]:
        return (
            "was refused by its upstream (credentials)",
            authed[0],
            "check mirror.username and the password its password_file or password_env holds",
        )
    return (
        "cannot log in to its upstream: it uses HTTP Basic auth, and the distribution "
        "registry's proxy sends credentials only to token servers",
        plain[0],
        "use an upstream with token auth (Docker Hub, Harbor, GitLab, a registry with "
        "auth: token), or one that allows anonymous pulls",
    )


_CAUSES = (
    (
        re.compile(r"dial tcp[^\"\n]*|no such host|connection refused|i/o timeout"),
        "cannot reach its upstream",
        "check mirror.upstream and that this host reaches it",
    ),
    (
        re.compile(r"unauthorized|authentication required|UNAUTHORIZED|incorrect username"),
        "was refused by its upstream (credentials)",
        "check mirror.username and the password its password_file or password_env holds",
    ),
    (
        re.compile(r"no space left on device"),
        "has a full storage volume",
        "lower mirror.max_size below the disk's free space, or free the disk",
    ),
)


def diagnose(log_text: str) -> tuple[str, str, str] | None:
    """The latest cause of trouble in the cache's own log: (what, evidence, fix), or None.

    Only lines after the registry last started count: a fixed cause must not linger."""
    recent = log_text.rsplit("debug server listening", 1)
    tail = recent[-1] if len(recent) > 1 else log_text
    # A start that panicked is the last start: keep its panic (which follows the marker).
    for pattern, what, fix in _CAUSES:
        found = [m.group(0) for m in pattern.finditer(tail)]
        if found:
            return what, found[-1][:200], fix
    return None
