"""Build dockyard's images on the host engine from Debian packages: no registry is needed.

A root filesystem is made with ``debootstrap --variant=minbase`` (or from scratch for the
busybox base image), slimmed, given the recipe's files, and streamed as a tar into the
engine's image import. Each image carries its recipe hash in ``io.dockyard.recipe``, so an
image that already matches its recipe is never rebuilt unless forced.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import shutil
import signal
import struct
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import docker.errors

from dockyard import docker_api, labels, state
from dockyard.errors import DockyardError
from dockyard.images import recipes
from dockyard.images.recipes import Recipe

Progress = Callable[[str], None]

# .deb files survive between builds here, so a rebuild downloads nothing.
CACHE_DIR = Path("/var/cache/dockyard/debootstrap")
FALLBACK_MIRROR = "http://deb.debian.org/debian"
APT_DIR = Path("/etc/apt")

# What a container never needs: package indexes, downloaded .debs, documentation.
_SLIM = (
    "var/lib/apt/lists/*",
    "var/cache/apt/*.bin",
    "var/cache/apt/archives/*.deb",
    "usr/share/doc/*",
    "usr/share/man/*",
    "usr/share/info/*",
    "usr/share/locale/*",
)
_NETWORK_MARKERS = ("Failed getting release file", "Couldn't download", "Failure while")
_LOG_LINES = 15


@dataclass(frozen=True)
class BuildResult:
    image: str
    built: bool
    seconds: float


def build(role: str, *, force: bool = False, progress: Progress | None = None) -> BuildResult:
    """Build the image for ``role`` unless an image with the same recipe hash exists."""
    return build_recipe(recipes.recipe(role), force=force, progress=progress)


def build_recipe(
    wanted: recipes.Recipe, *, force: bool = False, progress: Progress | None = None
) -> BuildResult:
    """Build ``wanted`` unless an image with the same recipe hash exists."""
    started = time.monotonic()
    say = progress or _quiet
    role = wanted.role
    digest = recipes.recipe_hash(wanted)
    client = docker_api.shared()
    say(f"check {wanted.ref}")
    if not force and _built_hash(client, wanted.ref) == digest:
        return BuildResult(wanted.ref, False, time.monotonic() - started)
    _preflight(wanted)
    with state.locked(f"image-{role}"):
        # Another process may have built it while this one waited for the lock.
        if not force and _built_hash(client, wanted.ref) == digest:
            return BuildResult(wanted.ref, False, time.monotonic() - started)
        replaced = _image_id(client, wanted.ref)
        with _work_dir(role) as work:
            root = work / "rootfs"
            if wanted.packages:
                mirror = debian_mirror()
                say(f"debootstrap {role} packages: {', '.join(wanted.packages)} from {mirror}")
                _debootstrap(wanted, root, mirror, work / "debootstrap.out")
                say("slim root filesystem")
                _slim(root)
            else:
                root.mkdir()
            say("add files")
            _add_files(wanted, root)
            say(f"import image {wanted.ref}")
            _import(client, wanted, root)
        if replaced is not None:
            _drop(client, replaced)
    return BuildResult(wanted.ref, True, time.monotonic() - started)


def ensure(role: str, *, progress: Progress | None = None) -> str:
    """The image reference for ``role``, built first if missing or out of date."""
    return build(role, progress=progress).image


def debian_mirror(suite: str = recipes.SUITE, apt_dir: Path = APT_DIR) -> str:
    """The first ``deb`` URI the host's apt uses for ``suite main``: it is known to answer."""
    for types, uris, suites, components in _apt_sources(apt_dir):
        if "deb" in types and suite in suites and "main" in components and uris:
            return uris[0].rstrip("/")
    return FALLBACK_MIRROR


def _apt_sources(
    apt_dir: Path,
) -> Iterator[tuple[list[str], list[str], list[str], list[str]]]:
    """(types, URIs, suites, components) of every enabled source, in apt's reading order."""
    parts = apt_dir / "sources.list.d"
    files = [apt_dir / "sources.list"]
    if parts.is_dir():
        files += sorted(p for p in parts.iterdir() if p.suffix in (".list", ".sources"))
    for path in files:
        if not path.is_file():
            continue
        text = path.read_text(errors="replace")
        if path.suffix == ".sources":
            yield from _deb822_sources(text)
        else:
            yield from _one_line_sources(text)


def _one_line_sources(text: str) -> Iterator[tuple[list[str], list[str], list[str], list[str]]]:
    for raw in text.splitlines():
        line = raw.split("#", 1)[0]
        if "[" in line:  # options such as [arch=amd64 signed-by=...]
            head, _, rest = line.partition("[")
            line = head + rest.partition("]")[2]
        words = line.split()
        if len(words) >= 3:
            yield [words[0]], [words[1]], [words[2]], words[3:]


