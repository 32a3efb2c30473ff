"""Every escape class of ANCHORS.md, in its variants, and the operations CI needs."""

import dataclasses
import json
from urllib.parse import quote

import pytest

from dockyard import labels
from dockyard.guard.escapes import Need, Rules, under_prefix
from dockyard.guard.gojson import decode_object
from dockyard.guard.policy import Verdict, evaluate
from dockyard.guard.profiles import ALLOW_ALL, CI_BUILD, READ_ONLY
from dockyard.guard.request import canonicalize

CI = dataclasses.replace(CI_BUILD, rules=Rules(allow_bind=("/srv/ci/", "/tmp/jobs")))
OWNER = "job-1"
LONG_S = "\u017f"
KELVIN = "\u212a"


def judge(method, target, body=None, profile=CI):
    if isinstance(body, dict):
        body = json.dumps(body)
    decoded = decode_object(body.encode()) if body is not None else None
    return evaluate(canonicalize(method, target), decoded, profile, OWNER)


def create(host=None, **top):
    body = {"Image": "alpine", **top}
    if host is not None:
        body["HostConfig"] = host
    return body


ESCAPES = [
    # privileged, in every spelling and place
    (create({"Privileged": True}), "privileged"),
    ('{"Image": "a", "HostConfig": {"privileged": true}}', "privileged"),
    ('{"Image": "a", "hostconfig": {"PRIVILEGED": true}}', "privileged"),
    (f'{{"Image": "a", "Ho{LONG_S}tConfig": {{"Privileged": true}}}}', "privileged"),
    ('{"Image": "a", "HostConfig": {"Privileged": false, "privileged": true}}', "privileged"),
    ('{"Image": "a", "HostConfig": {"Privileged": true, "Privileged": null}}', "privileged"),
    (
        '{"Image": "a", "HostConfig": {"Privileged": true}, "HostConfig": {"Memory": 1}}',
        "privileged",
    ),
    ('{"Image": "a", "HostConfig": {"Privileged": "true"}}', "body"),
    ('{"Image": "a", "HostConfig": {"Privileged": 1}}', "body"),
    ('{"Image": "a", "Privileged": true}', "privileged"),  # top level, dockerd < 27
    ('{"Image": "a", "privileged": true, "HostConfig": {}}', "privileged"),
    # capabilities
    (create({"CapAdd": ["SYS_ADMIN"]}), "capabilities"),
    (create({"CapAdd": ["cap_sys_admin"]}), "capabilities"),
    (create({"CapAdd": [" Cap_Sys_Admin "]}), "capabilities"),
    (create({"CapAdd": ["ALL"]}), "capabilities"),
    (create({"CapAdd": ["all"]}), "capabilities"),
    (create({"CapAdd": "ALL"}), "capabilities"),
    (create({"Capabilities": ["CAP_SYS_ADMIN"]}), "capabilities"),
    (f'{{"Image": "a", "HostConfig": {{"CapAdd": ["{LONG_S}YS_ADMIN"]}}}}', "capabilities"),
    ('{"Image": "a", "CapAdd": ["NET_ADMIN"]}', "capabilities"),
    # devices
    (create({"Devices": [{"PathOnHost": "/dev/sda", "PathInContainer": "/dev/sda"}]}), "devices"),
    (create({"DeviceCgroupRules": ["b *:* rwm"]}), "devices"),
    (create({"DeviceRequests": [{"Driver": "nvidia", "Count": -1}]}), "devices"),
    ('{"Image": "a", "Devices": [{"PathOnHost": "/dev/mem"}]}', "devices"),
    # namespaces
    (create({"PidMode": "host"}), "namespaces"),
    (create({"PidMode": "HOST"}), "namespaces"),
    (create({"NetworkMode": "host"}), "namespaces"),
    (create({"NetworkMode": "Host "}), "namespaces"),
    (create({"IpcMode": "host"}), "namespaces"),
    (create({"UTSMode": "host"}), "namespaces"),
    (create({"UsernsMode": "host"}), "namespaces"),
    (create({"CgroupnsMode": "host"}), "namespaces"),
    (create({"Cgroup": "host"}), "namespaces"),
    (create({"PidMode": "container:"}), "namespaces"),
    (create({"UTSMode": "container:x"}), "namespaces"),
    ('{"Image": "a", "PidMode": "host"}', "namespaces"),
    (create(NetworkingConfig={"EndpointsConfig": {"host": {}}}), "namespaces"),
    # host mounts
    (create({"Binds": ["/:/host"]}), "mounts"),
    (create({"Binds": ["/var/run/docker.sock:/var/run/docker.sock"]}), "mounts"),
    (create({"Binds": ["/srv/ci/../../etc:/etc2"]}), "mounts"),
    (create({"Binds": ["/srv/cid:/x"]}), "mounts"),
    (create({"Binds": ["/srv:/x"]}), "mounts"),
    (create({"Binds": ["//etc:/x:ro"]}), "mounts"),
    ('{"Image": "a", "Binds": ["/:/host"]}', "mounts"),
    (
        '{"Image": "a", "HostConfig": {"Binds": ["/:/h"]}, "HostConfig": {"Binds": [null]}}',
        "mounts",
    ),
    (create({"Mounts": [{"Type": "bind", "Source": "/", "Target": "/host"}]}), "mounts"),
    (create({"Mounts": [{"Type": "BIND", "Source": "/", "Target": "/host"}]}), "mounts"),
    (create({"Mounts": [{"type": "Bind", "source": "/etc", "target": "/host"}]}), "mounts"),
    (create({"Mounts": [{"Type": "bind", "Source": "relative", "Target": "/x"}]}), "mounts"),
    (create({"Mounts": [{"Type": "npipe", "Source": "x", "Target": "/x"}]}), "mounts"),
    (create({"Mounts": [{"Type": "", "Source": "/", "Target": "/x"}]}), "mounts"),
    (
        '{"Image": "a", "HostConfig": {"Mounts": [{"Type": "bind", "Source": "/"}],'
        ' "Mounts": [{"Type": "volume"}]}}',
        "mounts",
    ),
    (
        create(
            {
                "Mounts": [
                    {
                        "Type": "volume",
                        "Source": "v",
                        "Target": "/x",
                        "VolumeOptions": {
                            "DriverConfig": {
                                "Name": "local",
                                "Options": {"type": "none", "o": "bind", "device": "/"},
                            }
                        },
                    }
                ]
            }
        ),
        "mounts",
    ),
    (
        create(
            {
                "Mounts": [
                    {
                        "Type": "volume",
                        "Target": "/x",
                        "VolumeOptions": {
                            "DriverConfig": {"Options": {"device": "/dev/sda1", "type": "ext4"}}
                        },
                    }
                ]
            }
        ),
        "mounts",
    ),
    (
        create(
            {
                "Mounts": [
                    {
                        "Type": "volume",
                        "Target": "/x",
                        "VolumeOptions": {"DriverConfig": {"Name": "sshfs"}},
                    }
                ]
            }
        ),
        "volume-driver",
    ),
    (create({"VolumeDriver": "convoy"}), "volume-driver"),
    (create({"VolumesFrom": ["other"]}), "volumes-from"),
    # security options and system paths
    (create({"SecurityOpt": ["seccomp=unconfined"]}), "security-options"),
    (create({"SecurityOpt": ["seccomp:unconfined"]}), "security-options"),
    (create({"SecurityOpt": ['seccomp={"defaultAction":"SCMP_ACT_ALLOW"}']}), "security-options"),
    (create({"SecurityOpt": ["apparmor=unconfined"]}), "security-options"),
    (create({"SecurityOpt": ["label=disable"]}), "security-options"),
    (create({"SecurityOpt": ["label:disable"]}), "security-options"),
    (create({"SecurityOpt": ["label=type:spc_t"]}), "security-options"),
    (create({"SecurityOpt": ["systempaths=unconfined"]}), "security-options"),
    (create({"SecurityOpt": ["writable-cgroups=true"]}), "security-options"),
    (create({"MaskedPaths": []}), "security-options"),
    (create({"ReadonlyPaths": []}), "security-options"),
    (create({"MaskedPaths": ["/proc/kcore"]}), "security-options"),
    (f'{{"Image": "a", "HostConfig": {{"Ma{LONG_S}{KELVIN}edPaths": []}}}}', "security-options"),
    (
        f'{{"Image": "a", "HostConfig": {{"{LONG_S}ecurityOpt": ["label=disable"]}}}}',
        "security-options",
    ),
    # runtime, cgroup parent, sysctls, log driver
    (create({"Runtime": "sysbox-runc"}), "runtime"),
    (create({"Runtime": "nvidia"}), "runtime"),
    (create({"CgroupParent": "/"}), "cgroup-parent"),
    (create({"Sysctls": {"kernel.core_pattern": "|/x"}}), "sysctls"),
    (
        create({"LogConfig": {"Type": "syslog", "Config": {"syslog-address": "tcp://10.0.0.1"}}}),
        "log-driver",
    ),
    # labels that would forge ownership
    (create(Labels={labels.OWNER: "someone-else"}), "labels"),
    (create(Labels={"IO.Dockyard.owner": "x"}), "labels"),
    (
        create(NetworkingConfig={"EndpointsConfig": {"bridge": {"DriverOpts": {"a": "b"}}}}),
        "network",
    ),
]


