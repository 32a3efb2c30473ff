"""gc decisions over listed objects: what goes, what stays, and why."""

from __future__ import annotations

from dockyard import labels
from dockyard.pool import gc, inventory
from dockyard.pool.config import KeyedLimits
from dockyard.pool.inventory import Container, Inventory, Network, Volume

NOW = 1_000_000.0
OLD = NOW - 3600


def engine(name, pool="ci", ready=True, running=True, created=OLD, **extra):
    own = labels.own(labels.ROLE_ENGINE, engine=name, pool=pool, cache=f"dockyard-data-{name}")
    return Container(
        f"id-{name}", name, own | extra, running, ready, created, (f"dockyard-data-{name}",)
    )


def marker(lease, eng, expires, pool="ci"):
    own = labels.own("lease", lease=lease, pool=pool, engine=eng, expires=str(expires))
    return Volume(f"dockyard-lease-{lease}-{expires}", own, OLD)


def data(eng, pool="ci", created=OLD):
    return Volume(f"dockyard-data-{eng}", labels.own("pool-data", pool=pool, engine=eng), created)


def cache(key, index, created, pool="kc"):
    own = labels.own("pool-cache", pool=pool, cache_key=key, index=str(index), created=str(created))
    return Volume(f"c-{key}-{index}", own, created)


def names(removals):
    return sorted(r.name for r in removals)


def test_leased_engines_and_served_idle_engines_stay():
    found = Inventory(
        containers=(engine("a"), engine("b")),
        volumes=(marker("l1", "a", int(NOW) + 60), data("a"), data("b")),
    )
    assert gc.plan(found, now=NOW, served=frozenset({"ci"})) == []


def test_unserved_idle_engines_go_with_their_data_and_pool_network():
    found = Inventory(
        containers=(engine("b"),),
        volumes=(data("b"),),
        networks=(
            Network("n1", "dockyard-pool-ci", labels.own("network", pool="ci"), OLD, ("id-b",)),
        ),
    )
    removals = gc.plan(found, now=NOW)
    assert [(r.kind, r.name) for r in removals] == [
        ("engine", "b"),
        ("volume", "dockyard-data-b"),
        ("network", "dockyard-pool-ci"),
    ]
    assert "no serve" in removals[0].reason


def test_an_engine_whose_lease_ended_goes_even_in_a_served_pool():
    found = Inventory(
        containers=(engine("a"),), volumes=(marker("l1", "a", int(NOW) - 1), data("a"))
    )
    removals = gc.plan(found, now=NOW, served=frozenset({"ci"}))
    assert names(removals) == ["a", "dockyard-data-a", "dockyard-lease-l1-999999"]


def test_superseded_markers_go_and_the_latest_keeps_the_lease():
    found = Inventory(
        containers=(engine("a"),),
        volumes=(marker("l1", "a", int(NOW) + 10), marker("l1", "a", int(NOW) + 99), data("a")),
    )
    removals = gc.plan(found, now=NOW)
    assert names(removals) == [f"dockyard-lease-l1-{int(NOW) + 10}"]
    assert removals[0].reason == "superseded by a renewal"


def test_half_made_engines_wait_for_the_grace_period():
    young = engine("y", ready=False, created=NOW - 10)
    old = engine("o", ready=False, created=OLD)
    found = Inventory(containers=(young, old), volumes=(data("y", created=NOW - 10), data("o")))
    assert names(gc.plan(found, now=NOW)) == ["dockyard-data-o", "o"]
    assert names(gc.plan(found, now=NOW, grace=0)) == [
        "dockyard-data-o",
        "dockyard-data-y",
        "o",
        "y",
    ]


def test_stacks_standalone_engines_kept_names_and_other_pools_are_left_alone():
    standalone = Container("s", "ci", labels.own(labels.ROLE_ENGINE, engine="ci"), True, True, OLD)
    stacked = engine("st", **{labels.STACK: "dockyard"})
    found = Inventory(containers=(standalone, stacked, engine("k"), engine("other", pool="x")))
    assert names(gc.plan(found, now=NOW, keep=frozenset({"k"}), pool="ci")) == []


def test_helpers_of_gone_engines_and_old_probes_go():
    probe = Container("p", "probe", labels.own(labels.ROLE_PROBE, engine="ci"), False, False, OLD)
    orphan = Container("c", "cli", labels.own(labels.ROLE_CLIENT, engine="gone"), True, False, OLD)
    fresh = Container("f", "cli2", labels.own(labels.ROLE_CLIENT, engine="gone"), True, False, NOW)
    found = Inventory(containers=(probe, orphan, fresh))
    assert names(gc.plan(found, now=NOW)) == ["cli", "probe"]


def test_engine_networks_go_once_their_engine_is_gone():
    own = labels.own(labels.ROLE_NETWORK, engine="gone")
    found = Inventory(networks=(Network("n", "dockyard-gone", own, OLD, ()),))
    assert names(gc.plan(found, now=NOW)) == ["dockyard-gone"]
    busy = Inventory(networks=(Network("n", "dockyard-gone", own, OLD, ("someone",)),))
    assert gc.plan(busy, now=NOW) == []


