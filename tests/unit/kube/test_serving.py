"""Which pools a live serve holds: pure verdicts on its coordination Leases."""

from __future__ import annotations

from datetime import UTC, datetime

from dockyard import creator
from dockyard.kube import serving
from dockyard.kube.serving import Held

NOW = 1_000_000.0
ME = creator.mine()
DEAD_HERE = creator.mine().rsplit("/", 1)[0] + "/0"  # this host, this pid, another start time


def held(holder="other-host/7/1", renewed=NOW - 5, pool="ci"):
    return Held(serving.lease_name(pool), pool, holder, renewed, serving.DURATION)


def test_fresh_until_its_duration_has_passed():
    assert held(renewed=NOW - 29).fresh(NOW)
    assert not held(renewed=NOW - 30).fresh(NOW)


def test_a_pool_nobody_holds_or_i_hold_may_be_claimed():
    assert serving.claim_verdict(None, ME, NOW) is None
    assert serving.claim_verdict(held(holder=ME), ME, NOW) is None


def test_a_fresh_lease_of_another_serve_refuses_naming_it():
    why = serving.claim_verdict(held(), ME, NOW, holder_alive=None)
    assert why == (
        "pool ci is served by other-host/7/1 (its Lease dockyard-serve-ci was renewed 5 s ago)"
    )


def test_a_stale_lease_or_a_dead_holder_here_holds_nothing():
    assert serving.claim_verdict(held(renewed=NOW - 60), ME, NOW) is None
    assert serving.claim_verdict(held(holder=DEAD_HERE), ME, NOW, holder_alive=False) is None


def test_others_are_the_live_pools_of_other_serves():
    found = [
        held(pool="a"),  # another host, fresh: live
        held(pool="b", renewed=NOW - 300),  # stale
        held(pool="c", holder=ME),  # mine
        held(pool="d", holder=DEAD_HERE),  # provably dead here
    ]
    assert serving.others(found, ME, NOW) == frozenset({"a"})


def test_the_manifest_is_a_labelled_lease_of_the_pool():
    stamp = datetime.fromtimestamp(NOW, UTC)
    body = serving.manifest("ci", "ns", ME, stamp)
    assert body["kind"] == "Lease"
    assert body["metadata"]["name"] == "dockyard-serve-ci"
    assert body["metadata"]["labels"]["io.dockyard.pool"] == "ci"
    assert body["metadata"]["labels"]["io.dockyard.role"] == serving.ROLE_SERVE
    assert body["spec"]["holderIdentity"] == ME
    assert body["spec"]["leaseDurationSeconds"] == serving.DURATION
