"""Samples and fusion on a real local model: the embedded default config, its teachers
swapped for SmolLM2-135M (the smallest bundled model) and made small."""

from __future__ import annotations

import json

import pytest
import yaml
from datasets import load_from_disk

from arbitrage.commands.cli import main
from arbitrage.config import default_config


@pytest.mark.slow
def test_local_teachers_give_samples_and_fuse_on_the_default(tmp_path, smol_cache, monkeypatch):  # type: ignore[no-untyped-def]
    monkeypatch.setenv("ARBITRAGE_CACHE_DIR", str(smol_cache))
    config = default_config().public_dict()
    config["out"] = str(tmp_path / "run")
    # short-answer tasks and room to finish: a truncated answer is never scored or fused
    config["pool"].update(n_prompts=4, languages=["en"], tasks=["classification", "extraction"])
    smol = {"model": "local/smollm2-135m-instruct", "max_tokens": 48, "temperature": 0.9}
    config["teachers"] = [{**smol, "name": "smollm2", "samples": 2}]
    config["router"] = {"name": "reward"}
    config["fusion"] = {"model": "smollm2", "top_k": 2, "keep": "always"}
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    assert main(["run", str(path)]) == 0

    run = tmp_path / "run"
    outcomes = [json.loads(line) for line in (run / "outcomes.jsonl").read_text().splitlines()]
    assert len(outcomes) == 4
    for outcome in outcomes:
        gens = [c["generation"] for c in outcome["candidates"]]
        assert [g["sample"] for g in gens] == [0, 1]
        assert all(g["error"] == "" for g in gens)
    # distinct seeds: the two samples of a prompt differ (at temperature 0.9)
    assert any(len({c["generation"]["text"] for c in o["candidates"]}) == 2 for o in outcomes)
    fused = [o["fusion"] for o in outcomes if o["fusion"] is not None]
    scored = [o for o in outcomes if sum(c["reward"] is not None for c in o["candidates"]) >= 2]
    assert len(fused) == len(scored) >= 1  # every prompt with two scored samples was fused
    for fusion in fused:
        assert fusion["candidate"]["generation"]["model"] == "local/smollm2-135m-instruct"
        assert [s["sample"] for s in fusion["sources"]] in ([0, 1], [1, 0])
    report = json.loads((run / "report.json").read_text())
    assert report["samples"]["samples"] == 2
    assert report["fusion"]["fused"] == len(fused)
    ds = load_from_disk(str(run / "dataset"))
    kept = [row for row in ds if row["fused_from"]]
    assert len(kept) <= sum(f["kept"] for f in fused)  # a kept one may fail a filter
