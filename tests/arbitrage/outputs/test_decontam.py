"""Decontamination: planted eval-set overlaps are found, a clean control is left alone."""

import json
import random

import pytest
import yaml
from stub_server import stub_config

from arbitrage.commands.cli import main
from arbitrage.config import MixtureConfig, parse_config
from arbitrage.errors import ConfigError, DataError
from arbitrage.outputs.decontam import build_index, contaminated, tokens
from arbitrage.outputs.mixture import make_mixture
from arbitrage.records import Candidate, Generation, Outcome, Prompt, pick_winner

WORDS = [f"{a}{b}" for a in ("ka", "lo", "mi", "ne", "su", "ta", "ve", "zo") for b in "aeiou"]


def sentence(rng: random.Random, n: int) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(n))


def outcome(prompt_text: str, answer: str) -> Outcome:
    prompt = Prompt(prompt_text, "en", "open_qa")
    cand = (Candidate(Generation(prompt.id, "a", "openai/a", text=answer), 0.9, {}),)
    return Outcome(prompt, cand, pick_winner(cand, ["a"]), routed_by="all")


@pytest.fixture
def evals(tmp_path):
    rng = random.Random(0)
    gsm = [sentence(rng, 40) for _ in range(300)]
    mmlu = [sentence(rng, 30) for _ in range(300)] + [
        "短い",
        "東京の空は今日もとても青くて雲ひとつない良い天気です",
    ]
    (tmp_path / "gsm.jsonl").write_text("".join(json.dumps({"question": q}) + "\n" for q in gsm))
    from datasets import Dataset

    Dataset.from_dict({"text": mmlu}).to_parquet(str(tmp_path / "mmlu.parquet"))
    return tmp_path, gsm, mmlu


def test_tokens_are_normalised_and_cjk_is_per_character():
    assert tokens("Hello, WORLD! It's 3.5") == ["hello", "world", "it", "s", "3", "5"]
    assert tokens("東京の空") == ["東", "京", "の", "空"]
    assert tokens("Ｆｕｌｌ width") == ["full", "width"]  # NFKC


def test_planted_overlaps_are_found_and_the_clean_control_is_not(evals):
    path, gsm, mmlu = evals
    rng = random.Random(1)
    clean = [outcome(sentence(rng, 25), sentence(rng, 60)) for _ in range(200)]
    span = gsm[17].split()[5:18]  # 13 words, shown with other case and punctuation
    planted = {
        "prompt": outcome("Solve: " + ", ".join(span).upper() + "?", sentence(rng, 40)),
        "answer": outcome(sentence(rng, 20), "As we know " + " ".join(mmlu[42].split()[:13])),
        "japanese": outcome(
            "質問です", "答え：東京の空は今日もとても青くて雲ひとつない"
        ),  # 13 chars
    }
    near_miss = outcome(" ".join(gsm[3].split()[:12]), sentence(rng, 40))  # 12 words only
    config = MixtureConfig(
        decontaminate=[
            {"source": str(path / "gsm.jsonl"), "column": "question", "name": "gsm"},
            {"source": str(path / "mmlu.parquet"), "name": "mmlu"},
        ],
        dedup={"prompts": False, "answers": False},
    )
    mix = make_mixture([*clean, *planted.values(), near_miss], config)
    dropped = {d["prompt_id"]: d for d in mix.dropped}
    assert dropped[planted["prompt"].prompt.id]["eval_set"] == "gsm"
    assert dropped[planted["answer"].prompt.id]["eval_set"] == "mmlu"
    assert dropped[planted["japanese"].prompt.id]["eval_set"] == "mmlu"
    assert {d["reason"] for d in mix.dropped} == {"contaminated"}
    assert len(mix.rows) == 201  # every clean row and the 12-word near miss are kept
    counts = mix.counts()
    assert counts["contaminated"] == {"gsm": 1, "mmlu": 2}
    assert counts["dropped"] == {"contaminated": 3}
    assert counts["eval_sets"]["mmlu"] == {"items": 302, "short": 1}  # "短い" cannot match


