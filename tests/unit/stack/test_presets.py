"""The buildbot and jenkins presets' pure parts: shipped files, REST parsing, container wiring."""

from __future__ import annotations

import ast
import configparser
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from dockyard import config
from dockyard.errors import DockyardError
from dockyard.images import buildbot as buildbot_image
from dockyard.images import recipes
from dockyard.stack import plan, presets
from dockyard.stack.presets import buildbot, jenkins

MASTER_CFG = "/etc/dockyard/buildbot/master.cfg"


def calls(tree: ast.AST, name: str) -> list[ast.Call]:
    """Every call of ``name`` or ``anything.name`` in ``tree``."""
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            func = node.func
            called = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", None)
            if called == name:
                found.append(node)
    return found


def keywords(call: ast.Call) -> dict[str, Any]:
    return {k.arg: ast.literal_eval(k.value) for k in call.keywords if _literal(k.value)}


def _literal(node: ast.expr) -> bool:
    try:
        ast.literal_eval(node)
    except ValueError:
        return False
    return True


@pytest.fixture(scope="module")
def master_cfg() -> ast.Module:
    return ast.parse(buildbot_image.image_files()[MASTER_CFG][0].decode())


@pytest.fixture(scope="module")
def master_config(master_cfg: ast.Module) -> ast.Dict:
    [assign] = [
        node
        for node in master_cfg.body
        if isinstance(node, ast.Assign)
        and any(getattr(t, "id", None) == "BuildmasterConfig" for t in node.targets)
    ]
    assert isinstance(assign.value, ast.Dict)
    return assign.value


def config_value(master_config: ast.Dict, key: str) -> ast.expr:
    for k, v in zip(master_config.keys, master_config.values, strict=True):
        if isinstance(k, ast.Constant) and k.value == key:
            return v
    raise KeyError(key)


# --- presets ------------------------------------------------------------------------------------


def test_both_presets_are_registered() -> None:
    assert presets.get("buildbot") is buildbot.PRESET
    assert presets.get("jenkins") is jenkins.PRESET


def test_buildbot_preset() -> None:
    preset = buildbot.PRESET
    assert preset.image == recipes.recipe("buildbot").ref == f"dockyard/buildbot:{recipes.TAG}"
    assert preset.image_role == "buildbot"
    assert preset.home == "/var/lib/buildbot"
    assert preset.ui_port == 8010
    assert preset.env["DOCKYARD_REGISTRY"] == "registry:5000"
    assert preset.env["DOCKYARD_BASE"] == recipes.recipe("base").ref
    assert preset.entrypoint is None  # the image's entrypoint runs master and worker
    assert preset.command is None
    assert preset.user is None  # root: it reads the client key the stack mounts


def test_buildbot_preset_carries_the_example() -> None:
    files = buildbot.PRESET.files
    assert set(files) == {"/srv/example/Dockerfile", "/srv/example/hello.sh"}
    assert b"ARG BASE" in files["/srv/example/Dockerfile"]


def test_example_files_outside_a_checkout_are_none(tmp_path: Path) -> None:
    assert buildbot.example_files(tmp_path / "missing") == {}
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "x").write_bytes(b"1")
    assert buildbot.example_files(tmp_path) == {"/srv/example/sub/x": b"1"}


def test_jenkins_preset() -> None:
    preset = jenkins.PRESET
    assert preset.image == f"dockyard/jenkins:{recipes.TAG}"
    assert preset.image_role is None  # never built here: no registry can be pulled from
    assert preset.home == "/var/jenkins_home"
    assert preset.ui_port == 8080
    assert preset.user is None


# --- the buildbot image's files -----------------------------------------------------------------


def test_master_cfg_is_python_with_one_worker_builder_and_force_scheduler(
    master_cfg: ast.Module,
) -> None:
    [worker] = calls(master_cfg, "Worker")
    assert ast.literal_eval(worker.args[0]) == "local"
    [builder] = calls(master_cfg, "BuilderConfig")
    assert keywords(builder) == {"name": "image", "workernames": ["local"]}
    [scheduler] = calls(master_cfg, "ForceScheduler")
    assert keywords(scheduler) == {"name": buildbot.SCHEDULER, "builderNames": [buildbot.BUILDER]}


def test_master_cfg_steps_build_push_and_record_the_digest(master_cfg: ast.Module) -> None:
    steps = calls(master_cfg, "ShellCommand") + calls(master_cfg, "SetPropertyFromCommand")
    assert [keywords(s)["name"] for s in steps] == ["build", "push", "digest"]
    assert all(keywords(s)["haltOnFailure"] is True for s in steps)
    text = ast.unparse(master_cfg)
    assert "/hello:build-%(prop:buildnumber)s" in text
    assert "'DOCKYARD_REGISTRY', 'registry:5000'" in text
    assert "'docker', 'build', '-t', IMAGE, '--build-arg', 'BASE=' + BASE, EXAMPLE" in text
    assert "'docker', 'push', IMAGE" in text
    assert keywords(calls(master_cfg, "SetPropertyFromCommand")[0])["property"] == "digest"


