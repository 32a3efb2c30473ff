import pytest

from dockyard import config
from dockyard.config import EngineOptions, parse_size
from dockyard.errors import DockyardError


@pytest.mark.parametrize(
    ("text", "size"),
    [("1024", 1024), ("512m", 512 * 1024**2), ("2g", 2 * 1024**3), ("1.5GiB", int(1.5 * 1024**3)),
     ("4k", 4096), (" 3 G ", 3 * 1024**3), (77, 77)],
)  # fmt: skip
def test_sizes(text, size):
    assert parse_size(text) == size


@pytest.mark.parametrize("text", ["", "2x", "-1g", "0", "g", "1.2.3m", True])
def test_bad_sizes(text):
    with pytest.raises(ValueError, match="invalid size"):
        parse_size(text)


@pytest.mark.parametrize("name", ["ci", "a", "jenkins-docker", "e2e-01"])
def test_good_names(name):
    assert config.validate(EngineOptions, {"name": name}).name == name


@pytest.mark.parametrize("name", ["", "CI", "-ci", "ci-", "ci_1", "a.b", "x" * 64, "ci/../x"])
def test_bad_names_say_why(name):
    with pytest.raises(DockyardError, match="name: invalid engine name"):
        config.validate(EngineOptions, {"name": name})


def test_every_bad_field_is_named_at_once():
    with pytest.raises(DockyardError) as caught:
        config.validate(
            EngineOptions,
            {"name": "ci", "memory": "lots", "cpus": 0, "mtu": 10, "pids": 1,
             "insecure_registries": ["http://x"], "registry_mirrors": ["ftp://m"]},
        )  # fmt: skip
    message = str(caught.value)
    for field in ("memory", "cpus", "mtu", "pids", "insecure_registries", "registry_mirrors"):
        assert field in message


def test_unknown_field_is_refused():
    with pytest.raises(DockyardError, match="colour"):
        config.validate(EngineOptions, {"name": "ci", "colour": "blue"})


def test_yaml_errors_name_file_and_line(tmp_path):
    path = tmp_path / "engine.yaml"
    path.write_text("name: ci\n# a comment\nmemory: 2g\ncpus: -3\n")
    with pytest.raises(DockyardError, match=r"engine\.yaml:4: cpus"):
        config.load_yaml(path, EngineOptions)


def test_yaml_syntax_error_names_line(tmp_path):
    path = tmp_path / "engine.yaml"
    path.write_text("name: ci\nmemory: [2g\n")
    with pytest.raises(DockyardError, match=r"engine\.yaml:\d+: invalid YAML"):
        config.load_yaml(path, EngineOptions)


def test_yaml_must_be_a_mapping(tmp_path):
    path = tmp_path / "engine.yaml"
    path.write_text("- ci\n")
    with pytest.raises(DockyardError, match="mapping"):
        config.load_yaml(path, EngineOptions)


def test_yaml_loads(tmp_path):
    path = tmp_path / "engine.yaml"
    path.write_text("name: ci\nmemory: 2g\naliases: [docker]\n")
    loaded = config.load_yaml(path, EngineOptions)
    assert loaded.memory == 2 * 1024**3
    assert loaded.aliases == ("docker",)


def test_missing_file(tmp_path):
    with pytest.raises(DockyardError, match="cannot read config"):
        config.load_yaml(tmp_path / "nope.yaml", EngineOptions)


def test_engine_options_layer_file_then_environment_then_flags(tmp_path, monkeypatch):
    path = tmp_path / "engine.yaml"
    path.write_text("memory: 1g\nmtu: 1400\n")
    monkeypatch.setenv("DOCKYARD_ENGINE_IMAGE", "registry.local/dind:27")
    options = config.engine_options({"name": "ci", "mtu": 1300}, path)
    assert options.memory == 1024**3
    assert options.mtu == 1300  # the flag wins over the file
    assert options.image == "registry.local/dind:27"


def test_engine_options_file_may_not_set_unknown_keys(tmp_path):
    path = tmp_path / "engine.yaml"
    path.write_text("memory: 1g\nmemroy: 2g\n")
    with pytest.raises(DockyardError, match=r"engine\.yaml:2: memroy"):
        config.engine_options({"name": "ci"}, path)
