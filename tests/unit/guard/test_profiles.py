"""Custom profiles from a policy file, and docker-socket-proxy's switches as a profile."""

import pytest

from dockyard.guard.profiles import (
    ALLOW_ALL,
    CI_BUILD,
    PolicyError,
    from_socket_proxy_env,
    load_policy,
)

POLICY = """
profiles:
  ci-loader:
    extends: ci-build
    allow: [image.load]
    allow_bind: [/srv/ci]
    capabilities: [cap_net_admin]
    buildkit: true
  dashboards:
    extends: ci-loader
    deny: ["container.exec", "exec.*"]
    ownership: false
"""


def test_custom_profiles_extend_builtins_in_order():
    profiles = load_policy(POLICY)
    loader, dashboards = profiles["ci-loader"], profiles["dashboards"]
    assert loader.permits("image.load")
    assert loader.permits("container.create")
    assert loader.rules.allow_bind == ("/srv/ci",)
    assert loader.rules.capabilities == {"NET_ADMIN"}
    assert loader.rules.buildkit
    assert loader.ownership
    assert not dashboards.permits("exec.start")
    assert dashboards.permits("image.load")
    assert not dashboards.ownership
    assert dashboards.rules.buildkit
    assert profiles["ci-build"] is CI_BUILD


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("profiles: {a: {extends: nope}}", "unknown profile 'nope'"),
        ("profiles: {a: {capabilities: [ALL]}}", "capability ALL"),
        ("profiles: {a: {capabilities: [cap_all]}}", "capability ALL"),
        ("profiles: {ci-build: {}}", "built-in"),
        ("profiles: {a: {alow: [x]}}", "profiles.a.alow"),
        ("profiles: {a: {ownership: maybe}}", "profiles.a.ownership"),
        ("profiles: [", "not valid YAML"),
        ("other: 1", "profiles"),
    ],
)
def test_bad_policies_say_where(text, message):
    with pytest.raises(PolicyError, match=message):
        load_policy(text, "policy.yaml")


def test_socket_proxy_defaults_are_events_ping_version():
    profile = from_socket_proxy_env({})
    assert {
        e for e in ("system.events", "system.ping", "system.version") if profile.permits(e)
    } == {
        "system.events",
        "system.ping",
        "system.version",
    }
    assert not profile.permits("container.list")
    assert profile.escapes
    assert not profile.ownership


def test_socket_proxy_post_0_keeps_reads_only():
    profile = from_socket_proxy_env({"CONTAINERS": "1", "IMAGES": "true", "PING": "0"})
    assert profile.permits("container.list")
    assert profile.permits("container.logs")
    assert profile.permits("image.inspect")
    assert not profile.permits("container.create")
    assert not profile.permits("image.delete")
    assert not profile.permits("system.ping")


def test_socket_proxy_post_1_and_actions():
    profile = from_socket_proxy_env({"CONTAINERS": "1", "POST": "1", "COMMIT": "0"})
    assert profile.permits("container.create")
    assert profile.permits("container.exec")
    assert not profile.permits("commit")
    started = from_socket_proxy_env({"CONTAINERS": "1", "ALLOW_START": "1", "ALLOW_RESTARTS": "1"})
    assert started.permits("container.start")
    assert started.permits("container.kill")
    assert not started.permits("container.create")
    assert from_socket_proxy_env({"SESSION": "1"}).rules.buildkit
    assert not from_socket_proxy_env({"SESSION": "1"}).rules.grpc
    assert from_socket_proxy_env({"GRPC": "1"}).rules.grpc


def test_ci_build_allows_buildkit_and_a_policy_can_turn_grpc_off():
    assert CI_BUILD.rules.buildkit
    assert CI_BUILD.rules.grpc
    closed = load_policy("profiles:\n  bx: {extends: ci-build, grpc: false}\n")["bx"]
    assert not closed.rules.grpc


def test_socket_proxy_bad_switch():
    with pytest.raises(PolicyError, match="CONTAINERS='maybe'"):
        from_socket_proxy_env({"CONTAINERS": "maybe"})


def test_allow_all_has_no_checks():
    assert ALLOW_ALL.permits("plugin.enable")
    assert not ALLOW_ALL.escapes