def _deb822_sources(text: str) -> Iterator[tuple[list[str], list[str], list[str], list[str]]]:
    for stanza in text.split("\n\n"):
        fields: dict[str, str] = {}
        key = ""
        for line in stanza.splitlines():
            if line.startswith("#") or not line.strip():
                continue
            if line[0].isspace() and key:
                fields[key] += " " + line.strip()
            else:
                key, _, value = line.partition(":")
                key = key.strip().lower()
                fields[key] = value.strip()
        if fields.get("enabled", "yes").lower() == "no":
            continue
        yield (
            fields.get("types", "").split(),
            fields.get("uris", "").split(),
            fields.get("suites", "").split(),
            fields.get("components", "").split(),
        )


def _quiet(step: str) -> None:
    """The default progress callback: say nothing."""


def _built_hash(client: docker_api.DockerClient, ref: str) -> str | None:
    try:
        image = client.images.get(ref)
    except docker_api.NotFound:
        return None
    found: str | None = (image.labels or {}).get(labels.RECIPE)
    return found


def _image_id(client: docker_api.DockerClient, ref: str) -> str | None:
    try:
        return str(client.images.get(ref).id)
    except docker_api.NotFound:
        return None


def _preflight(recipe: Recipe) -> None:
    """Fail before any work when the host cannot build ``recipe``."""
    if recipe.packages:
        if os.geteuid() != 0:
            raise DockyardError(
                f"building the {recipe.role} image needs root (debootstrap creates device "
                "nodes and chroots)",
                fix="run the build as root, e.g. with sudo",
            )
        if shutil.which("debootstrap") is None:
            raise DockyardError(
                f"building the {recipe.role} image needs debootstrap, which is not installed",
                fix="apt-get install debootstrap",
            )
    for host in recipe.host_files.values():
        if not Path(host).is_file():
            raise DockyardError(
                f"the {recipe.role} image copies {host} from the host, which has none",
                fix="apt-get install busybox-static (it provides /bin/busybox)",
            )
    if recipe.busybox is not None:
        host = recipe.host_files.get(recipe.busybox, recipe.busybox)
        if not _is_static(Path(host)):
            raise DockyardError(
                f"{host} is dynamically linked: it cannot run in an image built from scratch",
                fix="apt-get install busybox-static (it replaces the dynamic busybox)",
            )


def _is_static(path: Path) -> bool:
    """True for an ELF64 little-endian executable without a program interpreter."""
    with path.open("rb") as handle:
        header = handle.read(64)
        if header[:6] != b"\x7fELF\x02\x01":
            return False
        (phoff,) = struct.unpack_from("<Q", header, 0x20)
        phentsize, phnum = struct.unpack_from("<HH", header, 0x36)
        handle.seek(phoff)
        table = handle.read(phentsize * phnum)
    pt_interp = 3
    return all(struct.unpack_from("<I", table, i * phentsize)[0] != pt_interp for i in range(phnum))


@contextlib.contextmanager
def _work_dir(role: str) -> Iterator[Path]:
    """A temporary directory removed on any exit, after unmounting what debootstrap left."""
    work = Path(tempfile.mkdtemp(prefix=f"dockyard-{role}-"))
    try:
        yield work
    finally:
        _unmount_under(work)
        shutil.rmtree(work)


def _unmount_under(path: Path) -> None:
    """Unmount what a killed debootstrap left mounted (/proc, /sys): rmtree must not enter it."""
    for point in sorted(_mounts_under(path), key=len, reverse=True):
        subprocess.run(["umount", "--lazy", point], check=False)
    if _mounts_under(path):
        raise DockyardError(
            f"could not unmount file systems under {path}, so it was left in place",
            fix=f"unmount them (grep {path} /proc/mounts), then rm -rf {path}",
        )


def _mounts_under(path: Path) -> list[str]:
    prefix = str(path) + "/"
    points = (
        line.split()[4].encode().decode("unicode_escape")  # mountinfo escapes spaces as \040
        for line in Path("/proc/self/mountinfo").read_text().splitlines()
    )
    return [point for point in points if point.startswith(prefix)]