def test_ngram_size_is_configurable():
    index = build_index("e", ["one two three four five six"], n=5)
    assert contaminated([["x one two three four five y"], ["one two three four"]], [index], 5) == [
        "e",
        None,
    ]
    assert contaminated([["one two three four"]], [build_index("e", ["one two three four"], 4)], 4)


def test_an_ngram_never_spans_two_messages():
    index = build_index("e", ["alpha beta gamma delta"], n=4)
    assert contaminated([["alpha beta", "gamma delta"]], [index], 4) == [None]


def test_bad_eval_sets_are_clear_errors(tmp_path):
    with pytest.raises(ConfigError, match="unsupported eval set file type"):
        parse_config({"teachers": [{"name": "a", "model": "openai/a"}],
                      "mixture": {"decontaminate": ["evals.txt"]}})  # fmt: skip
    with pytest.raises(ConfigError, match="decontaminate_ngram"):
        parse_config({"teachers": [{"name": "a", "model": "openai/a"}],
                      "mixture": {"decontaminate_ngram": 1}})  # fmt: skip
    rows = [outcome("q", "a long enough answer")]
    with pytest.raises(DataError, match="eval set not found"):
        make_mixture(rows, MixtureConfig(decontaminate=[str(tmp_path / "none.jsonl")]))
    (tmp_path / "e.jsonl").write_text('{"question": "x"}\n')
    with pytest.raises(DataError, match="no column 'text' \\(columns: question\\)"):
        make_mixture(rows, MixtureConfig(decontaminate=[str(tmp_path / "e.jsonl")]))
    with pytest.raises(DataError, match="could not load eval set 'openai/gsm8k' from the HF hub"):
        make_mixture(rows, MixtureConfig(decontaminate=["openai/gsm8k"]))  # offline in tests


def test_a_run_drops_contaminated_rows_and_card_and_report_count_them(
    tmp_path, stub_server, monkeypatch, capsys
):
    monkeypatch.setenv("STUB_KEY", "sk-decontam-0123456789")
    leaked = "the quick brown fox jumps over the lazy dog while seven wizards quietly judge boxes"
    (tmp_path / "eval.jsonl").write_text(json.dumps({"text": leaked}) + "\n")

    def alpha(messages):  # leaks the eval item into its English answers only
        if messages[-1]["content"].startswith("About me"):
            return f"Sure. {leaked}, as everyone knows."
        return "Voici ma propre réponse : " + messages[-1]["content"][:40]

    stub_server.set_handler("alpha", alpha)
    stub_server.set_handler(
        "beta", lambda m: "A clean answer of my own making, " + m[-1]["content"][:40]
    )
    stub_server.set_handler(
        "judge", lambda m: "Score: 9" if "ALPHA" not in m[-1]["content"] else "Score: 1"
    )
    config = stub_config(
        str(tmp_path / "run"),
        stub_server.url,
        router={"name": "fixed", "params": {"default": "alpha"}},
        mixture={"decontaminate": [{"source": str(tmp_path / "eval.jsonl"), "name": "leaky"}]},
    )
    config["pool"]["n_prompts"] = 6
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(config))
    assert main(["run", str(path)]) == 0
    run = tmp_path / "run"
    mix = json.loads((run / "mixture.json").read_text())
    english = sum(
        json.loads(x)["language"] == "en" for x in (run / "prompts.jsonl").read_text().splitlines()
    )
    assert english > 0
    assert mix["contaminated"] == {"leaky": english} and mix["rows"] == 6 - english
    card = (run / "README.md").read_text()
    assert f"| leaky | 1 | 0 | {english} |" in card
    capsys.readouterr()
    assert main(["report", str(run)]) == 0
    assert "contaminated by leaky" in capsys.readouterr().out
    assert "contaminated by leaky" in (run / "report.html").read_text()
