"""PairwiseJudgeReward through litellm's real openai/ path against the stub server, and parse_verdict."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest
from stub_server import Reply, StubServer

from arbitrage.calls.cache import CallCache
from arbitrage.records import Prompt
from reward import get_reward
from reward.base import Score
from reward.pairwise import PAIRWISE_RUBRIC, Comparison, PairwiseJudgeReward
from reward.parsing import parse_verdict

PROMPT = Prompt(text="¿Cuál es la capital de Francia?", language="es", task="qa")
OTHER = Prompt(text="Name a prime number.", language="en", task="math")


@pytest.fixture(autouse=True)
def _judge_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STUB_JUDGE_KEY", "sk-test")


def _judge(server: StubServer, **kwargs: Any) -> PairwiseJudgeReward:
    kwargs.setdefault("api_key_env", "STUB_JUDGE_KEY")
    return PairwiseJudgeReward("openai/pj", api_base=server.url, **kwargs)


def _answers(messages: list[dict[str, Any]]) -> tuple[str, str]:
    content = messages[-1]["content"]
    a = content.split("[Answer A]\n", 1)[1].split("\n[End of answer A]", 1)[0]
    b = content.split("[Answer B]\n", 1)[1].split("\n[End of answer B]", 1)[0]
    return a, b


def prefers_good(messages: list[dict[str, Any]]) -> str:
    """A consistent judge: the answer holding GOOD wins wherever it is shown."""
    a, b = _answers(messages)
    if ("GOOD" in a) == ("GOOD" in b):
        return "They are equally matched.\nVerdict: tie"
    return "Verdict: A" if "GOOD" in a else "Answer B is better.\n\nVerdict: B"


def test_consistent_judge_ranks_the_marked_answer_first(stub_server: StubServer) -> None:
    stub_server.set_handler("pj", prefers_good)
    judge = _judge(stub_server)
    scores = judge.score_batch([(PROMPT, "París."), (PROMPT, "GOOD: París."), (PROMPT, "Roma.")])
    assert scores[1] == Score(
        1.0, {"pairwise_wins": 1.0, "pairwise_comparisons": 2.0, "position_flips": 0.0}
    )
    # each loses to GOOD (0.0) and ties with the other (0.5)
    assert [s.value for s in scores] == [0.25, 1.0, 0.25]
    assert len(stub_server.requests) == 2 * 3  # both orders of every unordered pair


def test_compare_asks_both_orders(stub_server: StubServer) -> None:
    stub_server.set_handler("pj", prefers_good)
    comparison = asyncio.run(_judge(stub_server).compare(PROMPT, "Roma.", "GOOD: París."))
    assert comparison == Comparison(ab="B", ba="A")
    assert comparison.a_score == 0.0 and comparison.consistent
    shown = [_answers(r["messages"]) for r in stub_server.requests]
    assert sorted(shown) == sorted([("Roma.", "GOOD: París."), ("GOOD: París.", "Roma.")])


def test_position_biased_judge_cancels_to_ties(stub_server: StubServer) -> None:
    stub_server.set_handler("pj", lambda messages: "Answer A is clearly better.\nVerdict: A")
    scores = _judge(stub_server).score_batch([(PROMPT, "x"), (PROMPT, "y"), (PROMPT, "z")])
    assert (
        scores
        == [Score(0.5, {"pairwise_wins": 0.5, "pairwise_comparisons": 2.0, "position_flips": 2.0})]
        * 3
    )


@pytest.mark.parametrize(
    ("ab", "ba", "a_score", "consistent"),
    [
        ("A", "B", 1.0, True),
        ("B", "A", 0.0, True),
        ("A", "A", 0.5, False),  # position bias: the first answer always wins
        ("B", "B", 0.5, False),
        ("tie", "tie", 0.5, True),
        ("A", "tie", 0.75, False),
        ("tie", "B", 0.75, False),
        ("tie", "A", 0.25, False),
        (None, "A", None, False),
        ("B", None, None, False),
    ],
)
def test_comparison_scores(ab: Any, ba: Any, a_score: float | None, consistent: bool) -> None:
    comparison = Comparison(ab, ba)
    assert comparison.a_score == a_score
    assert comparison.consistent is consistent


def test_failed_calls_are_unscored_not_a_crash(stub_server: StubServer) -> None:
    stub_server.set_handler("pj", lambda messages: Reply("overloaded", status=500))
    scores = _judge(stub_server).score_batch([(PROMPT, "París."), (PROMPT, "Paris.")])
    assert scores == [Score(None), Score(None)]
    assert len(stub_server.requests) >= 2


def test_one_unparsable_order_leaves_the_comparison_unscored(stub_server: StubServer) -> None:
    def half(messages: list[dict[str, Any]]) -> str:
        a, _ = _answers(messages)
        return "Verdict: A" if a == "x" else "Both have merits."

    stub_server.set_handler("pj", half)
    judge = _judge(stub_server)
    assert asyncio.run(judge.compare(PROMPT, "x", "y")) == Comparison("A", None)
    assert judge.score_batch([(PROMPT, "x"), (PROMPT, "y")]) == [Score(None), Score(None)]


def test_single_or_identical_answers_need_no_call(stub_server: StubServer) -> None:
    judge = _judge(stub_server)
    neutral = Score(0.5, {"pairwise_comparisons": 0.0})
    assert judge.score(PROMPT, "París.") == neutral
    assert judge.score_batch([(PROMPT, "París."), (PROMPT, "París.")]) == [neutral, neutral]
    assert stub_server.requests == []


def test_identical_answers_share_one_score(stub_server: StubServer) -> None:
    stub_server.set_handler("pj", prefers_good)
    scores = _judge(stub_server).score_batch([(PROMPT, "GOOD"), (PROMPT, "meh"), (PROMPT, "GOOD")])
    assert [s.value for s in scores] == [1.0, 0.0, 1.0]
    assert len(stub_server.requests) == 2


def test_prompts_are_ranked_separately_and_cached(stub_server: StubServer, tmp_path: Path) -> None:
    stub_server.set_handler("pj", prefers_good)
    pairs = [
        (PROMPT, "GOOD: París."),
        (OTHER, "7"),
        (PROMPT, "Roma."),
        (OTHER, "GOOD: 2"),
        (PROMPT, "Londres."),
    ]
    with CallCache(tmp_path / "cache.sqlite") as cache:
        first = _judge(stub_server, cache=cache).score_batch(pairs)
    assert [s.value for s in first] == [1.0, 0.0, 0.25, 1.0, 0.25]
    assert len(stub_server.requests) == 2 * (3 + 1)  # 3 pairs for PROMPT, 1 for OTHER
    stub_server.requests.clear()
    with CallCache(tmp_path / "cache.sqlite") as cache:
        again = _judge(stub_server, cache=cache).score_batch(pairs)
        assert cache.hits == 8
    assert again == first
    assert stub_server.requests == []


def test_request_carries_rubric_both_answers_and_params(stub_server: StubServer) -> None:
    stub_server.set_handler("pj", lambda messages: "Verdict: tie")
    judge = _judge(stub_server, temperature=0.0, max_tokens=64)
    asyncio.run(judge.compare(PROMPT, "París.", "Paris."))
    body = stub_server.requests[0]
    content = body["messages"][-1]["content"]
    assert content.startswith(PAIRWISE_RUBRIC.splitlines()[0])
    assert PROMPT.text in content and "(The user's language: es)" in content
    assert '"Verdict: A", "Verdict: B" or "Verdict: tie"' in content
    assert "response_format" not in body  # the stub's model is unknown to litellm: prose
    assert body["model"] == "pj" and body["max_tokens"] == 64


def test_structured_output_sends_a_schema_and_reads_json(stub_server: StubServer) -> None:
    stub_server.set_handler(
        "pj",
        lambda messages: json.dumps(
            {"reason": "B is wrong", "winner": "A" if "GOOD" in _answers(messages)[0] else "B"}
        ),
    )
    judge = _judge(stub_server, structured=True)
    comparison = asyncio.run(judge.compare(PROMPT, "GOOD", "bad"))
    assert comparison == Comparison("A", "B") and comparison.a_score == 1.0
    body = stub_server.requests[0]
    schema = body["response_format"]["json_schema"]
    assert body["response_format"]["type"] == "json_schema" and schema["strict"] is True
    assert schema["schema"]["properties"]["winner"]["enum"] == ["A", "B", "tie"]
    assert "JSON object" in body["messages"][-1]["content"]


def test_registered_as_pairwise() -> None:
    judge = get_reward("pairwise", model="openai/x", max_concurrency=2)
    assert isinstance(judge, PairwiseJudgeReward)
    assert judge.describe() == "pairwise(openai/x, both orders)"
    assert judge.cache is None and judge.budget is None  # the run sets both


VERDICTS: list[tuple[str | None, str | None]] = [
    ("[[A]]", "A"),
    ("[[B]]", "B"),
    ("[[C]]", "tie"),
    ("Verdict: B", "B"),
    ("Final verdict: [[A]]", "A"),
    ("**B**", "B"),
    ('{"winner": "A"}', "A"),
    ('{"reason": "Answer A is better written", "winner": "B"}', "B"),  # JSON field decides
    ('{"winner": "tie"}', "tie"),
    ('```json\n{"winner": "Response B"}\n```', "B"),
    ("Answer A is better.", "A"),
    ("Response B", "B"),
    ("B", "B"),
    ("Both are fine; it's a tie.", "tie"),
    ("Verdict: tie", "tie"),
    ("The better answer is Response A.", "A"),
    ("I prefer B.", "B"),
    ("Respuesta A", "A"),
    ("La respuesta B es mejor.", "B"),
    ("Veredicto: empate", "tie"),
    ("Réponse B", "B"),
    ("La réponse A est meilleure.", "A"),
    ("Antwort B ist besser.", "B"),
    ("回答A", "A"),
    ("我认为回答B更好。", "B"),
    ("回答Aの方が良い。", "A"),
    ("Ответ А лучше.", "A"),  # Cyrillic А
    ("Ｖｅｒｄｉｃｔ：Ｂ", "B"),  # full-width
    ("Helpfulness: A is terse.\nFinal verdict: B\nVerdict: A", "B"),  # "final" wins
    ("Neither answer is perfect, but B is better.", "B"),
    ("", None),
    ("   \n", None),
    (None, None),
    ("Both answers have merits.", None),
    ("Answer A is accurate while Answer B rambles.", None),  # mentions, no verdict
    ("### Response A\nfine\n### Response B\nfine", None),
    ("Verdict: A\nVerdict: B", None),  # conflicting final claims
    ("[[A]] ... on reflection [[B]]", None),
    ("Answer A is better in style, but B wins on correctness.", None),
    ("Neither A nor B is better.", None),
    ("Answer A is not better.", None),
    ('{"winner": "both"}', None),
    ('{"winner": null}', None),
    ('{"winner": "A", "reason": "x"} {"winner": "B"}', None),
    ("Also, everything is fine.", None),
    ("Verdict: N/A", None),
]


@pytest.mark.parametrize(("text", "expected"), VERDICTS)
def test_parse_verdict(text: str | None, expected: str | None) -> None:
    assert parse_verdict(text) == expected


@pytest.mark.parametrize(
    ("reply", "expected"),
    [
        ("Both answers explain how to tie a tie, but Answer A is clearer.", None),
        ("La réponse A traite mieux de l'égalité salariale.", None),
        ("Answer B is better than Answer A. The tie-breaker is correctness.", "B"),
        ("It's a tie: both are fine.", "tie"),
        ("Both responses are equally good.", "tie"),
        ("Es un empate.", "tie"),
    ],
)
def test_a_tie_word_in_prose_is_not_a_tie(reply: str, expected: str | None) -> None:
    assert parse_verdict(reply) == expected
