"""The data path's caches: answers reused, large inputs never kept, failures never kept."""

import pytest

from dockyard.guard import memo


def counting():
    calls = []

    @memo.cached(len)
    def shout(text: str) -> str:
        calls.append(text)
        if text == "bad":
            raise ValueError(text)
        return text.upper()

    return shout, calls


def test_small_inputs_are_decided_once():
    shout, calls = counting()
    assert [shout("ping"), shout("ping")] == ["PING", "PING"]
    assert calls == ["ping"]


def test_inputs_over_the_size_bound_are_decided_every_time():
    shout, calls = counting()
    large = "x" * (memo.LARGEST + 1)
    shout(large)
    shout(large)
    assert calls == [large, large]


def test_failures_are_not_remembered():
    shout, calls = counting()
    for _ in range(2):
        with pytest.raises(ValueError, match="bad"):
            shout("bad")
    assert calls == ["bad", "bad"]


def test_the_cache_holds_a_bounded_number_of_answers():
    shout, calls = counting()
    for n in range(memo.ENTRIES + 1):
        shout(str(n))
    shout("0")  # the oldest was let go
    assert calls.count("0") == 2
