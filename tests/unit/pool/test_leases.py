"""The lease state machine, transition by transition, then as a hypothesis state machine."""

from __future__ import annotations

import itertools
from dataclasses import replace

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from dockyard.pool import leases as lm

NOW = 1_000_000.0


def state(*pools, **extra):
    return lm.State(pools={p.name: p for p in pools}, **extra)


EPH = lm.PoolSpec("ci", warm=2, max=3)
KEYED = lm.PoolSpec("kc", warm=0, max=2, cache="keyed")


def tokens():
    return (f"t{i}" for i in itertools.count())


def warm(spec=EPH, now=NOW):
    """A pool whose refill finished: ``warm`` ready engines."""
    step = lm.refill(state(spec), tokens(), now=now)
    current = step.state
    for command in step.commands:
        current = lm.created(current, command.name, ok=True, now=now).state
    return current


# --- request -------------------------------------------------------------------------------------


def test_request_grants_the_oldest_idle_engine_and_orders_marker_before_certificate():
    current = warm()
    oldest = current.idle("ci")[0].name
    step = lm.request(current, "ci", cache_key=None, ttl=60, now=NOW, token="l1", owner="uid:0")
    assert step.outcome == lm.Granted(lm.Lease("l1", "ci", oldest, None, int(NOW) + 60, "uid:0"))
    assert [type(c) for c in step.commands] == [lm.WriteMarker, lm.IssueCert]
    assert step.state.engines[oldest].state == "leased"


def test_request_uses_the_pool_default_ttl():
    step = lm.request(warm(), "ci", cache_key=None, ttl=None, now=NOW, token="l1")
    assert step.outcome.lease.expires_at == int(NOW) + EPH.default_ttl


def test_request_without_idle_engine_creates_one_and_waits():
    step = lm.request(state(EPH), "ci", cache_key=None, ttl=60, now=NOW, token="ab")
    assert step.outcome == lm.Waiting("ab", "dockyard-ci-ab")
    (create,) = step.commands
    assert create == lm.CreateEngine("dockyard-ci-ab", "ci", "dockyard-data-dockyard-ci-ab")
    assert step.state.engines["dockyard-ci-ab"].state == "creating"
    done = lm.created(step.state, "dockyard-ci-ab", ok=True, now=NOW + 1)
    assert done.outcome.lease.expires_at == int(NOW) + 61  # the TTL counts from the grant
    assert [type(c) for c in done.commands] == [lm.WriteMarker, lm.IssueCert]


def test_request_refused_at_max_says_what_to_do():
    current = state(lm.PoolSpec("ci", warm=0, max=1))
    current = lm.request(current, "ci", cache_key=None, ttl=60, now=NOW, token="a").state
    step = lm.request(current, "ci", cache_key=None, ttl=60, now=NOW, token="b")
    assert step.outcome.status == 503
    assert "maximum of 1" in step.outcome.message
    assert "release" in step.outcome.fix
    assert step.state is current
    assert step.commands == ()


@pytest.mark.parametrize(
    ("pool", "key", "ttl", "status", "field"),
    [
        ("nope", None, 60, 404, "nope"),
        ("ci", "repo", 60, 400, "cache_key"),
        ("kc", None, 60, 400, "cache_key"),
        ("ci", None, 0, 400, "ttl_seconds"),
        ("ci", None, 86401, 400, "ttl_seconds"),
    ],
)
def test_bad_requests_are_refused_naming_the_field(pool, key, ttl, status, field):
    current = state(EPH, KEYED)
    step = lm.request(current, pool, cache_key=key, ttl=ttl, now=NOW, token="x")
    assert step.outcome.status == status
    assert field in step.outcome.message
    assert step.state is current


def test_a_retired_pool_is_unknown_to_new_requests():
    current = state(lm.PoolSpec("old", warm=0, max=0))
    assert lm.request(current, "old", cache_key=None, ttl=1, now=NOW, token="x").outcome.status == (
        404
    )


def test_failed_creation_refuses_the_waiting_lease_and_destroys_the_engine():
    step = lm.request(state(EPH), "ci", cache_key=None, ttl=60, now=NOW, token="ab")
    failed = lm.created(step.state, "dockyard-ci-ab", ok=False, now=NOW)
    assert failed.outcome.status == 503
    assert failed.state.engines == {}
    assert failed.state.pending == {}
    assert failed.commands == (
        lm.DestroyEngine("dockyard-ci-ab", "dockyard-data-dockyard-ci-ab", keep_volume=False),
    )


def test_created_for_an_unknown_engine_changes_nothing():
    current = warm()
    assert lm.created(current, "ghost", ok=True, now=NOW).state is current