@pytest.mark.parametrize(("body", "rule"), ESCAPES)
def test_container_create_escapes(body, rule):
    verdict = judge("POST", "/v1.41/containers/create", body)
    assert not verdict.allow
    assert verdict.rule == rule, verdict.reason


@pytest.mark.parametrize(
    "target",
    ["/containers/create", "/v1.41/containers/create", "/v1.24/containers/create",
     "/v1.12/containers/create", "/%63ontainers/create", "/v1.44/containers/create?name=x"],
)  # fmt: skip
def test_escapes_are_caught_on_every_route_form(target):
    verdict = judge("POST", target, create({"Privileged": True}))
    assert (verdict.allow, verdict.rule) == (False, "privileged")


@pytest.mark.parametrize(
    ("method", "target", "body", "rule"),
    [
        ("POST", "/containers/web/update", {"Devices": [{"PathOnHost": "/dev/sda"}]}, "devices"),
        ("POST", "/containers/web/update", {"DeviceCgroupRules": ["a *:* rwm"]}, "devices"),
        ("POST", "/containers/web/update", {"CgroupParent": "/"}, "cgroup-parent"),
        ("POST", "/v1.23/containers/web/start", {"Binds": ["/:/host"]}, "legacy"),
        ("POST", "/containers/web/start", {"Privileged": True}, "legacy"),
        ("POST", "/containers/web/exec", {"Cmd": ["sh"], "Privileged": True}, "privileged"),
        ("POST", "/containers/web/exec", '{"Cmd": ["sh"], "privileged": true}', "privileged"),
        (
            "POST",
            "/volumes/create",
            {"Name": "v", "DriverOpts": {"type": "none", "o": "bind", "device": "/"}},
            "mounts",
        ),
        (
            "POST",
            "/volumes/create",
            {"Name": "v", "DriverOpts": {"o": "bind", "device": "/etc"}},
            "mounts",
        ),
        (
            "POST",
            "/volumes/create",
            {"Name": "v", "DriverOpts": {"type": "nfs", "o": "addr=10.0.0.1", "device": ":/"}},
            "mounts",
        ),
        ("POST", "/volumes/create", {"Name": "v", "DriverOpts": {"device": "/dev/sda"}}, "mounts"),
        (
            "POST",
            "/volumes/create",
            {"Name": "v", "DriverOpts": {"type": "tmpfs", "device": "tmpfs", "o": "bind"}},
            "mounts",
        ),
        (
            "POST",
            "/volumes/create",
            '{"Name": "v", "driveropts": {"o": "bind", "device": "/"}}',
            "mounts",
        ),
        ("POST", "/volumes/create", {"Name": "v", "Driver": "vieux/sshfs"}, "volume-driver"),
        ("POST", "/volumes/create", {"Name": "v", "Labels": {labels.OWNER: "other"}}, "labels"),
        (
            "POST",
            "/networks/create",
            {"Name": "n", "Driver": "macvlan", "Options": {"parent": "eth0"}},
            "network-driver",
        ),
        ("POST", "/networks/create", {"Name": "n", "Driver": "ipvlan"}, "network-driver"),
        ("POST", "/networks/create", {"Name": "n", "Driver": "host"}, "network-driver"),
        ("POST", "/networks/create", '{"Name": "n", "driver": "macvlan"}', "network-driver"),
        (
            "POST",
            "/networks/create",
            {"Name": "n", "Options": {"com.docker.network.bridge.name": "docker0"}},
            "network",
        ),
        ("POST", "/networks/create", {"Name": "n", "ConfigFrom": {"Network": "mv"}}, "network"),
        ("POST", "/networks/create", {"Name": "n", "IPAM": {"Driver": "custom"}}, "network-driver"),
        ("POST", "/build?networkmode=host", None, "build"),
        ("POST", "/build?networkmode=HOST", None, "build"),
        ("POST", "/build?networkmode=bridge&networkmode=host", None, "build"),
        ("POST", "/build?networkmode=container:web", None, "build"),
        ("POST", "/build?remote=https://evil.example/ctx.tar", None, "build"),
        ("POST", "/build?remote=git@github.com:a/b.git", None, "build"),
        ("POST", "/build?cgroupparent=/", None, "cgroup-parent"),
        ("POST", "/build?securityopt=seccomp%3Dunconfined", None, "security-options"),
        ("POST", "/build?version=2", None, "buildkit"),
        ("POST", "/build?session=abc", None, "buildkit"),
        ("POST", "/build?labels=%7B%22io.dockyard.owner%22%3A%22x%22%7D", None, "labels"),
        ("POST", "/build?labels=%7Bnot-json", None, "build"),
        ("POST", "/session", None, "buildkit"),
        ("POST", "/grpc", None, "buildkit"),
        ("POST", "/images/create?fromSrc=-&repo=alpine", None, "image"),
        ("POST", "/images/create?fromSrc=http://x/a.tar&repo=alpine&tag=1", None, "image"),
        ("POST", "/images/create?fromImage=alpine&fromSrc=-", None, "image"),
        ("POST", "/images/create?repo=alpine&tag=1", None, "image"),  # fromImage empty: import
        ("POST", "/images/create?fromImage=&fromImage=alpine&tag=1", None, "image"),
        ("POST", "/images/create?fromImage=alpine", None, "image"),  # pull -a: every tag
        ("POST", "/images/create?fromImage=alpine%3A&tag=", None, "image"),
    ],
)
def test_other_endpoint_escapes(method, target, body, rule):
    verdict = judge(method, target, body)
    assert not verdict.allow
    assert verdict.rule == rule, verdict.reason


