"""When an engine pod will not become ready by itself: read from the pod's status alone."""

from __future__ import annotations

from types import SimpleNamespace as Obj

from dockyard.engine import startup
from dockyard.kube.backend import _hopeless, _refusal


def pod(phase="Pending", state=None, last_state=None):
    status = Obj(state=state or Obj(waiting=None, terminated=None), last_state=last_state)
    return Obj(status=Obj(phase=phase, container_statuses=[status]))


def test_a_pod_still_starting_is_not_hopeless():
    assert _hopeless(pod(), "img") is None


def test_an_image_the_node_cannot_get():
    waiting = Obj(waiting=Obj(reason="ErrImageNeverPull"), terminated=None)
    assert "image img is not on the node" in (_hopeless(pod(state=waiting), "img") or "")


def test_a_prologue_refusal_is_hopeless_now_or_after_a_restart():
    refused = Obj(waiting=None, terminated=Obj(exit_code=startup.REFUSED))
    assert "start prologue refused" in (_hopeless(pod(state=refused), "img") or "")
    restarting = Obj(waiting=Obj(reason="ContainerCreating"), terminated=None)
    last = Obj(terminated=Obj(exit_code=startup.REFUSED))
    assert "start prologue refused" in (
        _hopeless(pod(state=restarting, last_state=last), "img") or ""
    )


def test_another_exit_is_left_to_the_restart_policy():
    crashed = Obj(waiting=None, terminated=Obj(exit_code=1))
    assert _hopeless(pod(phase="Running", state=crashed), "img") is None


def refused(status, body):
    from kubernetes.client.exceptions import ApiException

    exc = ApiException(status=status, reason="Forbidden")
    exc.body = body
    return _refusal(exc, "create pods")


def test_a_privileged_pod_refused_names_the_admission_rule():
    psp = (
        'pods "e" is forbidden: unable to validate against any pod security policy: '
        "[spec.containers[0].securityContext.privileged: Invalid value: true: "
        "Privileged containers are not allowed]"
    )
    found = refused(403, psp)
    assert found is not None
    assert str(found).startswith("the cluster's PodSecurityPolicy forbids the engine pod's")
    assert "Privileged containers are not allowed" in str(found)
    assert "use of a policy with privileged: true" in (found.fix or "")
    v120 = refused(
        403,
        'pods "e" is forbidden: PodSecurityPolicy: unable to admit pod: '
        "[spec.containers[0].securityContext.privileged: Invalid value: true: "
        "Privileged containers are not allowed]",
    )
    assert "cluster's PodSecurityPolicy forbids" in str(v120)
    standard = refused(
        403, 'pods "e" is forbidden: violates PodSecurity "baseline:latest": privileged'
    )
    assert standard is not None
    assert "cluster's PodSecurity forbids" in str(standard)
    assert "pod-security.kubernetes.io/enforce=privileged" in (standard.fix or "")


def test_other_refusals_are_not_about_privilege():
    assert refused(403, 'pods is forbidden: User "x" cannot create resource "pods"') is None
    assert refused(500, "privileged") is None
