"""The mixture: filters, near-duplicates, quotas and preference pairs, on hand-made outcomes."""

import json
import math
import re
import sys
from collections import Counter
from pathlib import Path

import pytest
from datasets import load_from_disk
from stub_server import stub_config
from trl.data_utils import is_conversational, maybe_apply_chat_template

from arbitrage.config import MixtureConfig, parse_config
from arbitrage.errors import ConfigError
from arbitrage.outputs.mixture import build_mixture, make_mixture, save_mixture
from arbitrage.records import Candidate, Generation, Outcome, Prompt, pick_winner

TEACHERS = ["a", "b", "c"]
EXAMPLES = Path(__file__).resolve().parents[3] / "examples"


def outcome(text, answers, *, language="en", task="open_qa", finish="stop", details=None):
    """An outcome whose candidates are ``{teacher: (answer, reward)}``."""
    prompt = Prompt(text, language, task)
    cands = tuple(
        Candidate(
            Generation(prompt.id, t, f"openai/{t}", text=ans, finish_reason=finish),
            reward,
            details or {},
        )
        for t, (ans, reward) in answers.items()
    )
    return Outcome(prompt, cands, pick_winner(cands, TEACHERS), routed_by="all")


def answer(i, teacher="a"):
    return f"Answer {i} by {teacher}: " + " ".join(f"w{i}x{k}" for k in range(12))


def test_every_filter_drops_with_its_reason_and_good_rows_stay():
    good = [outcome(f"Question number {i} about tides?", {"a": (answer(i), 0.9)}) for i in range(5)]
    bad = {
        "refusal": outcome("Q refusal", {"a": ("I'm sorry, but I can't help with that.", 0.9)}),
        "boilerplate": outcome(
            "Q ai", {"a": ("As an AI language model, I think tides rise.", 0.9)}
        ),
        "too_short": outcome("Q short", {"a": ("ok", 0.9)}),
        "too_long": outcome("Q long", {"a": ("x" * 500, 0.9)}),
        "truncated": outcome("Q code", {"a": ("```python\nprint(1)", 0.9)}, finish=""),
        "no_winner": outcome("Q failed", {"a": ("cut", 0.9)}, finish="length"),
        "language": outcome(
            "Q lang",
            {"a": ("This is English, not French.", 0.9)},
            details={"language_fidelity": 0.1},
        ),
    }
    config = MixtureConfig(min_chars=5, max_chars=400, min_language_fidelity=0.5)
    mix = make_mixture(good + list(bad.values()), config, teacher_order=TEACHERS)
    assert len(mix.rows) == 5
    assert Counter(d["reason"] for d in mix.dropped) == Counter(list(bad))
    assert {d["prompt_id"] for d in mix.dropped} == {o.prompt.id for o in bad.values()}
    assert mix.counts()["rows"] + len(mix.dropped) == mix.outcomes


def test_fences_say_truncated_only_when_the_provider_gave_no_finish_reason():
    text = "In Markdown, a line of ``` opens a code block:\n\n```\nprint(1)\n```"  # 3 fences
    complete = outcome("Q fences", {"a": (text, 0.9)})  # finish_reason "stop"
    unknown = outcome("Q fences again", {"a": (text, 0.9)}, finish="")
    mix = make_mixture([complete, unknown], MixtureConfig(), teacher_order=TEACHERS)
    assert [row["messages"][1]["content"] for row in mix.rows] == [text]
    assert [(d["prompt_id"], d["reason"]) for d in mix.dropped] == [
        (unknown.prompt.id, "truncated")
    ]


def test_language_fidelity_is_computed_when_the_reward_has_none():
    rows = [
        outcome("Q en", {"a": ("Bonjour, voici la réponse.", 0.9)}),
        outcome("Q en2", {"a": ("Hello, here is the answer.", 0.9)}),
    ]
    seen = []

    def fidelity(text, lang):
        seen.append(lang)
        return 0.0 if text.startswith("Bonjour") else 1.0

    mix = make_mixture(rows, MixtureConfig(min_language_fidelity=0.5), fidelity=fidelity)
    assert [r["prompt_id"] for r in mix.rows] == [rows[1].prompt.id]
    assert seen == ["en", "en"]
    assert mix.counts()["dropped"] == {"language": 1}