SERVICE = {"Name": "s", "TaskTemplate": {"ContainerSpec": {"Image": "alpine"}}}


@pytest.mark.parametrize(
    ("spec", "rule"),
    [({"Mounts": [{"Type": "bind", "Source": "/", "Target": "/h"}]}, "mounts"),
     ({"CapabilityAdd": ["CAP_SYS_ADMIN"]}, "capabilities"),
     ({"Privileges": {"Seccomp": {"Mode": "unconfined"}}}, "security-options"),
     ({"Privileges": {"AppArmor": {"Mode": "disabled"}}}, "security-options"),
     ({"Sysctls": {"net.ipv4.ip_forward": "1"}}, "sysctls"),
     ({"Mounts": [{"Type": "image", "Source": "app", "Target": "/i"}]}, "mounts"),
     ({"Mounts": [{"Type": "volume", "Source": "v1", "VolumeOptions": {"DriverConfig": {
         "Name": "local", "Options": {"type": "none", "o": "bind", "device": "/etc"}}}}]},
      "mounts")],
)  # fmt: skip
def test_service_specs_carry_the_same_escapes(spec, rule):
    body = {"Name": "s", "TaskTemplate": {"ContainerSpec": {"Image": "alpine", **spec}}}
    profile = dataclasses.replace(CI, allow=CI.allow | {"service.*"})
    for target in ("/services/create", "/services/s/update?version=3"):
        verdict = judge("POST", target, body, profile)
        assert (verdict.allow, verdict.rule) == (False, rule)
    assert judge("POST", "/services/create", SERVICE, profile).allow