# --- keyed caches --------------------------------------------------------------------------------


def test_keyed_lease_creates_a_volume_then_reuses_it_after_release():
    first = lm.request(state(KEYED), "kc", cache_key="org/repo", ttl=60, now=NOW, token="a")
    (create,) = first.commands
    assert create.new_cache is not None
    assert create.volume == lm.cache_volume("kc", "org/repo", 1)
    granted = lm.created(first.state, create.name, ok=True, now=NOW)
    released = lm.release(granted.state, "a")
    destroy = released.commands[0]
    assert destroy == lm.DestroyEngine(create.name, create.volume, keep_volume=True)
    again = lm.request(released.state, "kc", cache_key="org/repo", ttl=60, now=NOW, token="b")
    assert again.commands[0].volume == create.volume
    assert again.commands[0].new_cache is None


def test_two_concurrent_leases_of_one_key_get_separate_volumes():
    one = lm.request(state(KEYED), "kc", cache_key="k", ttl=60, now=NOW, token="a")
    two = lm.request(one.state, "kc", cache_key="k", ttl=60, now=NOW, token="b")
    assert one.commands[0].volume.endswith("-1")
    assert two.commands[0].volume.endswith("-2")


def test_keys_that_slug_alike_get_different_volumes():
    assert lm.key_slug("a/b") != lm.key_slug("a-b")
    assert lm.key_slug("A/B").startswith("a-b-")
    assert lm.key_slug("///") == lm.key_slug("///")[:6]
    one = lm.request(state(KEYED), "kc", cache_key="a/b", ttl=60, now=NOW, token="a")
    released = lm.release(lm.created(one.state, one.commands[0].name, ok=True, now=NOW).state, "a")
    other = lm.request(released.state, "kc", cache_key="a-b", ttl=60, now=NOW, token="b")
    assert other.commands[0].volume != one.commands[0].volume


# --- renew, release, expire ----------------------------------------------------------------------


def granted(now=NOW, ttl=60):
    step = lm.request(warm(), "ci", cache_key=None, ttl=ttl, now=now, token="l1")
    return step.state, step.outcome.lease


def test_renew_writes_the_new_marker_before_deleting_the_old():
    current, lease = granted()
    step = lm.renew(current, "l1", ttl=600, now=NOW + 30)
    renewed = step.outcome.lease
    assert renewed.expires_at == int(NOW) + 630
    assert step.commands == (lm.WriteMarker(renewed), lm.DeleteMarker(lease.marker))
    assert renewed.marker != lease.marker


def test_renew_to_the_same_second_changes_nothing():
    current, _ = granted()
    step = lm.renew(current, "l1", ttl=60, now=NOW)
    assert step.commands == ()
    assert step.state is current


def test_renew_and_release_of_unknown_lease_are_404():
    assert lm.renew(warm(), "x", ttl=1, now=NOW).outcome.status == 404
    assert lm.release(warm(), "x").outcome.status == 404
    current, _ = granted()
    assert lm.renew(current, "l1", ttl=10**9, now=NOW).outcome.status == 400


def test_release_destroys_the_engine_before_deleting_the_marker():
    current, lease = granted()
    step = lm.release(current, "l1")
    assert step.commands == (
        lm.DestroyEngine(lease.engine, lm.data_volume(lease.engine), keep_volume=False),
        lm.DeleteMarker(lease.marker),
        lm.RemoveCert("l1"),
    )
    assert lease.engine not in step.state.engines
    assert step.state.leases == {}


def test_expire_releases_only_leases_past_their_ttl():
    current, lease = granted(ttl=60)
    assert lm.expire(current, now=NOW + 59).commands == ()
    step = lm.expire(current, now=NOW + 60)
    assert step.state.leases == {}
    assert lm.DeleteMarker(lease.marker) in step.commands


# --- refill, reclaim ---------------------------------------------------------------------------


def test_refill_tops_up_to_warm_counting_engines_being_created():
    step = lm.refill(state(EPH), tokens(), now=NOW)
    assert len(step.commands) == 2
    assert lm.refill(step.state, tokens(), now=NOW).commands == ()


def test_refill_is_bounded_by_max_and_skips_keyed_pools():
    current, _ = granted()  # 2 warm, 1 now leased -> one more within max 3
    step = lm.refill(current, iter(["n1", "n2"]), now=NOW)
    assert [c.name for c in step.commands] == ["dockyard-ci-n1"]
    again = lm.refill(step.state, iter(["n3"]), now=NOW)
    assert again.commands == ()
    assert lm.refill(state(replace(KEYED, warm=1)), tokens(), now=NOW).commands == ()


