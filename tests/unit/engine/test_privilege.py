import pytest

from dockyard.engine import privilege
from dockyard.engine.privilege import Mode, Probe, decide


def test_sysbox_wins_without_probing():
    decision = decide(Probe(runtimes=frozenset({"runc", "sysbox-runc"})))
    assert decision.mode is Mode.SYSBOX
    assert privilege.host_config(Mode.SYSBOX) == {"Runtime": "sysbox-runc"}


def test_privileged_probe_comes_first():
    decision = decide(Probe(runtimes=frozenset({"runc"})))
    assert decision.mode is None
    assert decision.needs == "privileged"


def test_privileged_granted():
    decision = decide(Probe(privileged_ok=True))
    assert decision.mode is Mode.PRIVILEGED
    assert privilege.host_config(decision.mode) == {"Privileged": True}


def test_privileged_refused_asks_for_caps_probe():
    decision = decide(Probe(privileged_ok=False, privileged_error="unable to apply caps"))
    assert decision.mode is None
    assert decision.needs == "caps"


def test_caps_fallback_drops_what_the_host_lacks():
    decision = decide(
        Probe(
            privileged_ok=False,
            privileged_error="OCI runtime failed\nunable to apply caps: operation not permitted",
            missing_caps=("SYS_RESOURCE",),
            caps_ok=True,
        )
    )
    assert decision.mode is Mode.CAPS
    assert decision.cap_drop == ("SYS_RESOURCE",)
    assert "unable to apply caps" in decision.reason
    config = privilege.host_config(Mode.CAPS, decision.cap_drop)
    assert config["CapAdd"] == ["ALL"]
    assert config["CapDrop"] == ["SYS_RESOURCE"]
    assert "seccomp=unconfined" in config["SecurityOpt"]
    assert "apparmor=unconfined" in config["SecurityOpt"]
    # systempaths=unconfined, spelled as the Engine API reads it
    assert config["MaskedPaths"] == []
    assert config["ReadonlyPaths"] == []
    assert config["CgroupnsMode"] == "host"
    assert "/sys/fs/cgroup:/sys/fs/cgroup:rw" in config["Binds"]


def test_nothing_works_names_both_causes():
    with pytest.raises(privilege.NoEngineModeError, match=r"privileged refused.*capability") as err:
        decide(
            Probe(
                privileged_ok=False,
                privileged_error="no caps",
                caps_ok=False,
                caps_error="denied by policy",
            )
        )
    assert "allow privileged containers" in err.value.fix


# A container made by Docker 20.10 with --cap-add ALL, as a CI job's or a fresh machine's.
NESTED = ("SYS_RESOURCE", "PERFMON", "BPF", "CHECKPOINT_RESTORE")
REFUSED = "unable to apply caps: operation not permitted: unknown"


def _unknown(cap: str) -> str:
    return f'invalid CapDrop: unknown capability: "CAP_{cap}"'


def test_capabilities_the_host_engine_does_not_know_are_not_dropped():
    probe = Probe(privileged_ok=False, privileged_error=REFUSED, missing_caps=NESTED)
    tries = []
    while (decision := decide(probe)).mode is None:
        tries.append(decision.cap_drop)
        known = {"SYS_RESOURCE"}  # what Docker 20.10's CapDrop accepts of these four
        stranger = next((cap for cap in decision.cap_drop if cap not in known), None)
        ok = stranger is None
        probe = privilege.after_caps_try(probe, ok, None if ok else _unknown(stranger))
    assert decision.mode is Mode.CAPS
    assert decision.cap_drop == ("SYS_RESOURCE",)
    assert tries[0] == NESTED
    assert len(tries) == 4  # one refusal per unknown name, then success


def test_an_unknown_capability_not_asked_for_is_a_real_refusal():
    probe = Probe(privileged_ok=False, missing_caps=("SYS_RESOURCE",))
    probe = privilege.after_caps_try(probe, False, _unknown("PERFMON"))
    assert probe.caps_ok is False
    with pytest.raises(privilege.NoEngineModeError):
        decide(probe)


@pytest.mark.parametrize(
    ("error", "cap"),
    [
        (_unknown("PERFMON"), "PERFMON"),
        ('invalid CapAdd: unknown capability: "cap_bpf"', "BPF"),
        ("daemon: unknown capability: CAP_CHECKPOINT_RESTORE", "CHECKPOINT_RESTORE"),
        (REFUSED, None),
        (None, None),
    ],
)
def test_unknown_capability_is_read_from_the_engine_error(error, cap):
    assert privilege.unknown_capability(error) == cap


def test_inside_a_container_the_fix_names_the_flags_it_needs():
    probe = Probe(
        privileged_ok=False,
        privileged_error=REFUSED,
        missing_caps=("SYS_ADMIN", "SYS_RESOURCE"),
        caps_ok=False,
        caps_error="operation not permitted",
        in_container=True,
    )
    with pytest.raises(privilege.NoEngineModeError) as err:
        decide(probe)
    assert "lacks SYS_ADMIN" in err.value.fix
    assert "--cap-add ALL" in err.value.fix
    assert "--cgroupns host" in err.value.fix


def test_on_a_host_lacking_what_dockerd_needs_the_fix_says_so():
    probe = Probe(
        privileged_ok=False, missing_caps=("NET_ADMIN",), caps_ok=False, caps_error="EPERM"
    )
    with pytest.raises(privilege.NoEngineModeError) as err:
        decide(probe)
    assert "bounding set lacks NET_ADMIN" in err.value.fix


@pytest.mark.parametrize(
    ("mask", "missing"),
    [
        ("000001ffffffffff", ()),
        ("000001fffeffffff", ("SYS_RESOURCE",)),  # these build machines
        ("000001fffedfffff", ("SYS_ADMIN", "SYS_RESOURCE")),
        ("0000000000000000", privilege.CAPABILITIES),
    ],
)
def test_missing_capabilities_from_capbnd(mask, missing):
    assert privilege.missing_capabilities(mask) == missing
