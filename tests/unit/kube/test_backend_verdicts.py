"""When an engine pod will not become ready by itself: read from the pod's status alone."""

from __future__ import annotations

from types import SimpleNamespace as NS

from dockyard.engine import startup
from dockyard.kube.backend import _hopeless


def pod(phase="Pending", state=None, last_state=None):
    status = NS(state=state or NS(waiting=None, terminated=None), last_state=last_state)
    return NS(status=NS(phase=phase, container_statuses=[status]))


def test_a_pod_still_starting_is_not_hopeless():
    assert _hopeless(pod(), "img") is None


def test_an_image_the_node_cannot_get():
    waiting = NS(waiting=NS(reason="ErrImageNeverPull"), terminated=None)
    assert "image img is not on the node" in (_hopeless(pod(state=waiting), "img") or "")


def test_a_prologue_refusal_is_hopeless_now_or_after_a_restart():
    refused = NS(waiting=None, terminated=NS(exit_code=startup.REFUSED))
    assert "start prologue refused" in (_hopeless(pod(state=refused), "img") or "")
    restarting = NS(waiting=NS(reason="ContainerCreating"), terminated=None)
    last = NS(terminated=NS(exit_code=startup.REFUSED))
    assert "start prologue refused" in (
        _hopeless(pod(state=restarting, last_state=last), "img") or ""
    )


def test_another_exit_is_left_to_the_restart_policy():
    crashed = NS(waiting=None, terminated=NS(exit_code=1))
    assert _hopeless(pod(phase="Running", state=crashed), "img") is None