def test_keyed_caches_beyond_age_or_count_go_unless_in_use():
    limits = {"kc": KeyedLimits(max_age=7200, max_count=2)}
    volumes = (
        cache("k", 1, NOW - 100),
        cache("k", 2, NOW - 200),
        cache("k", 3, NOW - 300),
        cache("k", 4, NOW - 9000),
        cache("j", 1, NOW - 9000),
    )
    user = Container(
        "u", "e", labels.own(labels.ROLE_ENGINE, engine="e", pool="kc"), True, True, OLD, ("c-j-1",)
    )
    removals = gc.plan(
        Inventory(containers=(user,), volumes=volumes),
        now=NOW,
        limits=limits,
        served=frozenset({"kc"}),
    )
    assert names(removals) == ["c-k-3", "c-k-4"]


def test_keyed_limits_fall_back_to_the_volume_labels():
    own = cache("k", 1, NOW - 500).labels | {inventory.MAX_AGE: "100"}
    assert names(gc.plan(Inventory(volumes=(Volume("v", own, NOW - 500),)), now=NOW)) == ["v"]


def test_certificate_dirs_of_ended_leases_go():
    dirs = [gc.CertDir("l1", OLD), gc.CertDir("l2", OLD), gc.CertDir("l3", NOW)]
    found = Inventory(containers=(engine("a"),), volumes=(marker("l1", "a", int(NOW) + 60),))
    removals = gc.plan(found, now=NOW, served=frozenset({"ci"}), cert_dirs=dirs)
    assert [(r.kind, r.name) for r in removals] == [("certs", "l2")]


def test_a_pull_through_cache_and_its_volume_are_never_reclaimed():
    """The cache is the host's, shared by pools and stacks: gc leaves it, used or not (and a
    pool network it is still joined to stays until ``dockyard mirror rm``)."""
    from dockyard.mirror import plan as mirror_plan

    name = "dockyard-mirror-ab12cd34"
    cache = Container(
        f"id-{name}", name, labels.own(mirror_plan.ROLE_MIRROR, mirror=name), True, True, OLD
    )
    volume = Volume(
        mirror_plan.volume_of(name), labels.own(mirror_plan.ROLE_MIRROR_DATA, mirror=name), OLD
    )
    network = Network(
        "n1", "dockyard-pool-ci", labels.own("network", pool="ci"), OLD, ("id-b", cache.id)
    )
    found = Inventory(
        containers=(engine("b"), cache), volumes=(data("b"), volume), networks=(network,)
    )
    removals = gc.plan(found, now=NOW, grace=0)
    assert [(r.kind, r.name) for r in removals] == [("engine", "b"), ("volume", "dockyard-data-b")]


# --- what a killed command left -------------------------------------------------------------

DEAD = "host/4242/777"


def standalone(name, ready, created=OLD, **extra):
    own = labels.own(labels.ROLE_ENGINE, engine=name, cache=f"dockyard-cache-{name}") | extra
    return Container(f"id-{name}", name, own, True, ready, created, (f"dockyard-cache-{name}",))


def test_a_standalone_engine_that_never_became_ready_goes_after_its_grace_with_its_network():
    network = Network("n1", "dockyard-x", labels.own("network", engine="x"), OLD, ("id-x",))
    found = Inventory(containers=(standalone("x", ready=False),), networks=(network,))
    removals = gc.plan(found, now=NOW)
    assert [(r.kind, r.name) for r in removals] == [("engine", "x"), ("network", "dockyard-x")]
    assert "never became ready" in removals[0].reason


def test_a_ready_young_or_locked_standalone_engine_stays():
    assert gc.plan(Inventory(containers=(standalone("x", ready=True),)), now=NOW) == []
    young = Inventory(containers=(standalone("x", ready=False, created=NOW - 5),))
    assert gc.plan(young, now=NOW) == []
    assert gc.plan(young, now=NOW, grace=0) != []
    locked = Inventory(containers=(standalone("x", ready=False),))
    assert gc.plan(locked, now=NOW, creating=frozenset({"x"})) == []


def test_what_a_dead_creator_made_goes_even_in_a_stack_and_a_live_ones_stays():
    tag = {"io.dockyard.creator": DEAD, "io.dockyard.stack": "s"}
    found = Inventory(
        containers=(standalone("s-verify-1", ready=True, created=NOW, **tag),),
        volumes=(Volume("dockyard-cache-s-verify-1", labels.own("engine-data") | tag, NOW),),
    )
    assert gc.plan(found, now=NOW) == []  # its creator may still run
    removals = gc.plan(found, now=NOW, orphaned=frozenset({DEAD}))
    assert [(r.kind, r.ident) for r in removals] == [
        ("engine", "s-verify-1"),
        ("volume", "dockyard-cache-s-verify-1"),
    ]
    assert DEAD in removals[0].reason
    assert gc.plan(found, now=NOW, orphaned=frozenset({DEAD}), pool="ci") == []
