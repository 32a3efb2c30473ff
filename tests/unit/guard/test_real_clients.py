"""Requests captured from the docker CLIs on this machine (28.2.2 and Debian's 20.10.24),
run through the whole core: what they send for ordinary CI work must pass, and the same
requests with an escape flag added must not."""

import dataclasses
import json
from pathlib import Path

import pytest

from dockyard.guard import framing
from dockyard.guard.escapes import Rules
from dockyard.guard.gojson import decode_object
from dockyard.guard.policy import Verdict, evaluate
from dockyard.guard.profiles import CI_BUILD
from dockyard.guard.request import canonicalize

CAPTURED = json.loads((Path(__file__).parent / "cli_requests.json").read_text())
CI = dataclasses.replace(CI_BUILD, rules=Rules(allow_bind=("/srv/ci",)))


def run(captured: dict, body: str) -> Verdict:
    request = canonicalize(captured["method"], captured["target"])
    headers = [
        (k, str(len(body.encode())) if k == "Content-Length" else v) for k, v in captured["headers"]
    ]
    assert framing.check(request.endpoint, headers).ok
    return evaluate(request, decode_object(body.encode()), CI, "job-1")


@pytest.mark.parametrize("captured", CAPTURED, ids=lambda c: f"{c['client'][:22]} {c['target']}")
def test_ordinary_cli_requests_pass(captured):
    verdict = run(captured, captured["body"])
    assert verdict.allow, verdict.message


CREATES = [c for c in CAPTURED if "/containers/create" in c["target"]]
FLAGS = [
    ("--privileged", {"Privileged": True}, "privileged"),
    ("--cap-add ALL", {"CapAdd": ["ALL"]}, "capabilities"),
    ("--pid host", {"PidMode": "host"}, "namespaces"),
    ("--network host", {"NetworkMode": "host"}, "namespaces"),
    ("-v /:/host", {"Binds": ["/:/host"]}, "mounts"),
    ("--device /dev/sda", {"Devices": [{"PathOnHost": "/dev/sda", "PathInContainer": "/dev/sda",
                                        "CgroupPermissions": "rwm"}]}, "devices"),
    ("--security-opt seccomp=unconfined", {"SecurityOpt": ["seccomp=unconfined"]},
     "security-options"),
    ("--runtime x", {"Runtime": "x"}, "runtime"),
]  # fmt: skip


@pytest.mark.parametrize("captured", CREATES, ids=lambda c: c["client"][:22])
@pytest.mark.parametrize(("flag", "host", "rule"), FLAGS, ids=[f[0] for f in FLAGS])
def test_cli_escape_flags_are_denied(captured, flag, host, rule):
    body = json.loads(captured["body"])
    body["HostConfig"].update(host)
    verdict = run(captured, json.dumps(body))
    assert (verdict.allow, verdict.rule) == (False, rule), flag


@pytest.mark.parametrize("captured", CREATES, ids=lambda c: c["client"][:22])
def test_cli_create_needs_and_stamps(captured):
    verdict = run(captured, captured["body"])
    kinds = {(need.kind, need.ref) for need in verdict.needs}
    assert kinds == {("volume", "cache"), ("network", "ci-net"), ("host-path", "/srv/ci/job")}
    assert verdict.stamp_labels == {"io.dockyard.owner": "job-1"}