def test_master_cfg_serves_www_keeps_the_worker_port_local_and_reports_nothing(
    master_config: ast.Dict,
) -> None:
    assert ast.literal_eval(config_value(master_config, "www")) == {"port": 8010, "plugins": {}}
    protocols = ast.literal_eval(config_value(master_config, "protocols"))
    assert protocols == {"pb": {"port": "tcp:9989:interface=127.0.0.1"}}
    assert ast.literal_eval(config_value(master_config, "buildbotNetUsageData")) is None


def test_entrypoint_creates_both_directories_once_and_runs_the_master_in_front() -> None:
    script, mode = buildbot_image.image_files()[buildbot_image.ENTRYPOINT]
    text = script.decode()
    assert mode == 0o755
    assert text.startswith("#!/bin/sh\n")
    assert "set -eu" in text
    assert 'if [ ! -f "$master/buildbot.tac" ]' in text
    assert 'buildbot create-master --no-logrotate "$master"' in text
    assert 'buildbot-worker create-worker "$worker" localhost:9989 local' in text
    assert f'ln -sf {MASTER_CFG} "$master/master.cfg"' in text
    assert 'buildbot-worker start --quiet "$worker"' in text
    last = text.rstrip().splitlines()[-1]
    assert last == "exec twistd3 --nodaemon --no_save --pidfile= --logfile=- --python=buildbot.tac"


@pytest.mark.skipif(shutil.which("sh") is None, reason="no sh")
def test_entrypoint_is_valid_shell(tmp_path: Path) -> None:
    script = tmp_path / "start.sh"
    script.write_bytes(buildbot_image.image_files()[buildbot_image.ENTRYPOINT][0])
    subprocess.run(["sh", "-n", str(script)], check=True)


def test_www_stand_in_is_the_base_plugin() -> None:
    files = buildbot_image.image_files()
    [entry_points] = [p for p in files if p.endswith(".dist-info/entry_points.txt")]
    parsed = configparser.ConfigParser()
    parsed.read_string(files[entry_points][0].decode())
    assert dict(parsed["buildbot.www"]) == {"base": "dockyard_buildbot_www:ep"}
    site = "/usr/lib/python3/dist-packages/dockyard_buildbot_www"
    init = ast.parse(files[f"{site}/__init__.py"][0])
    assert [t.id for n in init.body if isinstance(n, ast.Assign) for t in n.targets] == ["ep"]
    assert f"{site}/VERSION" in files
    assert b"api/v2" in files[f"{site}/static/index.html"][0]


# --- the REST API's answers ---------------------------------------------------------------------


def test_force_request_is_a_json_rpc_call_for_the_builder() -> None:
    assert buildbot.force_request() == {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "force",
        "params": {"builderNames": ["image"]},
    }


def test_parse_force() -> None:
    assert buildbot.parse_force({"id": 1, "jsonrpc": "2.0", "result": [3, {"1": 7}]}) == 7
    with pytest.raises(DockyardError, match="refused"):
        buildbot.parse_force({"id": 1, "jsonrpc": "2.0", "error": {"message": "no"}})


def test_parse_request_builds() -> None:
    assert buildbot.parse_request_builds({"builds": [], "meta": {"total": 0}}) is None
    assert buildbot.parse_request_builds({"builds": [{"number": 4}], "meta": {}}) == 4


def build_answer(complete: bool, results: int | None, digest: str | None) -> dict[str, Any]:
    properties = {"digest": [digest, "SetPropertyFromCommand Step"]} if digest else {}
    return {
        "builds": [
            {
                "buildid": 11,
                "number": 2,
                "builderid": 1,
                "complete": complete,
                "results": results,
                "state_string": "finished" if complete else "building",
                "properties": properties,
            }
        ],
        "meta": {"total": 1},
    }


def step(number: int, name: str, results: int | None, state: str) -> dict[str, Any]:
    return {
        "stepid": 100 + number,
        "number": number,
        "name": name,
        "results": results,
        "state_string": state,
        "complete": results is not None,
    }


STEPS = {
    "steps": [
        step(3, "digest", 0, "property 'digest' set"),
        step(0, "worker_preparation", 0, "worker local ready"),
        step(1, "build", 0, "'docker build ...'"),
        step(2, "push", 0, "'docker push ...'"),
    ],
    "meta": {"total": 4},
}


def test_parse_build_success() -> None:
    digest = "registry:5000/hello@sha256:" + "a" * 64
    found = buildbot.parse_build(build_answer(True, 0, digest + "\n"), STEPS, "tail")
    assert found.number == 2
    assert found.result == "success"
    assert found.complete
    assert [s.name for s in found.steps] == ["worker_preparation", "build", "push", "digest"]
    assert found.steps[3] == buildbot.Step("digest", "success", "property 'digest' set")
    assert found.digest == digest
    assert found.log_tail == "tail"


