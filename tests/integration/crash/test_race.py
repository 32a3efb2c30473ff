"""Two of one command at once: one clear winner, a loser that says so, no duplicates, no
leaks."""

from __future__ import annotations

import json
import re

import pytest

from .conftest import dockyard, labelled, named_networks, start, wait_for_line

pytestmark = pytest.mark.docker
LOSER = re.compile(
    r"busy: another dockyard process|being created by another|already exists|at the same moment"
)


def both(*args, envs=({}, {})):
    processes = [start(*args, env=env) for env in envs]
    return [(p, *p.communicate(timeout=300)) for p in processes]


def test_two_creates_of_one_engine_one_wins(docker_client, engine_image, unique):
    name = unique("rc")
    results = both("engine", "create", name)
    codes = sorted(p.returncode for p, _, _ in results)
    assert codes == [0, 1], results
    loser = next(err for p, _, err in results if p.returncode)
    assert LOSER.search(loser), loser
    assert len(named_networks(docker_client, f"dockyard-{name}")) == 1
    assert dockyard("engine", "create", name).code == 1  # it exists, and is ready
    assert dockyard("engine", "rm", name, "--volumes").code == 0
    assert labelled(docker_client, engine=name) == []


def test_two_creates_that_share_no_state_dir_leave_one_network(
    docker_client, engine_image, unique, tmp_path
):
    name = unique("rs")
    envs = [{"DOCKYARD_STATE_DIR": str(tmp_path / side)} for side in ("a", "b")]
    results = both("engine", "create", name, envs=envs)
    assert sorted(p.returncode for p, _, _ in results) == [0, 1], results
    assert len(named_networks(docker_client, f"dockyard-{name}")) == 1
    winner = next(env for (p, _, _), env in zip(results, envs, strict=True) if not p.returncode)
    assert dockyard("engine", "rm", name, "--volumes", env=winner).code == 0
    assert labelled(docker_client, engine=name) == []


def test_two_ups_of_one_stack_one_wins(stack_file, docker_client, engine_image, agent_image):
    name, path = stack_file
    results = both("up", "-f", str(path))
    failed = [err for p, _, err in results if p.returncode]
    assert len(failed) <= 1, results
    assert all(LOSER.search(err) for err in failed), failed
    assert len(named_networks(docker_client, name)) == 1
    assert dockyard("status", "--stack", name).code == 0
    assert dockyard("down", "--stack", name, "--volumes").code == 0
    assert labelled(docker_client, stack=name) == []


def test_gc_during_up_and_during_create_takes_nothing_being_made(
    stack_file, docker_client, engine_image, agent_image, unique
):
    name, path = stack_file
    up = start("up", "-f", str(path))
    wait_for_line(up, "waiting for")  # the stack's engine exists, not yet ready
    swept = dockyard("gc", "--grace", "0s", "--json")
    assert swept.code == 0, swept.stderr
    assert not [r for r in json.loads(swept.stdout)["removed"] if name in r["name"]]
    up.communicate(timeout=300)
    assert up.returncode == 0
    assert dockyard("status", "--stack", name).code == 0

    engine = unique("rg")
    create = start("engine", "create", engine)
    wait_for_line(create, "waiting for")
    swept = dockyard("gc", "--grace", "0s", "--json")
    removed = json.loads(swept.stdout)["removed"]
    assert not [r for r in removed if r["name"] == engine]  # its create holds its lock
    create.communicate(timeout=300)
    assert create.returncode == 0
    assert dockyard("engine", "rm", engine, "--volumes").code == 0
    assert labelled(docker_client, engine=engine) == []


def test_a_name_an_older_race_left_duplicated_is_healed(docker_client, engine_image, unique):
    """Before the fix, two racing creates left two networks of one name, and every later
    create failed with '2 matches found based on name'."""
    from dockyard import labels

    name = unique("rd")
    for _ in range(2):
        docker_client.api.create_network(
            f"dockyard-{name}",
            driver="bridge",
            labels=labels.managed(labels.ROLE_NETWORK, engine=name),
            check_duplicate=False,
        )
    assert len(named_networks(docker_client, f"dockyard-{name}")) == 2
    created = dockyard("engine", "create", name)
    assert created.code == 0, created.stderr
    assert len(named_networks(docker_client, f"dockyard-{name}")) == 1
    assert dockyard("engine", "rm", name, "--volumes").code == 0
    assert labelled(docker_client, engine=name) == []
