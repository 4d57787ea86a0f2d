"""On the embedded default (real local teachers, offline reward), the learned router's choices
follow the reward outcomes it has seen, language by language; the report renders."""

import json

import pytest
import yaml
from figures import assert_real_png

from arbitrage.commands.cli import main
from arbitrage.config import default_config
from arbitrage.records import Outcome
from routers import get_router


@pytest.mark.slow
def test_learned_choices_follow_warmup_outcomes(tmp_path, smol_cache, monkeypatch):
    # SmolLM2 as the session converted it; Gemma is converted here, next to it
    models = tmp_path / "models"
    models.mkdir()
    for converted in smol_cache.iterdir():
        (models / converted.name).symlink_to(converted, target_is_directory=True)
    monkeypatch.setenv("ARBITRAGE_CACHE_DIR", str(models))
    data = default_config().public_dict()
    data["out"] = str(tmp_path / "run")
    data["pool"]["n_prompts"] = 12
    data["batch_size"] = 6
    data["router"]["params"] = {"warmup": 6, "explore": 0.0}
    for teacher in data["teachers"]:
        teacher["max_tokens"] = 64
    path = tmp_path / "default.yaml"
    path.write_text(yaml.safe_dump(data))
    assert main(["run", str(path)]) == 0

    lines = (tmp_path / "run" / "outcomes.jsonl").read_text().splitlines()
    outcomes = [Outcome.from_dict(json.loads(line)) for line in lines]
    warmup = [o for o in outcomes if o.routed_by == "warmup"]
    exploit = [o for o in outcomes if o.routed_by == "exploit"]
    assert len(warmup) == 6 and len(exploit) == 6
    assert all(o.n_generations == 2 for o in warmup) and all(o.n_generations == 1 for o in exploit)

    # Relearning from the recorded warm-up outcomes alone reproduces every later choice:
    # the choices are a function of the reward outcomes, nothing else.
    names = [t["name"] for t in data["teachers"]]
    replica = get_router("learned", names, warmup=0, explore=0.0)
    replica.update(warmup)
    for outcome in exploit:
        assert outcome.candidates[0].teacher == replica.best(outcome.prompt), outcome.prompt.id

    # Where one teacher won every warm-up comparison of a language, that language goes to it.
    for lang in {o.prompt.language for o in exploit}:
        winners = {o.winner for o in warmup if o.prompt.language == lang and o.winner}
        if len(winners) == 1:
            (winner,) = winners
            chosen = {o.candidates[0].teacher for o in exploit if o.prompt.language == lang}
            assert chosen == {winner}, lang

    # The report of the embedded default renders: every figure is a real picture.
    run = tmp_path / "run"
    for name in ("win_rate_language", "win_rate_task", "rewards", "cost_tokens"):
        assert_real_png(run / "figures" / f"{name}.png")
    assert (run / "report.html").read_text().count("data:image/png;base64,") == 4