def test_refill_does_not_count_an_engine_reserved_for_a_cold_lease():
    spec = lm.PoolSpec("ci", warm=1, max=3)
    cold = lm.request(state(spec), "ci", cache_key=None, ttl=60, now=NOW, token="c")
    assert len(lm.refill(cold.state, tokens(), now=NOW).commands) == 1


def test_reclaim_destroys_broken_orphaned_and_keyed_idle_engines():
    engines = {
        "b": lm.Engine("b", "ci", "broken", "vb"),
        "o": lm.Engine("o", "ci", "leased", "vo"),
        "k": lm.Engine("k", "kc", "ready", "vk", "key"),
        "r": lm.Engine("r", "gone", "ready", "vr"),
        "ok": lm.Engine("ok", "ci", "ready", "vok"),
    }
    step = lm.reclaim(state(EPH, KEYED, engines=engines))
    assert sorted(c.name for c in step.commands) == ["b", "k", "o", "r"]
    assert list(step.state.engines) == ["ok"]


def test_forget_engine_drops_its_lease():
    current, lease = granted()
    step = lm.forget_engine(current, lease.engine)
    assert step.state.leases == {}
    assert lm.DeleteMarker(lease.marker) in step.commands
    assert lm.forget_engine(step.state, lease.engine).commands == ()


# --- recovery -------------------------------------------------------------------------------------


def seen(name, pool="ci", ready=True, key=None):
    return lm.SeenEngine(name, pool, ready, f"v-{name}", key, NOW)


def marker(lease_id, engine, expires, pool="ci"):
    lease = lm.Lease(lease_id, pool, engine, None, expires)
    return lm.SeenMarker(lease.marker, lease)


def test_recover_takes_the_latest_marker_and_keeps_live_leases():
    step = lm.recover(
        [EPH],
        [seen("e1"), seen("e2")],
        [marker("l1", "e1", int(NOW) + 10), marker("l1", "e1", int(NOW) + 99)],
        [],
        now=NOW,
    )
    assert step.state.leases["l1"].expires_at == int(NOW) + 99
    assert step.state.engines["e1"].state == "leased"
    assert step.state.engines["e2"].state == "ready"
    assert step.commands == (lm.DeleteMarker(f"dockyard-lease-l1-{int(NOW) + 10}"),)


def test_recover_never_hands_out_an_engine_that_was_leased():
    step = lm.recover(
        [EPH],
        [seen("e1"), seen("e2", ready=False)],
        [marker("l1", "e1", int(NOW) - 1)],
        [],
        now=NOW,
    )
    assert step.state.engines == {}
    assert step.state.leases == {}
    names = [c.name for c in step.commands if isinstance(c, lm.DestroyEngine)]
    assert sorted(names) == ["e1", "e2"]
    # engines go first, then the markers
    kinds = [type(c) for c in step.commands]
    assert kinds.index(lm.DeleteMarker) > max(
        i for i, k in enumerate(kinds) if k is lm.DestroyEngine
    )


def test_recover_keeps_unknown_pools_as_retired_and_drops_markers_of_missing_engines():
    step = lm.recover(
        [],
        [seen("e1", pool="old")],
        [marker("l1", "e1", int(NOW) + 50, pool="old"), marker("l2", "gone", int(NOW) + 50)],
        [],
        now=NOW,
    )
    assert step.state.pools["old"].max == 0
    assert set(step.state.leases) == {"l1"}
    assert lm.DeleteMarker(f"dockyard-lease-l2-{int(NOW) + 50}") in step.commands


# --- the state machine under random operation ----------------------------------------------------