def _debootstrap(recipe: Recipe, root: Path, mirror: str, out: Path) -> None:
    CACHE_DIR.mkdir(parents=True, exist_ok=True)
    command = [
        "debootstrap",
        "--variant=minbase",
        f"--include={','.join(recipe.packages)}",
        f"--cache-dir={CACHE_DIR}",
        recipes.SUITE,
        str(root),
        mirror,
    ]
    # debootstrap writes the shared cache without locking it.
    with state.locked("debootstrap-cache"), out.open("wb") as log:
        process = subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            code = process.wait()
        finally:
            if process.returncode is None:
                _stop(process)
    if code != 0:
        text = out.read_text(errors="replace")
        tail = text.splitlines()[-_LOG_LINES:]
        detail = root / "debootstrap" / "debootstrap.log"
        if detail.is_file():
            tail += ["-- debootstrap.log --"]
            tail += detail.read_text(errors="replace").splitlines()[-_LOG_LINES:]
        if any(marker in text for marker in _NETWORK_MARKERS):
            fix = (
                f"check that the Debian mirror {mirror} answers from this host "
                "(apt-get update should work); dockyard uses the first bookworm main "
                "source in /etc/apt"
            )
        else:
            fix = f"check that {', '.join(recipe.packages)} exist in Debian {recipes.SUITE}"
        raise DockyardError(
            f"debootstrap for the {recipe.role} image failed (exit {code}):\n  "
            + "\n  ".join(tail),
            fix=fix,
        )


def _stop(process: subprocess.Popen[bytes]) -> None:
    """End debootstrap and its dpkg children; TERM lets it unmount what it mounted."""
    os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()


def _slim(root: Path) -> None:
    for pattern in _SLIM:
        for path in root.glob(pattern):
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path)
            else:
                path.unlink()


def _add_files(recipe: Recipe, root: Path) -> None:
    for inside, mode in recipe.dirs.items():
        directory = root / inside.lstrip("/")
        directory.mkdir(parents=True, exist_ok=True)
        directory.chmod(mode)
    for inside, (data, mode) in recipe.files.items():
        target = _inside(root, inside)
        target.write_bytes(data)
        target.chmod(mode)
    for inside, host in recipe.host_files.items():
        shutil.copy2(host, _inside(root, inside))
    if recipe.busybox is not None:
        binary = _inside(root, recipe.busybox)
        applets = subprocess.run(
            [str(binary), "--list"], check=True, capture_output=True, text=True
        ).stdout.split()
        for applet in applets:
            link = binary.parent / applet
            if not link.exists():
                link.symlink_to(binary.name)


def _inside(root: Path, path: str) -> Path:
    """``path`` of the image under ``root``, its parent directories created."""
    target = root / path.lstrip("/")
    target.parent.mkdir(parents=True, exist_ok=True)
    return target


def _import(client: docker_api.DockerClient, recipe: Recipe, root: Path) -> None:
    """Stream ``root`` as a tar into the engine, then tag it once the tar is known complete."""
    command = ["tar", "-C", str(root), "--numeric-owner", "-c", "."]
    if not recipe.packages:
        command[3:3] = ["--owner=0", "--group=0"]  # scratch files are root's, whoever builds
    tar = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert tar.stdout is not None
    assert tar.stderr is not None
    try:
        chunks = iter(functools.partial(tar.stdout.read, 1 << 20), b"")
        answer = client.api.import_image(
            src=chunks, changes=recipes.import_changes(recipe), stream_src=True
        )
    except docker.errors.APIError as exc:
        raise DockyardError(
            f"the engine refused to import the {recipe.role} image: {exc.explanation or exc}",
            fix="check the engine's free disk space and its log",
        ) from exc
    finally:
        tar.stdout.close()  # an interrupted import ends tar with SIGPIPE
        errors = tar.stderr.read().decode(errors="replace").strip()
        tar.wait()
    image_id = _imported_id(str(answer))
    if tar.returncode != 0:
        _drop(client, image_id)
        raise DockyardError(
            f"tar of the {recipe.role} root filesystem failed: {errors}",
            fix="check free space in the temporary directory (TMPDIR)",
        )
    client.api.tag(image_id, recipe.image, recipe.tag)


def _imported_id(answer: str) -> str:
    for line in answer.splitlines():
        if not line.strip():
            continue
        message = json.loads(line)
        if "error" in message:
            raise DockyardError(
                f"image import failed: {message['error']}",
                fix="check the engine's free disk space and its log",
            )
        status = str(message.get("status", ""))
        if status.startswith("sha256:"):
            return status
    raise DockyardError(f"image import gave no image id: {answer[:200]}", fix="retry the build")


def _drop(client: docker_api.DockerClient, image_id: str) -> None:
    """Remove an image nobody uses; one a container still uses stays until it is gone."""
    with contextlib.suppress(docker.errors.APIError):
        client.images.remove(image_id, noprune=False)