@pytest.mark.parametrize(
    ("method", "target"),
    [("POST", "/plugins/pull?remote=vieux/sshfs"), ("POST", "/plugins/x/enable"),
     ("POST", "/plugins/x/upgrade?remote=y"), ("POST", "/plugins/x/set"),
     ("POST", "/plugins/create?name=x")],
)  # fmt: skip
def test_plugins_are_denied_even_when_a_profile_allows_the_endpoint(method, target):
    assert judge(method, target).rule == "endpoint"
    profile = dataclasses.replace(CI, allow=CI.allow | {"plugin.*"})
    assert judge(method, target, None, profile).rule == "plugin"


@pytest.mark.parametrize(
    ("method", "target"),
    [("POST", "/containers/web/commit"), ("POST", "/commit?container=web"),
     ("POST", "/images/load"), ("POST", "/swarm/init"), ("POST", "/services/create"),
     ("GET", "/system/df"), ("POST", "/build/prune"), ("POST", "/volumes/v"),
     ("PUT", "/volumes/v"), ("GET", "/debug/pprof/"), ("POST", "/containers/web/copy"),
     ("GET", "/secrets"), ("DELETE", "/plugins/x"), ("POST", "/images/prune")],
)  # fmt: skip
def test_ci_build_denies_what_ci_does_not_need(method, target):
    assert not judge(method, target).allow


def test_unknown_routes_are_denied_even_by_allow_all():
    verdict = judge("GET", "/containers/create", None, ALLOW_ALL)
    assert (verdict.allow, verdict.rule) == (False, "route")


def needs_of(verdict: Verdict) -> set[tuple[str, str, bool]]:
    return {(need.kind, need.ref, need.missing_ok) for need in verdict.needs}


def test_namespace_joins_need_ownership_of_the_container():
    verdict = judge(
        "POST",
        "/containers/create",
        create({"NetworkMode": "container:db", "PidMode": "container:db"}),
    )
    assert verdict.allow
    assert ("container", "db", False) in needs_of(verdict)


def test_namespace_joins_are_denied_without_ownership():
    profile = dataclasses.replace(CI, ownership=False)
    verdict = judge("POST", "/containers/create", create({"IpcMode": "container:db"}), profile)
    assert (verdict.allow, verdict.rule) == (False, "namespaces")


