"""One winner among racers: the host lock fails fast naming its holder and dies with it; of
duplicate networks every racer agrees on the one to keep."""

import os
import signal
import subprocess
import sys
import time

import pytest

from dockyard import creator, exclusive
from dockyard.errors import DockyardError

HOLD = """
import sys, time
from dockyard import exclusive
with exclusive.held("engine", "same"):
    print("held", flush=True)
    time.sleep(60)
"""


@pytest.fixture
def state(tmp_path, monkeypatch):
    monkeypatch.setenv("DOCKYARD_STATE_DIR", str(tmp_path))
    return tmp_path


def hold(state):
    env = {**os.environ, "DOCKYARD_STATE_DIR": str(state)}
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLD], stdout=subprocess.PIPE, text=True, env=env
    )
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "held"
    return proc


def test_a_second_holder_fails_at_once_naming_the_first_and_a_killed_holder_frees_it(state):
    holder = hold(state)
    try:
        started = time.monotonic()
        busy = pytest.raises(DockyardError, match=rf"engine same is busy: .*pid {holder.pid}")
        with busy, exclusive.held("engine", "same"):
            pass
        assert time.monotonic() - started < 1  # no waiting
        assert exclusive.is_held("engine", "same")
        assert not exclusive.is_held("engine", "other")
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    assert not exclusive.is_held("engine", "same")
    with exclusive.held("engine", "same"):  # the kernel dropped the dead holder's lock
        assert exclusive.is_held("engine", "same") is True


def test_every_racer_keeps_the_same_network_the_oldest():
    copies = [
        {"Id": "b", "Created": "2026-12-01T21:00:00.12345Z"},
        {"Id": "a", "Created": "2026-12-01T21:00:00.123456789Z"},
        {"Id": "c", "Created": "2026-12-01T21:00:00Z"},
    ]
    assert exclusive.winner(copies) == "c"  # .0 is oldest though its text sorts last
    assert exclusive.winner(copies[:2]) == "b"  # trimmed zeros: .12345 is .123450000
    assert exclusive.winner(list(reversed(copies[:2]))) == "b"
    tied = [
        {"Id": "z", "Created": "2026-12-01T21:00:00Z"},
        {"Id": "y", "Created": "2026-12-01T21:00:00Z"},
    ]
    assert exclusive.winner(tied) == "y"


def test_a_creator_tag_is_alive_while_its_process_runs():
    assert creator.alive(creator.mine()) is True
    proc = subprocess.Popen(
        [sys.executable, "-c", "from dockyard import creator; print(creator.mine())"],
        stdout=subprocess.PIPE,
        text=True,
    )
    tag = proc.communicate()[0].strip()
    assert creator.alive(tag) is False  # gone: its objects are orphans
    host, pid, _ = creator.mine().split("/")
    assert creator.alive(f"{host}/{pid}/1") is False  # a reused pid is not the creator
    assert creator.alive(f"another-host/{pid}/1") is None  # cannot be known from here


def test_a_never_ready_engine_is_abandoned_only_when_its_maker_cannot_still_be_at_work():
    assert creator.abandoned(None, 0) is True  # made before makers were recorded
    assert creator.abandoned(creator.mine(), 10**6) is False  # its maker runs: never
    host, pid, _ = creator.mine().split("/")
    assert creator.abandoned(f"{host}/{pid}/1", 0) is True  # dead (a reused pid)
    assert creator.abandoned("elsewhere/1/1", 60) is False  # another host: wait
    assert creator.abandoned("elsewhere/1/1", creator.ABANDONED_AFTER + 1) is True
