"""The HTTP layer over a unix socket, with a stand-in service: routing, body checks, errors.

The real service behind it is exercised in tests/integration/pool."""

from __future__ import annotations

import threading

import pytest

from dockyard.errors import DockyardError
from dockyard.pool import api, client
from dockyard.pool.leases import Lease
from dockyard.pool.service import Grant, PoolError

LEASE = Lease("l1", "ci", "dockyard-ci-x", None, 123, "uid:0")


class StandIn:
    def __init__(self):
        self.asked = []

    def lease(self, pool, *, cache_key, ttl, owner):
        self.asked.append((pool, cache_key, ttl, owner))
        if pool == "full":
            raise PoolError(503, "pool full is at its maximum", "retry")
        return Grant(LEASE, "net", {"DOCKER_HOST": "tcp://dockyard-ci-x:2376"}, {"ca.pem": "x"})

    def list_leases(self):
        return [LEASE]

    def held(self, engine):
        return ("debian:12",) if engine == LEASE.engine else ()

    def get(self, lease_id):
        raise PoolError(404, f"no lease {lease_id!r}")

    def renew(self, lease_id, ttl, *, caller):
        self.asked.append(("renew", lease_id, ttl, caller))
        return LEASE

    def release(self, lease_id, *, caller):
        self.asked.append(("release", lease_id, None, caller))
        return LEASE


@pytest.fixture
def served(tmp_path):
    stand_in = StandIn()
    server = api.make_server(stand_in, f"unix://{tmp_path}/s.sock")
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield stand_in, client.Client(f"unix://{tmp_path}/s.sock", timeout=5)
    server.shutdown()
    server.server_close()


def test_a_lease_request_reaches_the_service_with_the_callers_uid(served):
    stand_in, api_client = served
    granted = api_client.call("POST", "/leases", {"pool": "ci", "ttl_seconds": 60})
    assert granted["engine"] == "dockyard-ci-x"
    assert granted["network"] == "net"
    ((pool, key, ttl, owner),) = stand_in.asked
    assert (pool, key, ttl) == ("ci", None, 60)
    assert owner.startswith("uid:")
    listed = api_client.call("GET", "/leases")[0]
    assert listed["id"] == "l1"
    assert listed["images"] == ["debian:12"]  # what its engine was seeded with


@pytest.mark.parametrize(
    ("body", "words"),
    [
        ({"ttl_seconds": "1h"}, "ttl_seconds: must be a int"),
        ({"pool": 3}, "pool: must be a str"),
        ({"colour": "red"}, "colour: unknown field"),
        ([], "body must be a JSON object"),
    ],
)
def test_bad_bodies_are_400_naming_the_field(served, body, words):
    _, api_client = served
    with pytest.raises(DockyardError, match="HTTP 400") as caught:
        api_client.call("POST", "/leases", body)
    assert words in caught.value.message


def test_service_refusals_keep_their_status_and_fix(served):
    _, api_client = served
    with pytest.raises(DockyardError, match="HTTP 503") as caught:
        api_client.call("POST", "/leases", {"pool": "full"})
    assert caught.value.fix == "retry"
    with pytest.raises(DockyardError, match="HTTP 404"):
        api_client.call("GET", "/leases/zz")
    with pytest.raises(DockyardError, match="no route"):
        api_client.call("GET", "/nothing")


def test_an_absent_server_says_how_to_start_one(tmp_path):
    with pytest.raises(DockyardError) as caught:
        client.Client(f"unix://{tmp_path}/none.sock").call("GET", "/healthz")
    assert "dockyard serve" in caught.value.fix


def test_renew_and_release_tell_the_service_who_asks(served):
    stand_in, api_client = served
    api_client.call("POST", "/leases/l1/renew", {"ttl_seconds": 120})
    api_client.call("DELETE", "/leases/l1")
    expected = [("renew", "l1", 120), ("release", "l1", None)]
    assert [asked[:3] for asked in stand_in.asked] == expected
    assert all(asked[3].startswith("uid:") for asked in stand_in.asked)