def test_networks_and_volumes_used_by_a_container_need_ownership():
    body = create(
        {"Binds": ["cache:/cache", "/srv/ci/job:/work"], "NetworkMode": "ci-net",
         "Mounts": [{"Type": "volume", "Source": "data", "Target": "/data"}], "Links": ["db:db"]},
        NetworkingConfig={"EndpointsConfig": {"ci-net": {"Aliases": ["app"]}}},
    )  # fmt: skip
    verdict = judge("POST", "/containers/create", body)
    assert verdict.allow, verdict.reason
    assert needs_of(verdict) == {
        ("volume", "cache", True), ("volume", "data", True), ("network", "ci-net", False),
        ("container", "db", False),
        ("host-path", "/srv/ci/job", True),
    }  # fmt: skip


ALLOWED = [
    # the build, push, pull cycle
    ("GET", "/_ping", None),
    ("HEAD", "/_ping", None),
    ("GET", "/v1.41/version", None),
    ("GET", "/v1.41/info", None),
    ("POST", "/v1.41/auth", {"username": "u", "password": "p"}),
    ("POST", "/v1.41/build?t=app%3A1&dockerfile=Dockerfile&networkmode=default&rm=1", None),
    (
        "POST",
        "/v1.41/build?t=app&buildargs=%7B%22A%22%3A%22b%22%7D&labels=%7B%22a%22%3A%22b%22%7D",
        None,
    ),
    ("POST", "/v1.41/build?networkmode=none&version=1", None),
    ("POST", "/v1.41/images/create?fromImage=alpine&tag=3.20", None),
    ("POST", "/v1.41/images/reg.local%3A5000%2Fapp/tag?repo=reg.local%3A5000%2Fapp&tag=1", None),
    ("POST", "/v1.41/images/reg.local:5000/app/push?tag=1", None),
    ("GET", "/v1.41/images/alpine/json", None),
    ("GET", "/v1.41/images/json", None),
    ("GET", "/v1.41/distribution/alpine/json", None),
    # an ordinary container with a named volume and a bind under an allowed prefix
    ("POST", "/v1.41/volumes/create", {"Name": "cache", "Labels": {"team": "a"}}),
    (
        "POST",
        "/v1.41/volumes/create",
        {
            "Name": "scratch",
            "Driver": "local",
            "DriverOpts": {"type": "tmpfs", "device": "tmpfs", "o": "size=100m,uid=1000"},
        },
    ),
    (
        "POST",
        "/v1.41/networks/create",
        {
            "Name": "ci-net",
            "Driver": "bridge",
            "CheckDuplicate": True,
            "Options": {"com.docker.network.driver.mtu": "1400"},
        },
    ),
    (
        "POST",
        "/v1.41/containers/create?name=job",
        create(
            {
                "Binds": ["cache:/cache", "/srv/ci/job-1:/work:ro", "/tmp/jobs/x/:/x"],
                "NetworkMode": "default",
                "Mounts": [
                    {"Type": "tmpfs", "Target": "/run"},
                    {"Type": "bind", "Source": "/srv/ci/a", "Target": "/a"},
                ],
                "CapDrop": ["ALL"],
                "SecurityOpt": ["no-new-privileges", "no-new-privileges=true", "seccomp=builtin"],
                "RestartPolicy": {"Name": "no"},
                "LogConfig": {"Type": "json-file", "Config": {}},
                "PortBindings": {"80/tcp": [{"HostPort": "0"}]},
                "Init": True,
                "AutoRemove": False,
                "MaskedPaths": None,
                "ReadonlyPaths": None,
                "Runtime": "runc",
                "IpcMode": "private",
                "CgroupnsMode": "private",
            },
            Cmd=["make", "test"],
            Env=["CI=1"],
            Labels={"com.example": "x"},
            Tty=False,
            NetworkingConfig={"EndpointsConfig": {"bridge": {}}},
        ),
    ),
    ("POST", "/v1.41/containers/create", create()),
    ("POST", "/v1.41/containers/create", None),
    ("POST", "/v1.41/containers/job/start", None),
    ("POST", "/v1.41/containers/job/start", {}),
    ("POST", "/v1.41/containers/job/wait?condition=next-exit", None),
    ("GET", "/v1.41/containers/job/logs?stdout=1&stderr=1&follow=1", None),
    ("POST", "/v1.41/containers/job/attach?stream=1&stdin=1&stdout=1", None),
    ("POST", "/v1.41/containers/job/exec", {"Cmd": ["sh"], "AttachStdout": True, "User": "root"}),
    ("POST", "/v1.41/exec/abc/start", {"Detach": False, "Tty": True}),
    ("POST", "/v1.41/exec/abc/resize?h=40&w=120", None),
    ("GET", "/v1.41/exec/abc/json", None),
    ("GET", "/v1.41/containers/job/archive?path=/work/out", None),
    ("HEAD", "/v1.41/containers/job/archive?path=/work/out", None),
    ("PUT", "/v1.41/containers/job/archive?path=/work&noOverwriteDirNonDir=true", None),
    ("POST", "/v1.41/containers/job/stop?t=10", None),
    ("POST", "/v1.41/containers/job/kill", None),
    (
        "POST",
        "/v1.41/containers/job/update",
        {"Memory": 1073741824, "RestartPolicy": {"Name": "no"}},
    ),
    ("DELETE", "/v1.41/containers/job?v=1&force=1", None),
    ("GET", "/v1.41/containers/json?all=1", None),
    (
        "POST",
        "/v1.41/networks/ci-net/connect",
        {"Container": "job", "EndpointConfig": {"Aliases": ["a"]}},
    ),
    ("POST", "/v1.41/networks/ci-net/disconnect", {"Container": "job", "Force": True}),
    ("DELETE", "/v1.41/networks/ci-net", None),
    ("DELETE", "/v1.41/volumes/cache", None),
    ("GET", "/v1.41/events?filters=%7B%7D", None),
    ("GET", "/v1.41/volumes", None),
    ("POST", "/v1.41/containers/prune", None),
    ("DELETE", "/v1.41/images/app:1", None),
]