class PoolMachine(RuleBasedStateMachine):
    """Random requests, grants, failures, renewals, releases, expiries, refills and restarts."""

    def __init__(self) -> None:
        super().__init__()
        self.state = state(
            lm.PoolSpec("ci", warm=2, max=4), lm.PoolSpec("kc", warm=0, max=3, cache="keyed")
        )
        self.now = NOW
        self.counter = itertools.count()

    def token(self) -> str:
        return f"t{next(self.counter)}"

    def apply(self, step: lm.Step) -> lm.Step:
        self.state = step.state
        return step

    @rule(pool=st.sampled_from(["ci", "kc"]), key=st.sampled_from(["a", "b", "a/b"]))
    def request(self, pool, key):
        self.apply(
            lm.request(
                self.state,
                pool,
                cache_key=key if pool == "kc" else None,
                ttl=60,
                now=self.now,
                token=self.token(),
            )
        )

    @precondition(lambda self: any(e.state == "creating" for e in self.state.engines.values()))
    @rule(data=st.data(), ok=st.booleans())
    def finish_creation(self, data, ok):
        creating = sorted(n for n, e in self.state.engines.items() if e.state == "creating")
        self.apply(
            lm.created(self.state, data.draw(st.sampled_from(creating)), ok=ok, now=self.now)
        )

    @precondition(lambda self: bool(self.state.leases))
    @rule(data=st.data())
    def release(self, data):
        lease_id = data.draw(st.sampled_from(sorted(self.state.leases)))
        self.apply(lm.release(self.state, lease_id))

    @precondition(lambda self: bool(self.state.leases))
    @rule(data=st.data(), ttl=st.integers(1, 120))
    def renew(self, data, ttl):
        lease_id = data.draw(st.sampled_from(sorted(self.state.leases)))
        self.apply(lm.renew(self.state, lease_id, ttl=ttl, now=self.now))

    @rule(seconds=st.integers(0, 90))
    def time_passes(self, seconds):
        self.now += seconds
        self.apply(lm.expire(self.state, now=self.now))

    @rule()
    def refill(self):
        self.apply(lm.refill(self.state, (self.token() for _ in itertools.count()), now=self.now))

    @rule()
    def reclaim(self):
        self.apply(lm.reclaim(self.state))

    @rule()
    def restart(self):
        """kill -9 and recovery: only what labels would show survives."""
        current = self.state
        engines = [
            lm.SeenEngine(e.name, e.pool, e.state in ("ready", "leased"), e.volume, e.cache_key, 0)
            for e in current.engines.values()
        ]
        markers = [lm.SeenMarker(x.marker, x) for x in current.leases.values()]
        before = set(current.leases)
        step = self.apply(
            lm.recover(
                current.pools.values(), engines, markers, current.caches.values(), now=self.now
            )
        )
        assert set(step.state.leases) == {
            i for i in before if current.leases[i].expires_at > self.now
        }

    @invariant()
    def never_more_engines_than_max(self):
        for spec in self.state.pools.values():
            assert len(self.state.of_pool(spec.name)) <= spec.max

    @invariant()
    def never_two_leases_on_one_engine(self):
        engines = [lease.engine for lease in self.state.leases.values()]
        assert len(engines) == len(set(engines))
        for lease in self.state.leases.values():
            assert self.state.engines[lease.engine].state == "leased"

    @invariant()
    def never_two_engines_on_one_volume(self):
        volumes = [e.volume for e in self.state.engines.values()]
        assert len(volumes) == len(set(volumes))

    @invariant()
    def keyed_volumes_never_cross_keys(self):
        for engine in self.state.engines.values():
            cache = self.state.caches.get(engine.volume)
            if cache is not None:
                assert cache.key == engine.cache_key
                assert cache.pool == engine.pool
        for lease in self.state.leases.values():
            assert lease.cache_key == self.state.engines[lease.engine].cache_key


TestPoolMachine = PoolMachine.TestCase
TestPoolMachine.settings = settings(max_examples=150, stateful_step_count=40, deadline=None)


def test_request_waits_for_an_engine_a_refill_is_starting_instead_of_refusing():
    spec = lm.PoolSpec("ci", warm=1, max=1)
    filling = lm.refill(state(spec), iter(["r"]), now=NOW)
    step = lm.request(filling.state, "ci", cache_key=None, ttl=60, now=NOW, token="l")
    assert step.outcome == lm.Waiting("l", "dockyard-ci-r")
    assert step.commands == ()
    done = lm.created(step.state, "dockyard-ci-r", ok=True, now=NOW)
    assert done.outcome.lease.id == "l"
    failed = lm.created(step.state, "dockyard-ci-r", ok=False, now=NOW)
    assert failed.outcome.lease_id == "l"


@pytest.mark.parametrize(
    ("caller", "allowed"),
    [
        (None, True),  # the service itself: expiry, clean-up after a failed grant
        ("uid:1000 pid:7", True),  # the owner, from another process
        ("uid:0 pid:1", True),  # root, who runs serve
        ("uid:1001 pid:7", False),
        ("cn:ci-2", False),
    ],
)
def test_only_the_owner_or_root_renews_or_releases_a_lease(caller, allowed):
    owner = "uid:1000 pid:5"
    step = lm.request(warm(), "ci", cache_key=None, ttl=60, now=NOW, token="l1", owner=owner)
    current = step.state
    for acted in (
        lm.renew(current, "l1", ttl=600, now=NOW + 30, caller=caller),
        lm.release(current, "l1", caller=caller),
    ):
        if allowed:
            assert isinstance(acted.outcome, lm.Granted)
        else:
            assert acted.outcome.status == 403
            assert "belongs to uid:1000" in acted.outcome.message
            assert (acted.state, acted.commands) == (current, ())