def test_near_duplicates_removed_distinct_rows_kept():
    prompts = [
        "Explain how the tides work for a fisherman who sails every morning on Lake Victoria.",
        "Write a Python function that merges two sorted lists without using the sort method.",
        "I buy 3 items at 4.50 each and 2 items at 7.25 each. How much do I spend in total?",
    ]
    rows = [outcome(p, {"a": (answer(i), 0.5)}) for i, p in enumerate(prompts)]
    # planted: prompts 0 and 1 again with one word changed (lower reward: the copy is dropped)
    rows.append(outcome(prompts[0].replace("every", "each"), {"a": (answer(50), 0.4)}))
    rows.append(outcome(prompts[1].replace("lists", "list"), {"a": (answer(51), 0.3)}))
    # planted: a distinct prompt whose answer copies row 2's (punctuation changed)
    rows.append(outcome("What should a new beekeeper check first?", {"a": (answer(2) + "!", 0.2)}))
    # the same prompt in another language is not a duplicate
    rows.append(outcome(prompts[0], {"a": (answer(60), 0.5)}, language="fr"))
    distinct = [
        outcome(f"Distinct question {w} about {w}-farming?", {"a": (answer(100 + i), 0.5)})
        for i, w in enumerate(["rice", "coffee", "tea", "maize"])
    ]
    mix = make_mixture(rows + distinct, MixtureConfig())
    dropped = Counter(d["reason"] for d in mix.dropped)
    assert dropped == {"duplicate_prompt": 2, "duplicate_answer": 1}
    kept = {r["prompt_id"] for r in mix.rows}
    assert {rows[i].prompt.id for i in (0, 1, 2, 6)} <= kept
    assert {o.prompt.id for o in distinct} <= kept
    # the higher-reward copy is the one kept
    assert rows[3].prompt.id not in kept and rows[5].prompt.id not in kept
    assert (
        len(
            make_mixture(
                rows + distinct, MixtureConfig(dedup={"prompts": False, "answers": False})
            ).rows
        )
        == 11
    )


def grid(n_per_cell=4):
    """en/fr/sw × open_qa/math; teacher a wins 2 of 4 in each cell, b and c one each."""
    rows, i = [], 0
    for lang in ("en", "fr", "sw"):
        for task in ("open_qa", "math"):
            for k in range(n_per_cell):
                winner = "a" if k % 4 < 2 else ("b" if k % 4 == 2 else "c")
                answers = {
                    t: (answer(i, t), 0.9 if t == winner else 0.1 + k / 100) for t in TEACHERS
                }
                rows.append(
                    outcome(
                        f"Distinct prompt {i} on topic {i * 13} {lang}/{task}",
                        answers,
                        language=lang,
                        task=task,
                    )
                )
                i += 1
    return rows


def largest_feasible(counts, share):
    """Brute force: the most rows such that no teacher holds more than ``share`` of them."""
    return max(
        n
        for n in range(sum(counts.values()) + 1)
        if sum(min(c, math.floor(share * n + 1e-9)) for c in counts.values()) >= n
    )


def test_quotas_are_respected_exactly():
    rows = grid()  # 24 rows: 8 per language, 12 per task; a wins 12, b 6, c 6
    caps = {"per_language": {"en": 5}, "per_task": {"math": 9}}
    capped = make_mixture(rows, MixtureConfig(**caps), teacher_order=TEACHERS)
    assert Counter(r["language"] for r in capped.rows)["en"] == 5
    assert Counter(r["task"] for r in capped.rows)["math"] == 9
    assert capped.counts()["dropped"] == {"quota_language": 3, "quota_task": 2}
    before = Counter(r["teacher"] for r in capped.rows)
    assert before["a"] > 0.4 * len(capped.rows)  # so the share cap has work to do

    mix = make_mixture(
        rows, MixtureConfig(max_share_per_teacher=0.4, **caps), teacher_order=TEACHERS
    )
    n = len(mix.rows)
    teachers = Counter(r["teacher"] for r in mix.rows)
    assert n == largest_feasible(before, 0.4)
    assert all(count <= 0.4 * n for count in teachers.values())
    assert mix.counts()["dropped"] == {
        "quota_language": 3,
        "quota_task": 2,
        "quota_teacher": len(capped.rows) - n,
    }
    assert n + len(mix.dropped) == len(rows)


def test_language_cap_keeps_every_task_and_teacher_cell():
    mix = make_mixture(grid(), MixtureConfig(per_language={"fr": 6}), teacher_order=TEACHERS)
    fr = [r for r in mix.rows if r["language"] == "fr"]
    assert len(fr) == 6
    assert {(r["task"], r["teacher"]) for r in fr} == {
        (task, t) for task in ("open_qa", "math") for t in TEACHERS
    }
    assert mix.shortfall == {}
    short = make_mixture(grid(), MixtureConfig(per_language={"fr": 20}))
    assert short.shortfall == {"language:fr": 12}