@pytest.mark.parametrize(("method", "target", "body"), ALLOWED)
def test_ci_build_allows_what_ci_needs(method, target, body):
    verdict = judge(method, target, body)
    assert verdict.allow, verdict.message


def test_created_objects_are_stamped_and_lists_filtered():
    for target, body in (
        ("/containers/create", create()),
        ("/volumes/create", {"Name": "v"}),
        ("/networks/create", {"Name": "n"}),
        ("/build?t=x", None),
    ):
        assert judge("POST", target, body).stamp_labels == {labels.OWNER: OWNER}
    for method, target in (
        ("GET", "/containers/json"),
        ("GET", "/events"),
        ("GET", "/images/json"),
        ("POST", "/volumes/prune"),
        ("GET", "/networks"),
    ):
        assert judge(method, target).owner_filter == f"{labels.OWNER}={OWNER}"
    assert judge("GET", "/containers/x/json").owner_filter is None


@pytest.mark.parametrize(
    ("method", "target", "need"),
    [("GET", "/containers/web/json", Need("container", "web")),
     ("GET", "/containers/web/logs", Need("container", "web")),
     ("POST", "/containers/web/attach", Need("container", "web")),
     ("POST", "/containers/web/exec", Need("container", "web")),
     ("GET", "/containers/web/export", Need("container", "web")),
     ("GET", "/containers/web/archive?path=/", Need("container", "web")),
     ("POST", "/containers/web/kill", Need("container", "web")),
     ("POST", "/containers/web/rename?name=x", Need("container", "web")),
     ("DELETE", "/containers/web", Need("container", "web")),
     ("POST", "/exec/e1/start", Need("exec", "e1")),
     ("GET", "/volumes/v1", Need("volume", "v1")),
     ("DELETE", "/networks/n1", Need("network", "n1")),
     ("DELETE", "/images/app:1", Need("image", "app:1")),
     ("POST", "/images/alpine/tag?repo=alpine&tag=latest", Need("image", "alpine:latest", True)),
     ("POST", "/build?t=app:1&t=app:latest", Need("image", "app:latest", True))],
)  # fmt: skip
def test_per_object_endpoints_need_ownership(method, target, need):
    body = {"Cmd": ["sh"]} if target.endswith("/exec") else None
    assert need in judge(method, target, body).needs


PULL_NEED = {"missing_ok": True, "unclaimed_ok": True}


@pytest.mark.parametrize(
    ("target", "tag"),
    [("/v1.41/images/create?fromImage=alpine&tag=3.20", "alpine:3.20"),
     ("/images/create?fromImage=shared&tag=latest", "shared:latest"),
     ("/images/create?fromImage=localhost%3A5000%2Fshared&tag=t1", "localhost:5000/shared:t1"),
     ("/images/create?fromImage=localhost:5000/shared:t1", "localhost:5000/shared:t1"),
     ("/images/create?fromImage=shared:old&tag=new", "shared:new"),  # tag replaces the name's
     ("/images/create?fromImage=shared:t1@sha256:ab", "shared:t1"),
     ("/images/create?fromImage=shared&tag=t1&tag=t2", "shared:t1")],
)  # fmt: skip
def test_a_pull_needs_its_tag_unclaimed_or_owned(target, tag):
    verdict = judge("POST", target)
    assert verdict.allow, verdict.message
    image_needs = [need for need in verdict.needs if need.kind == "image"]
    assert image_needs == [Need("image", tag, **PULL_NEED)]


@pytest.mark.parametrize(
    "target",
    ["/images/create?fromImage=alpine%40sha256%3Aab",
     "/images/create?fromImage=alpine&tag=sha256:ab"],
)  # fmt: skip
def test_a_pull_by_digest_moves_no_tag(target):
    verdict = judge("POST", target)
    assert verdict.allow, verdict.message
    assert verdict.needs == ()


