"""State helpers: what is created inside ``created_with_mode`` is never wider than asked."""

import os
import socket
import stat

import pytest

from dockyard import state
from dockyard.errors import DockyardError


def test_a_socket_bound_inside_has_the_mode_from_its_first_instant(tmp_path):
    before = os.umask(0o022)
    try:
        with state.created_with_mode(0o660), socket.socket(socket.AF_UNIX) as sock:
            sock.bind(str(tmp_path / "s.sock"))
            assert stat.S_IMODE((tmp_path / "s.sock").stat().st_mode) == 0o660
        assert os.umask(0o022) == 0o022  # restored
    finally:
        os.umask(before)


def test_the_umask_comes_back_after_an_error():
    before = os.umask(0o022)
    try:
        with pytest.raises(OSError, match="bind failed"), state.created_with_mode(0o600):
            raise OSError("bind failed")
        assert os.umask(0o022) == 0o022
    finally:
        os.umask(before)


def test_a_socket_nobody_listens_on_is_cleared(tmp_path):
    path = tmp_path / "s.sock"
    with socket.socket(socket.AF_UNIX) as dead:
        dead.bind(str(path))  # bound, never listening: what a killed server leaves
    state.clear_stale_socket(path)
    assert not path.exists()
    state.clear_stale_socket(path)  # nothing there: nothing to do


def test_a_live_servers_socket_and_other_files_are_left_alone(tmp_path):
    live = tmp_path / "live.sock"
    with socket.socket(socket.AF_UNIX) as server:
        server.bind(str(live))
        server.listen()
        with pytest.raises(DockyardError, match="server that is running"):
            state.clear_stale_socket(live)
        assert live.exists()
    plain = tmp_path / "notes.txt"
    plain.write_text("mine")
    with pytest.raises(DockyardError, match="not a socket"):
        state.clear_stale_socket(plain)
    assert plain.read_text() == "mine"
