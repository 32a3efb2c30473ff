import io
import tarfile

from dockyard import archive


def members(data):
    with tarfile.open(fileobj=io.BytesIO(data)) as found:
        return {m.name: (m.mode, m.uid, m.isdir()) for m in found.getmembers()}


def test_keys_are_private_and_their_directory_too():
    found = members(
        archive.tar({"/certs/client/ca.pem": b"c", "/certs/client/key.pem": b"k"}, owner=1000)
    )
    assert found == {
        "certs/client": (0o700, 1000, True),
        "certs/client/ca.pem": (0o644, 1000, False),
        "certs/client/key.pem": (0o600, 1000, False),
    }


def test_other_directories_are_left_to_extraction():
    found = members(archive.tar({"/tmp/x/y.txt": b"y"}))
    assert found == {"tmp/x/y.txt": (0o644, 0, False)}  # no entry that could chmod /tmp


def test_contents_round_trip():
    data = archive.tar({"a/key.pem": b"secret", "b.txt": b"text"})
    with tarfile.open(fileobj=io.BytesIO(data)) as found:
        assert found.extractfile("a/key.pem").read() == b"secret"
        assert found.extractfile("b.txt").read() == b"text"
