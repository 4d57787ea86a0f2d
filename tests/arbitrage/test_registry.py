"""The one name → class registry behind ``routers`` and ``reward``: built-ins imported on
first use, entry points, ``register``, and errors that name the closest valid name."""

from __future__ import annotations

import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest
from plugins import installed_plugin

from arbitrage.errors import ConfigError
from arbitrage.registry import Registry
from reward import get_reward
from routers import get_router

GROUP = "arbitrage.test_widgets"

WIDGETS = textwrap.dedent(
    """
    class Widget:
        def __init__(self, owner, *, seed=0, size=1, colour="red"):
            self.owner, self.seed, self.size, self.colour = owner, seed, size, colour


    class Gadget(Widget):
        pass


    class Stranger:
        pass
    """
)


@pytest.fixture
def widgets(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Registry]:
    """A registry of ``Widget`` subclasses whose built-ins live in a module not yet imported."""
    (tmp_path / "arb_widgets.py").write_text(WIDGETS)
    monkeypatch.syspath_prepend(str(tmp_path))
    import arb_widgets

    known = {
        "gadget": "arb_widgets:Gadget",
        "stranger": "arb_widgets:Stranger",
        "missing": "arb_widgets_gone:Gadget",
    }
    yield Registry("widget", arb_widgets.Widget, GROUP, known)
    sys.modules.pop("arb_widgets", None)


def test_unknown_name_names_the_closest_and_lists_them_all(widgets: Registry) -> None:
    with pytest.raises(ConfigError) as info:
        widgets.get("gadjet")
    assert str(info.value) == (
        "unknown widget 'gadjet' (did you mean 'gadget'?); widgets: gadget, missing, stranger"
    )


def test_unknown_name_with_nothing_close_only_lists_them(widgets: Registry) -> None:
    with pytest.raises(ConfigError, match="widgets: gadget, missing, stranger") as info:
        widgets.get("zzzzzz")
    assert "did you mean" not in str(info.value)


def test_a_builtin_is_imported_when_asked_for_not_when_listed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "arb_lazy.py").write_text("class Thing:\n    pass\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    registry: Registry[object] = Registry("thing", object, GROUP, {"thing": "arb_lazy:Thing"})
    try:
        assert registry.available()["thing"] == "arb_lazy:Thing"
        assert "arb_lazy" not in sys.modules
        assert registry.get("thing").__name__ == "Thing"
        assert "arb_lazy" in sys.modules
    finally:
        sys.modules.pop("arb_lazy", None)


def test_bad_references_are_config_errors(widgets: Registry) -> None:
    with pytest.raises(
        ConfigError, match=r"widget 'missing': cannot import arb_widgets_gone:Gadget"
    ):
        widgets.get("missing")
    with pytest.raises(
        ConfigError, match=r"'stranger': arb_widgets:Stranger is not a Widget subclass"
    ):
        widgets.get("stranger")


def test_build_passes_the_callers_args_and_checks_only_the_users_params(widgets: Registry) -> None:
    gadget = widgets.build("gadget", "me", seed=3, params={"size": 2})
    assert (type(gadget).__name__, gadget.owner, gadget.seed, gadget.size) == ("Gadget", "me", 3, 2)
    with pytest.raises(ConfigError) as info:
        widgets.build("gadget", "me", seed=3, params={"sise": 2})
    # the owner and the seed are the caller's to set: not offered to the user
    assert str(info.value) == (
        "unknown param 'sise' for widget 'gadget' (did you mean 'size'?); params: size, colour"
    )


def test_register_adds_a_class_to_the_mapping_it_was_given(widgets: Registry) -> None:
    class Gizmo(widgets.base):  # type: ignore[name-defined,misc]
        pass

    widgets.register("gizmo", Gizmo)
    assert widgets.known["gizmo"] is Gizmo
    assert widgets.get("gizmo") is Gizmo


def test_entry_points_are_found_and_a_registered_name_wins(
    widgets: Registry, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    plugin = "from arb_widgets import Widget\n\nclass Sprocket(Widget):\n    pass\n"
    root = tmp_path / "site"
    root.mkdir()
    with installed_plugin(root, monkeypatch, GROUP, "sprocket", plugin, attr="Sprocket") as ref:
        assert widgets.available()["sprocket"] == ref == "arb_plugin:Sprocket"
        assert widgets.build("sprocket", "me", params={"colour": "blue"}).colour == "blue"
        widgets.register("sprocket", widgets.base)
        assert widgets.get("sprocket") is widgets.base


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda: get_router("randum", ["a"]), "unknown router 'randum' (did you mean 'random'?)"),
        (lambda: get_reward("jugde"), "unknown reward 'jugde' (did you mean 'judge'?)"),
        (
            lambda: get_router("learned", ["a"], warmpu=3),
            "unknown param 'warmpu' for router 'learned' (did you mean 'warmup'?)",
        ),
        (
            lambda: get_reward("judge", model="openai/x", max_concurency=4),
            "unknown param 'max_concurency' for reward 'judge' (did you mean 'max_concurrency'?)",
        ),
    ],
)
def test_routers_and_rewards_are_looked_up_through_it(build, message) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ConfigError) as info:
        build()
    assert str(info.value).startswith(message)
