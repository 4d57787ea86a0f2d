"""Verifiers on a real local model (SmolLM2-135M, the smallest bundled one): math
prompts with references, and synthesised prompts with constraints attached."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from arbitrage.commands.cli import main
from arbitrage.config import default_config

SMOL = {"model": "local/smollm2-135m-instruct", "max_tokens": 48, "temperature": 0.9}


def _run(tmp_path: Path, config: dict[str, Any]) -> Path:
    config["out"] = str(tmp_path / "run")
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    assert main(["run", str(path)]) == 0
    return tmp_path / "run"


def _outcomes(run: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (run / "outcomes.jsonl").read_text().splitlines()]


@pytest.mark.slow
def test_math_verifier_on_local_samples(tmp_path: Path, smol_cache: Path, monkeypatch: Any) -> None:
    monkeypatch.setenv("ARBITRAGE_CACHE_DIR", str(smol_cache))
    prompts = tmp_path / "math.jsonl"
    rows = [
        {"text": f"What is {a} + {b}? Reply with the number.", "language": "en",
         "task": "math", "reference": a + b}
        for a, b in ((2, 3), (10, 5), (7, 1))
    ]  # fmt: skip
    prompts.write_text("".join(json.dumps(r) + "\n" for r in rows))
    config = default_config().public_dict()
    config["pool"] = {"prompts": str(prompts)}
    config["teachers"] = [{**SMOL, "name": "smollm2", "samples": 2}]
    config["router"] = {"name": "reward"}
    config["reward"] = {"kind": "math", "language": {"mode": "off"}}
    run = _run(tmp_path, config)
    outcomes = _outcomes(run)
    assert len(outcomes) == 3
    scored = [c for o in outcomes for c in o["candidates"] if c["reward"] is not None]
    assert scored and all(c["reward"] in (0.0, 1.0) for c in scored)
    assert all(c["reward_details"]["basis_reference"] == 1.0 for c in scored)
    report = json.loads((run / "report.json").read_text())
    assert set(report["reward_basis"]) <= {"reference"}


@pytest.mark.slow
def test_constraints_attached_to_a_synthesised_pool(
    tmp_path: Path, smol_cache: Path, monkeypatch: Any
) -> None:
    monkeypatch.setenv("ARBITRAGE_CACHE_DIR", str(smol_cache))
    config = default_config().public_dict()
    config["pool"].update(n_prompts=3, languages=["en"], tasks=["open_qa"], constraints=2)
    config["teachers"] = [{**SMOL, "name": "smollm2"}]
    config["router"] = {"name": "reward"}
    config["reward"] = {"kind": "constraints", "language": {"mode": "off"}}
    run = _run(tmp_path, config)
    outcomes = _outcomes(run)
    for outcome in outcomes:
        assert len(outcome["prompt"]["constraints"]) == 2
        for cand in outcome["candidates"]:
            if cand["reward"] is not None:
                details = cand["reward_details"]
                assert details["constraints_total"] == 2.0
                assert cand["reward"] == details["constraints_met"] / 2
    prompts = [json.loads(line) for line in (run / "prompts.jsonl").read_text().splitlines()]
    assert all(len(p["constraints"]) == 2 for p in prompts)
