"""eval-routers and train-router on a reward-routed run served by the stub server."""

import json
import re

import pytest
import yaml
from stub_server import stub_config

from arbitrage.commands.cli import main


def judge(messages):
    text = messages[-1]["content"]
    lang = re.search(r"The user's language: (\w+)", text).group(1)
    good = "ALPHA" if lang == "fr" else "BETA"
    return "Score: 9" if good in text.split("[Answer]")[1] else "Score: 4"


@pytest.fixture
def scored_run(tmp_path, stub_server, monkeypatch):
    stub_server.set_handler("alpha", lambda m: "ALPHA: " + m[-1]["content"][:40])
    stub_server.set_handler("beta", lambda m: "BETA: " + m[-1]["content"][:40])
    stub_server.set_handler("judge", judge)
    pool = {"n_prompts": 40, "languages": ["en", "fr"], "tasks": ["open_qa", "math"]}
    config = stub_config(str(tmp_path / "run"), stub_server.url, pool=pool)
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    monkeypatch.setenv("STUB_KEY", "sk-test")
    assert main(["run", str(path)]) == 0
    return tmp_path / "run"


def test_eval_routers_writes_table_json_and_plot(scored_run, capsys, monkeypatch):
    # content routes on language × task cells here: loading its embedding model takes seconds
    monkeypatch.setattr("routers.content.embedder_available", lambda model: False)
    assert main(["eval-routers", str(scored_run)]) == 0
    result = json.loads((scored_run / "router_eval.json").read_text())
    by_name = {r["router"]: r for r in result["routers"]}
    assert by_name["reward (oracle)"]["mean_reward"] == pytest.approx(result["oracle"])
    assert by_name["reward (oracle)"]["generations_per_prompt"] == 2.0
    # language decides the winner here, so a learning router gets close to the oracle at ~1 generation
    bandit = by_name["bandit ≤1.5"]
    assert bandit["generations_per_prompt"] <= 1.5
    assert bandit["mean_reward"] >= 0.9 * result["oracle"] > result["best_single"]
    png = scored_run / "router_eval.png"
    assert png.stat().st_size > 10_000
    assert "Routers on 40 fully scored prompts" in capsys.readouterr().out


def test_train_router_then_route_with_it(scored_run, tmp_path, stub_server):
    pytest.importorskip("sentence_transformers")
    assert main(["train-router", str(scored_run)]) == 0
    assert (scored_run / "router" / "meta.json").exists()
    config = yaml.safe_load((scored_run / "config.yaml").read_text())
    config["out"] = str(tmp_path / "routed")
    config["router"] = {"name": "embedding", "params": {"path": str(scored_run / "router")}}
    path = tmp_path / "routed.yaml"
    path.write_text(yaml.safe_dump(config))
    assert main(["run", str(path)]) == 0
    report = json.loads((tmp_path / "routed" / "report.json").read_text())
    assert report["generations_per_prompt"] == 1.0
    assert report["routed_by"] == {"predicted": 40}


def test_eval_routers_on_a_non_run_dir_is_one_error_line(tmp_path, capsys):
    assert main(["eval-routers", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("arbitrage: error:") and "not a run directory" in err and "\n" not in err
