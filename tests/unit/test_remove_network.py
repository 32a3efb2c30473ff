"""Removing a network right after its containers: the daemon's late endpoint release."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from docker.errors import APIError

from dockyard import docker_api

BUSY = "error while removing network: network n id 76 has active endpoints"


class FakeApi:
    def __init__(self, *answers):
        self.answers = list(answers)
        self.calls = 0

    def remove_network(self, ident):
        self.calls += 1
        answer = self.answers.pop(0) if self.answers else None
        if answer:
            raise APIError(answer)


def client(api):
    return SimpleNamespace(api=api)


def test_endpoints_released_a_moment_later_are_waited_for():
    api = FakeApi(BUSY, BUSY, None)
    docker_api.remove_network(client(api), "76")
    assert api.calls == 3


def test_endpoints_that_stay_are_refused_after_the_settle_time():
    api = FakeApi(*[BUSY] * 100)
    with pytest.raises(APIError, match="active endpoints"):
        docker_api.remove_network(client(api), "76", settle=0.3)
    assert 1 < api.calls < 100


def test_any_other_refusal_is_raised_at_once():
    api = FakeApi("network 76 not found")
    with pytest.raises(APIError, match="not found"):
        docker_api.remove_network(client(api), "76")
    assert api.calls == 1