def test_parse_build_running_has_no_result_yet() -> None:
    found = buildbot.parse_build(build_answer(False, None, None))
    assert found.result is None
    assert not found.complete
    assert found.steps == ()
    assert found.digest is None


def test_parse_build_failure_names_the_result() -> None:
    assert buildbot.parse_build(build_answer(True, 2, None)).result == "failure"
    assert buildbot.parse_build(build_answer(True, 4, None)).result == "exception"
    assert buildbot.result_name(42) == "result 42"


def test_tail_step_is_the_first_that_did_not_succeed_else_the_last() -> None:
    assert buildbot.tail_step(STEPS) == 103
    failed = {"steps": [step(0, "build", 0, "ok"), step(1, "push", 2, "failed (1)")]}
    assert buildbot.tail_step(failed) == 101
    assert buildbot.tail_step({"steps": []}) is None


def test_tail_keeps_the_last_lines() -> None:
    assert buildbot.tail("a\nb\nc\n", lines=2) == "b\nc"


# --- jenkins ------------------------------------------------------------------------------------


def test_dockerfile_is_the_guides() -> None:
    lines = [line for line in jenkins.dockerfile().splitlines() if not line.startswith("#")]
    assert lines[0] == "FROM jenkins/jenkins:lts-jdk17"
    text = "\n".join(lines)
    root, user = text.index("USER root"), text.index("USER jenkins")
    assert root < text.index("apt-get install -y docker-ce-cli") < user
    assert "https://download.docker.com/linux/debian/gpg" in text
    assert "signed-by=/usr/share/keyrings/docker-archive-keyring.asc" in text
    assert "https://download.docker.com/linux/debian" in text
    assert lines[-1] == 'RUN jenkins-plugin-cli --plugins "blueocean docker-workflow"'
    assert user < text.index("jenkins-plugin-cli")  # plugins belong to the jenkins user


def test_jenkinsfile_builds_and_pushes_the_example() -> None:
    text = jenkins.jenkinsfile()
    assert "pipeline {" in text
    assert 'sh \'docker build -t "$IMAGE" --build-arg BASE="$BASE" examples/hello\'' in text
    assert "sh 'docker push \"$IMAGE\"'" in text
    assert "env.DOCKYARD_REGISTRY ?: 'registry:5000'" in text
    assert (Path(__file__).resolve().parents[3] / "examples" / "hello" / "Dockerfile").is_file()


def facts(preset: presets.Preset) -> plan.Facts:
    return plan.Facts(
        engine_image="dockyard/engine:0.1",
        registry_image="dockyard/registry:0.1",
        registry_storage="/var/lib/docker-registry",
        preset=preset,
    )


def env_of(body: dict[str, Any]) -> dict[str, str]:
    return dict(item.split("=", 1) for item in body["Env"])


def test_jenkins_container_is_wired_like_the_guide() -> None:
    cfg = config.StackConfig(ci={"preset": "jenkins"})
    names = plan.Names(cfg.name)
    body = plan.ci_body(cfg, facts(presets.get(cfg.ci.preset)))
    assert body["Image"] == jenkins.PRESET.image
    env = env_of(body)
    assert env["DOCKER_HOST"] == "tcp://docker:2376"
    assert env["DOCKER_TLS_VERIFY"] == "1"
    assert env["DOCKER_CERT_PATH"] == "/certs/client"
    binds = body["HostConfig"]["Binds"]
    assert f"{names.certs}:/certs/client:ro" in binds
    assert f"{names.ci_home}:/var/jenkins_home" in binds
    assert body["HostConfig"]["NetworkMode"] == names.network
    assert "User" not in body  # the image's jenkins user
    assert "PortBindings" not in body["HostConfig"]  # nothing published unless asked
    assert "ExposedPorts" not in body


def test_jenkins_ui_is_published_on_loopback_only_when_asked() -> None:
    cfg = config.StackConfig(ci={"preset": "jenkins", "ui_port": 18080})
    body = plan.ci_body(cfg, facts(presets.get("jenkins")))
    assert body["ExposedPorts"] == {"8080/tcp": {}}
    assert body["HostConfig"]["PortBindings"] == {
        "8080/tcp": [{"HostIp": "127.0.0.1", "HostPort": "18080"}]
    }


def test_buildbot_container_gets_the_registry_and_its_home() -> None:
    cfg = config.StackConfig(ci={"preset": "buildbot", "ui_port": 18010})
    names = plan.Names(cfg.name)
    body = plan.ci_body(cfg, facts(presets.get("buildbot")))
    assert body["Image"] == buildbot.PRESET.image
    assert env_of(body)["DOCKYARD_REGISTRY"] == plan.registry_ref(cfg)
    assert f"{names.ci_home}:/var/lib/buildbot" in body["HostConfig"]["Binds"]
    assert body["HostConfig"]["PortBindings"] == {
        "8010/tcp": [{"HostIp": "127.0.0.1", "HostPort": "18010"}]
    }