def test_pulls_without_ownership_need_nothing():
    proxy = dataclasses.replace(CI, ownership=False)
    verdict = judge("POST", "/images/create?fromImage=alpine&tag=1", profile=proxy)
    assert verdict.allow
    assert verdict.needs == ()
    assert judge("POST", "/images/create?fromImage=alpine", profile=proxy).allow


def test_shared_images_are_readable_without_ownership():
    for target in ("/images/alpine/json", "/images/alpine/history", "/distribution/alpine/json"):
        assert judge("GET", target).needs == ()


def test_read_only_profile():
    for method, target in (
        ("GET", "/containers/json"),
        ("GET", "/containers/x/logs"),
        ("GET", "/events"),
        ("GET", "/images/json"),
        ("GET", "/system/df"),
    ):
        verdict = judge(method, target, None, READ_ONLY)
        assert verdict.allow
        assert (verdict.needs, verdict.owner_filter) == ((), None)
    for method, target in (("POST", "/containers/create"), ("POST", "/containers/x/exec"),
                           ("GET", "/containers/x/export"), ("DELETE", "/images/x")):  # fmt: skip
        assert not judge(method, target, None, READ_ONLY).allow


def test_allow_all_forwards_escapes():
    verdict = judge("POST", "/containers/create", create({"Privileged": True}), ALLOW_ALL)
    assert verdict.allow


def test_capabilities_a_profile_allows():
    profile = dataclasses.replace(CI, rules=Rules(capabilities=frozenset({"NET_ADMIN"})))
    for cap in ("NET_ADMIN", "cap_net_admin", "Cap_Net_Admin"):
        assert judge("POST", "/containers/create", create({"CapAdd": [cap]}), profile).allow
    assert not judge("POST", "/containers/create", create({"CapAdd": ["ALL"]}), profile).allow


def test_buildkit_when_a_profile_allows_it():
    profile = dataclasses.replace(CI, rules=Rules(buildkit=True))
    for method, target in (("POST", "/session"), ("POST", "/build?version=2&session=s")):
        assert judge(method, target, None, profile).allow
    # buildx's gRPC API is a switch of its own (ci-build has it on: the guard reads it)
    assert judge("POST", "/grpc", None, profile).reason.startswith("BuildKit's gRPC API")
    assert judge("POST", "/grpc", None, CI_BUILD).allow


def test_message_is_what_the_cli_prints():
    verdict = judge("POST", "/containers/create", create({"Privileged": True}))
    assert verdict.message == "dockyard guard: privileged: HostConfig.Privileged"


@pytest.mark.parametrize(
    ("path", "inside"),
    [("/srv/ci", True), ("/srv/ci/", True), ("/srv/ci/a/b", True), ("/srv/ci/../ci/a", True),
     ("/srv/cid", False), ("/srv", False), ("/srv/ci/../../etc", False), ("//srv/ci/a", True),
     ("/", False)],
)  # fmt: skip
def test_allowed_bind_prefixes_are_compared_cleaned(path, inside):
    assert under_prefix(path, ("/srv/ci/",)) is inside


def test_allowed_binds_are_returned_for_symlink_resolution_even_without_ownership():
    body = create(
        {"Binds": ["/srv/ci/job/:/work"], "Mounts": [{"Type": "bind", "Source": "/tmp/jobs//x"}]}
    )
    for profile in (CI, dataclasses.replace(CI, ownership=False)):
        verdict = judge("POST", "/containers/create", body, profile)
        assert {n.ref for n in verdict.needs if n.kind == "host-path"} == {
            "/srv/ci/job",
            "/tmp/jobs/x",
        }


BUILDKIT = "/build?version=2&remote=client-session&session=s1"


def test_a_buildkit_build_needs_its_own_session_and_its_tags():
    verdict = judge("POST", BUILDKIT + "&t=app:1", None, CI_BUILD)
    assert verdict.allow
    assert Need("session", "s1") in verdict.needs
    assert Need("image", "app:1", missing_ok=True) in verdict.needs


@pytest.mark.parametrize(
    ("target", "rule"),
    [
        ("/build?version=2&remote=client-session", "build"),  # no session: no context either
        ("/build?version=2&remote=client-session&session=", "build"),
        ("/build?version=2&remote=Client-Session&session=s1", "build"),  # dockerd: exact
        (BUILDKIT + "&remote=https://evil.example/ctx.git", "build"),
        (BUILDKIT + "&networkmode=host", "build"),
        (BUILDKIT + "&cgroupparent=/", "cgroup-parent"),
        (BUILDKIT + "&isolation=hyperv", "build"),
        (BUILDKIT + '&outputs=[{"Type":"registry","Attrs":{"name":"x"}}]', "build"),
        (BUILDKIT + '&outputs=[{"type":"image","attrs":{"push":"true"}}]', "build"),
        (BUILDKIT + "&outputs={not-json", "build"),
        (BUILDKIT + '&outputs={"Type":"local"}', "build"),
    ],
)
def test_buildkit_builds_are_judged_on_their_query(target, rule):
    verdict = judge("POST", target.replace('"', "%22"), None, CI_BUILD)
    assert not verdict.allow
    assert verdict.rule == rule, verdict.reason


