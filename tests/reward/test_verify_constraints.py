"""The ``constraints`` verifier: each IFEval-style check on its own, their validation,
the reward, and constraints attached to generated prompts."""

from __future__ import annotations

import pytest

from arbitrage.records import Prompt
from reward.verifiers.basis import basis, verdict
from reward.verifiers.checks import (
    check,
    count_sentences,
    count_words,
    sentence,
    validate,
)
from reward.verifiers.constraints import ConstraintVerifier, attach, failures


def _ok(constraint: dict, text: str, language: str = "en") -> bool:
    return check(constraint, text, language) is None


def test_word_count_counts_words_and_cjk_characters() -> None:
    assert count_words("It's a well-known fact, isn't it?") == 6
    assert count_words("我爱你") == 3
    assert _ok({"kind": "word_count", "max": 5}, "one two three")
    assert not _ok({"kind": "word_count", "min": 5}, "one two three")
    assert check({"kind": "word_count", "max": 2}, "one two three", "en") == (
        "3 words, more than 2"
    )


def test_sentence_count() -> None:
    assert count_sentences("One. Two! Three? Four") == 4
    assert count_sentences("这是一句。这是两句。") == 2
    assert _ok({"kind": "sentence_count", "max": 2}, "Hi there. Bye.")
    assert not _ok({"kind": "sentence_count", "min": 3}, "Hi there. Bye.")


def test_bullets() -> None:
    text = "Plan:\n- first\n* second\n1. third\n"
    assert _ok({"kind": "bullets", "count": 3}, text)
    assert not _ok({"kind": "bullets", "count": 2}, text)
    assert not _ok({"kind": "bullets", "count": 1}, "-not a bullet")


def test_json() -> None:
    assert _ok({"kind": "json"}, '{"a": 1}')
    assert _ok({"kind": "json"}, '```json\n{"a": [1, 2]}\n```')
    assert not _ok({"kind": "json"}, 'Sure! {"a": 1}')


def test_keywords_are_whole_words_any_case() -> None:
    assert _ok({"kind": "include_keywords", "keywords": ["Budget"]}, "the budget is small")
    assert not _ok({"kind": "include_keywords", "keywords": ["cat"]}, "a category")
    assert _ok({"kind": "exclude_keywords", "keywords": ["cat"]}, "a category")
    assert not _ok({"kind": "exclude_keywords", "keywords": ["猫"]}, "我的猫")


def test_lowercase_and_ends_with() -> None:
    assert _ok({"kind": "lowercase"}, "all small, 123.")
    assert not _ok({"kind": "lowercase"}, "Not all small")
    assert _ok({"kind": "ends_with", "phrase": "Any questions?"}, "Done. Any questions?  \n")
    assert not _ok({"kind": "ends_with", "phrase": "Any questions?"}, "Any questions? Done.")


def test_answer_language() -> None:
    french = "La tour Eiffel est le monument le plus visité de Paris, en France."
    assert _ok({"kind": "language"}, french, "fr")
    assert not _ok({"kind": "language"}, french, "de")
    assert _ok({"kind": "language", "language": "fr"}, french, "en")


@pytest.mark.parametrize(
    ("constraint", "error"),
    [
        ("lowercase", "an object with a 'kind'"),
        ({"kind": "lowercas"}, "did you mean 'lowercase'"),
        ({"kind": "bullets"}, "needs 'count'"),
        ({"kind": "bullets", "count": -1}, "whole number"),
        ({"kind": "word_count"}, "needs 'min' or 'max'"),
        ({"kind": "include_keywords", "keywords": []}, "non-empty list"),
        ({"kind": "ends_with", "phrase": "x", "case": True}, "takes no 'case'"),
    ],
)
def test_bad_constraints_are_named(constraint: object, error: str) -> None:
    why = validate(constraint)
    assert why is not None and error in why


def test_the_reward_is_the_share_met() -> None:
    prompt = Prompt(
        text="List three tips.",
        language="en",
        task="advice",
        constraints=[{"kind": "bullets", "count": 3}, {"kind": "lowercase"}],
    )
    verifier = ConstraintVerifier()
    good, half = verifier.score_batch([(prompt, "- a\n- b\n- c"), (prompt, "- A\n- B\n- C")])
    assert good.value == 1.0 and verdict(good.details) is True
    assert half.value == 0.5 and verdict(half.details) is False
    assert half.details["constraint.lowercase"] == 0.0 and basis(half.details) == "constraints"
    assert failures(prompt, "- A\n- B\n- C") == ["lowercase: has capital letters"]
    bare = Prompt(text="Hi", language="en", task="chat")
    assert verifier.score(bare, "hello").value is None


def test_attach_adds_checkable_constraints_and_asks_for_them() -> None:
    prompts = [Prompt(text=f"Explain topic {i}.", language="fr", task="open_qa") for i in range(20)]
    attached = attach(prompts, 2, seed=3)
    assert attach(prompts, 2, seed=3) == attached  # seeded
    for before, after in zip(prompts, attached, strict=True):
        assert after.id == before.id and len(after.constraints) == 2
        kinds = [c["kind"] for c in after.constraints]
        assert len(set(kinds)) == 2 and not ({"json", "bullets"} <= set(kinds))
        assert all(validate(c) is None for c in after.constraints)
        for c in after.constraints:
            assert sentence(c) in after.text
    assert attach(prompts, 0) == prompts