def test_sft_and_preference_rows_are_trl_conversational(tmp_path):
    rows = grid()
    rows.append(outcome("Only one answer here, no pair", {"a": (answer(99), 0.9)}))
    rows.append(
        outcome("Two close answers, no pair", {"a": (answer(98), 0.55), "b": (answer(97), 0.5)})
    )
    mix = make_mixture(
        rows, MixtureConfig(preference_pairs={"min_margin": 0.1}), teacher_order=TEACHERS
    )
    assert mix.counts()["pairs"] == 24
    assert mix.pairs_dropped == {"single_answer": 1, "small_margin": 1}
    sft, pref = mix.sft(), mix.preference()
    assert all(is_conversational(row) for row in sft)
    pair = pref[0]
    assert is_conversational(pair)
    assert pair["prompt"][0]["role"] == "user" and pair["chosen"][0]["role"] == "assistant"
    assert pair["chosen_reward"] - pair["rejected_reward"] >= 0.1
    assert pair["chosen_teacher"] == next(
        o.winner for o in rows if o.prompt.id == pair["prompt_id"]
    )
    templated = maybe_apply_chat_template(pair, _tokenizer())
    assert set(templated) >= {"prompt", "chosen", "rejected"}
    assert templated["prompt"].endswith("<|im_start|>assistant\n")
    assert pair["chosen"][0]["content"] in templated["chosen"]
    paths = save_mixture(mix, tmp_path)
    assert load_from_disk(str(paths["preference"])).num_rows == 24
    assert len((tmp_path / "preference.jsonl").read_text().splitlines()) == 24
    assert len(load_from_disk(str(paths["dataset"]))) == len(mix.rows)
    dropped = [json.loads(x) for x in (tmp_path / "dropped.jsonl").read_text().splitlines()]
    assert len(dropped) == len(mix.dropped)
    assert json.loads((tmp_path / "mixture.json").read_text())["pairs"] == 24


def _tokenizer():
    sys.path.insert(0, str(EXAMPLES))
    from train_student import tiny_tokenizer

    return tiny_tokenizer()


def test_default_filters_keep_todays_rows():
    rows = grid(2)
    assert len(build_mixture(rows)) == len(rows)


def test_mixture_config_errors_name_the_key():
    base = stub_config("out", "http://127.0.0.1:1/v1")
    cases = {
        "mixture.max_share_per_teacher 0.4 × 2 teachers": {"max_share_per_teacher": 0.4},
        "names 'de', which is not in pool.languages": {"per_language": {"de": 3}},
        "names 'maths', which is not in pool.tasks (did you mean 'math'?)": {
            "per_task": {"maths": 3}
        },
        "max_chars (3) is smaller than min_chars (10)": {"min_chars": 10, "max_chars": 3},
        "repo id": {"push_to_hub": "not a repo"},
        "unknown config key 'mixture.dedup.treshold' (did you mean 'threshold'?)": {
            "dedup": {"treshold": 0.5}
        },
        "the cap for 'en' must be an integer >= 0": {"per_language": {"en": -1}},
    }
    for message, mixture in cases.items():
        with pytest.raises(ConfigError, match=re.escape(message)):
            parse_config({**base, "mixture": mixture})


@pytest.mark.filterwarnings("ignore:`gradient_checkpointing` is deprecated:FutureWarning")
def test_preference_dataset_goes_through_dpo_trainer_tokenisation(tmp_path):
    from trl import DPOConfig, DPOTrainer

    sys.path.insert(0, str(EXAMPLES))
    from train_student import load_student

    pairs = make_mixture(grid(1), MixtureConfig(), teacher_order=TEACHERS).preference()
    assert len(pairs) == 6
    model, tokenizer = load_student("tiny", 0)
    ref, _ = load_student("tiny", 0)
    args = DPOConfig(output_dir=str(tmp_path), report_to="none", use_cpu=True, max_steps=1)
    trainer = DPOTrainer(
        model=model, ref_model=ref, args=args, train_dataset=pairs, processing_class=tokenizer
    )
    prepared = trainer.train_dataset
    assert len(prepared) == 6
    assert {"prompt_ids", "chosen_ids", "rejected_ids"} <= set(prepared.column_names)
    assert all(len(row["chosen_ids"]) > 0 for row in prepared)


def test_a_run_without_pairs_still_writes_loadable_datasets(tmp_path):
    rows = [outcome(f"Question {i} with one answer", {"a": (answer(i), 0.9)}) for i in range(3)]
    paths = save_mixture(make_mixture(rows, MixtureConfig(), teacher_order=TEACHERS), tmp_path)
    pairs = load_from_disk(str(paths["preference"]))
    assert pairs.num_rows == 0 and "chosen" in pairs.column_names
    assert load_from_disk(str(paths["dataset"])).num_rows == 3