def test_the_image_exporter_names_tags_that_need_ownership():
    outputs = quote('[{"type":"moby","ATTRS":{"name":"a:1, b:2"}}]')
    verdict = judge("POST", f"{BUILDKIT}&outputs={outputs}", None, CI_BUILD)
    assert verdict.allow
    assert {Need("image", "a:1", missing_ok=True), Need("image", "b:2", missing_ok=True)} <= set(
        verdict.needs
    )
    for kind in ("local", "tar", "cacheonly"):
        local = f'[{{"Type":"{kind}","Attrs":{{"dest":"/x"}}}}]'.replace('"', "%22")
        assert judge("POST", f"{BUILDKIT}&outputs={local}", None, CI_BUILD).allow


def test_a_create_makes_the_named_volumes_it_mounts_owned():
    tmpfs = {"Name": "local", "Options": {"type": "tmpfs", "device": "tmpfs"}}
    body = create(
        {
            "Binds": ["cache:/c"],
            "Mounts": [
                {"Type": "volume", "Source": "mv", "VolumeOptions": {"DriverConfig": tmpfs}}
            ],
        }
    )
    verdict = judge("POST", "/containers/create", body)
    assert verdict.allow
    assert Need("volume", "cache", True, create=()) in verdict.needs
    assert Need("volume", "mv", True, create=(("type", "tmpfs"), ("device", "tmpfs"))) in (
        verdict.needs
    )
    # a service's mounts are made by swarm on its nodes, not here
    service = {"TaskTemplate": {"ContainerSpec": {"Mounts": [{"Type": "volume", "Source": "sv"}]}}}
    profile = dataclasses.replace(CI, allow=CI.allow | {"service.*"})
    assert Need("volume", "sv", True) in judge("POST", "/services/create", service, profile).needs


def test_a_mount_cannot_label_the_volume_it_makes_as_someone_elses():
    owner = {"Labels": {"io.dockyard.owner": "b"}}
    mount = {"Type": "volume", "Source": "vv", "VolumeOptions": owner}
    verdict = judge("POST", "/containers/create", create({"Mounts": [mount]}))
    assert not verdict.allow
    assert verdict.rule == "labels"


@pytest.mark.parametrize(
    "task",
    [{"Networks": [{"Target": "host"}]}, {"Networks": [{"target": "HOST"}]},
     {"networks": [{"Target": "ci"}, {"Target": "host"}]}],
)  # fmt: skip
def test_a_service_cannot_join_the_host_network_through_its_task_template(task):
    body = {"Name": "s", "TaskTemplate": {"ContainerSpec": {"Image": "alpine"}, **task}}
    profile = dataclasses.replace(CI, allow=CI.allow | {"service.*"})
    verdict = judge("POST", "/services/create", body, profile)
    assert (verdict.allow, verdict.rule) == (False, "namespaces"), verdict.reason
    legacy = {"Name": "s", "TaskTemplate": {"ContainerSpec": {}}, "Networks": task.get("Networks")}
    if legacy["Networks"]:
        assert not judge("POST", "/services/create", legacy, profile).allow


def test_a_service_network_must_be_the_clients_own():
    body = {"TaskTemplate": {"ContainerSpec": {}, "Networks": [{"Target": "ci-net"}]}}
    profile = dataclasses.replace(CI, allow=CI.allow | {"service.*"})
    assert Need("network", "ci-net") in judge("POST", "/services/create", body, profile).needs


def test_image_mounts_are_denied_on_containers_too():
    mount = {"Type": "image", "Source": "app:1", "Target": "/i"}
    assert judge("POST", "/containers/create", create({"Mounts": [mount]})).rule == "mounts"


def test_a_context_sent_apart_and_a_cancel_need_the_clients_own_build():
    upload = judge("POST", "/build?version=2&buildid=upload-request%3Ab1", None, CI_BUILD)
    assert upload.allow
    assert Need("build-id", "b1") in upload.needs
    sent = judge(
        "POST", "/build?version=2&remote=upload-request&session=s1&buildid=b1", None, CI_BUILD
    )
    assert sent.allow
    assert Need("session", "s1") in sent.needs
    assert judge("POST", "/build?buildid=a&buildid=b", None, CI_BUILD).rule == "build"
    assert Need("build-id", "b1") in judge("POST", "/build/cancel?id=b1", None, CI_BUILD).needs
