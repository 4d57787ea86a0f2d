"""The whole loop on a real local model: SmolLM2-135M teachers, the offline reward, the CLI."""

import json

import pytest
import yaml
from datasets import load_from_disk
from trl.data_utils import is_conversational

from arbitrage.commands.cli import main


@pytest.mark.slow
def test_cli_run_on_real_local_model(tmp_path, smol_cache, monkeypatch, capsys):
    monkeypatch.setenv("ARBITRAGE_CACHE_DIR", str(smol_cache))
    config = {
        "out": str(tmp_path / "run"),
        "seed": 0,
        "batch_size": 4,
        "pool": {
            "n_prompts": 4,
            "languages": ["en", "fr"],
            "tasks": ["extraction", "classification"],
        },
        "teachers": [
            {
                "name": "cold",
                "model": "local/smollm2-135m-instruct",
                "temperature": 0.0,
                "max_tokens": 48,
            },
            {
                "name": "warm",
                "model": "local/smollm2-135m-instruct",
                "temperature": 0.9,
                "max_tokens": 48,
            },
        ],
        "reward": {"kind": "local"},
        "router": {"name": "reward"},
    }
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    assert main(["run", str(path)]) == 0

    run = tmp_path / "run"
    outcomes = [json.loads(line) for line in (run / "outcomes.jsonl").read_text().splitlines()]
    assert len(outcomes) == 4
    candidates = [c for o in outcomes for c in o["candidates"]]
    assert len(candidates) == 8
    for cand in candidates:
        gen = cand["generation"]
        assert gen["usage"]["prompt_tokens"] > 0
        assert gen["finish_reason"] in ("stop", "length")
        if gen["error"] == "" and gen["text"].strip() and gen["finish_reason"] == "stop":
            details = cand["reward_details"]
            assert {"judge_yes", "language_fidelity", "degeneracy"} <= set(details)
            if details.get("language_gated"):  # the default gate: below 0.5, unscored
                assert cand["reward"] is None and details["language_fidelity"] < 0.5
            else:
                assert -0.5 <= cand["reward"] <= 1.0
        else:
            assert cand["reward"] is None
    ds = load_from_disk(str(run / "dataset"))
    assert len(ds) == sum(o["winner"] is not None for o in outcomes) >= 1
    assert all(is_conversational(row) for row in ds)
    assert "Wins per language × teacher" in capsys.readouterr().out
