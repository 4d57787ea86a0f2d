"""A third-party router found through the ``arbitrage.routers`` entry-point group, usable by name."""

import sys
import textwrap

import pytest

from arbitrage.records import Prompt
from routers import available, get_router

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
    """A real (if tiny) installed distribution: a module plus a dist-info with entry_points.txt."""
    (tmp_path / "arb_plugin.py").write_text(PLUGIN)
    dist = tmp_path / "arb_plugin-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: arb-plugin\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text(
        "[arbitrage.routers]\nlast_teacher = arb_plugin:LastTeacher\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    yield
    sys.modules.pop("arb_plugin", None)


def test_entry_point_router_is_listed_and_built_by_name(installed_plugin):
    assert available()["last_teacher"] == "arb_plugin:LastTeacher"
    router = get_router("last_teacher", ["a", "b"], repeat=2)
    route = router.route([Prompt(text="q", language="en", task="math")])[0]
    assert route.teachers == ["b"] and route.reason == "plugin x2"


def test_entry_point_router_from_yaml_config(installed_plugin, tmp_path, stub_server, monkeypatch):
    import json

    import yaml
    from stub_server import stub_config

    from arbitrage.cli import main

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
