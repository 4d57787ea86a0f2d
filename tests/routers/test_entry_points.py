"""A third-party router found through the ``arbitrage.routers`` entry-point group, usable by name."""

import textwrap

import plugins
import pytest

PLUGIN = textwrap.dedent(
    """
    from routers import Route, Router

    class LastTeacher(Router):
        name = "last_teacher"

        def __init__(self, teachers, *, seed=0, repeat=1):
            super().__init__(teachers, seed=seed)
            self.repeat = repeat

        def route(self, prompts):
            return [Route([self.teachers[-1]], f"plugin x{self.repeat}") for _ in prompts]
    """
)


@pytest.fixture
def installed_plugin(tmp_path, monkeypatch):
    with plugins.installed_plugin(
        tmp_path, monkeypatch, "arbitrage.routers", "last_teacher", PLUGIN, attr="LastTeacher"
    ) as ref:
        yield ref


def test_entry_point_router_from_yaml_config(installed_plugin, tmp_path, stub_server, monkeypatch):
    import json

    import yaml
    from stub_server import stub_config

    from arbitrage.commands.cli import main

    monkeypatch.setenv("STUB_KEY", "sk-test")
    stub_server.set_handler("judge", lambda m: "Score: 7")
    config = stub_config(
        str(tmp_path / "run"),
        stub_server.url,
        teachers=("a", "b"),
        pool={"n_prompts": 4, "languages": ["en"], "tasks": ["math"]},
        router={"name": "last_teacher", "params": {"repeat": 3}},
    )
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(config))
    assert main(["run", str(path)]) == 0
    report = json.loads((tmp_path / "run" / "report.json").read_text())
    assert (
        report["teachers"]["b"]["generations"] == 4 and report["teachers"]["a"]["generations"] == 0
    )
    assert {r["model"] for r in stub_server.requests} == {"b", "judge"}
