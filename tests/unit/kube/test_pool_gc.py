"""gc in a namespace: what no lease or pool owns goes; standalone engines and what another
live serve holds stay."""

from __future__ import annotations

from dockyard import labels
from dockyard.kube import serving
from dockyard.kube.pool import ClientSecret, plan_gc
from dockyard.pool import inventory
from dockyard.pool.inventory import Container, Inventory, Volume

NOW = 10_000.0
OLD = NOW - 1000


def engine(name, pool=None, created=OLD):
    own = labels.managed(labels.ROLE_ENGINE, engine=name)
    if pool:
        own[inventory.POOL] = pool
    return Container(name, name, own, running=True, ready=True, created_at=created)


def marker(name, pool, created=OLD):
    own = labels.managed(inventory.ROLE_LEASE, pool=pool, lease=name)
    return Volume(name, own, created)


def names(removals):
    return sorted((r.kind, r.name) for r in removals)


def test_unowned_pool_objects_go_standalone_engines_stay():
    found = Inventory((engine("p1", "ci"), engine("solo")), (marker("m1", "ci"),), ())
    clients = [ClientSecret("dockyard-lease-l1", "l1", "p1", OLD)]
    removals = plan_gc(found, clients, [], now=NOW, grace=300)
    assert names(removals) == [
        ("certs", "dockyard-lease-l1"), ("engine", "p1"), ("volume", "m1"),
    ]  # fmt: skip


def test_what_is_kept_or_live_stays():
    found = Inventory((engine("p1", "ci"),), (marker("m1", "ci"),), ())
    clients = [ClientSecret("dockyard-lease-l1", "l1", "p1", OLD)]
    kept = plan_gc(found, clients, [], now=NOW, grace=0, keep=frozenset({"p1", "m1"}),
                   live=frozenset({"l1"}))  # fmt: skip
    assert kept == []


def test_another_live_serve_pool_is_left_alone():
    found = Inventory((engine("p1", "ci"), engine("q1", "other")), (marker("m1", "ci"),), ())
    clients = [ClientSecret("dockyard-lease-l1", "l1", "p1", OLD)]
    removals = plan_gc(found, clients, [], now=NOW, grace=0, others=frozenset({"ci"}))
    assert names(removals) == [("engine", "q1")]


def test_young_objects_may_still_be_in_creation():
    found = Inventory((engine("p1", "ci", created=NOW - 10),), (), ())
    assert plan_gc(found, [], [], now=NOW, grace=300) == []
    assert names(plan_gc(found, [], [], now=NOW, grace=5)) == [("engine", "p1")]


def test_one_pool_only_when_named():
    found = Inventory((engine("p1", "ci"), engine("q1", "other")), (), ())
    assert names(plan_gc(found, [], [], now=NOW, grace=0, pool="other")) == [("engine", "q1")]


def test_leases_of_gone_serves_go_after_the_grace():
    gone = serving.Held("dockyard-serve-ci", "ci", "h/1/1", NOW - 100, serving.DURATION)
    assert names(plan_gc(Inventory((), (), ()), [], [gone], now=NOW, grace=0)) == [
        ("serve", "dockyard-serve-ci")
    ]
    assert plan_gc(Inventory((), (), ()), [], [gone], now=NOW, grace=300) == []
