"""The shipped configs and example scripts stay valid as the code changes."""

import ast
from pathlib import Path

import pytest

from arbitrage.config import load_config
from arbitrage.factories import preflight

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


@pytest.mark.parametrize("path", sorted(EXAMPLES.glob("*.yaml")), ids=lambda p: p.name)
def test_example_config_validates(path, monkeypatch):
    for env in ("OPENAI_API_KEY", "ANTHROPIC_API_KEY", "COHERE_API_KEY"):
        monkeypatch.setenv(env, "sk-placeholder")
    config = load_config(path)
    preflight(config)
    assert config.teachers


@pytest.mark.parametrize("path", sorted(EXAMPLES.glob("*.py")), ids=lambda p: p.name)
def test_example_script_parses_and_has_a_docstring(path):
    tree = ast.parse(path.read_text())
    assert ast.get_docstring(tree), f"{path.name} should say what it does and how to run it"
