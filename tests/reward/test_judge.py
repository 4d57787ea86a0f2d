"""JudgeReward through litellm's real openai/ path against the stub server, and parse_score."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from pathlib import Path
from typing import Any

import pytest
from stub_server import Reply, StubServer

from arbitrage.calls.cache import CallCache
from arbitrage.errors import ConfigError
from arbitrage.records import Prompt
from reward.base import Score
from reward.judge import DEFAULT_RUBRIC, JudgeReward
from reward.parsing import parse_score

PROMPT = Prompt(text="¿Cuál es la capital de Francia?", language="es", task="qa")


@pytest.fixture(autouse=True)
def _judge_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STUB_JUDGE_KEY", "sk-test")


def _judge(server: StubServer, **kwargs: Any) -> JudgeReward:
    kwargs.setdefault("api_key_env", "STUB_JUDGE_KEY")
    return JudgeReward("openai/judge", api_base=server.url, **kwargs)


def _by_answer(scores: dict[str, str]) -> Any:
    """A judge that reads the answer out of its prompt and replies with a canned verdict."""

    def handler(messages: list[dict[str, Any]]) -> str:
        content = messages[-1]["content"]
        answer = content.split("[Answer]\n", 1)[1].split("\n[End of answer]", 1)[0]
        return scores[answer]

    return handler


def test_scores_are_parsed_and_normalised(stub_server: StubServer) -> None:
    stub_server.set_handler(
        "judge",
        _by_answer(
            {
                "París.": "Correct and in Spanish.\nScore: 10",
                "Paris.": "Wrong language. 4/10",
                "Londres.": "Wrong. **1**",
            }
        ),
    )
    scores = _judge(stub_server).score_batch(
        [(PROMPT, "París."), (PROMPT, "Paris."), (PROMPT, "Londres.")]
    )
    assert scores == [
        Score(1.0, {"judge_raw": 10.0}),
        Score((4 - 1) / (10 - 1), {"judge_raw": 4.0}),
        Score(0.0, {"judge_raw": 1.0}),
    ]


def test_request_carries_rubric_instruction_answer_and_params(stub_server: StubServer) -> None:
    stub_server.set_handler("judge", lambda messages: "Score: 5")
    judge = _judge(stub_server, scale=(0, 5), temperature=0.0, max_tokens=64)
    assert judge.score(PROMPT, "París.") == Score(1.0, {"judge_raw": 5.0})
    (body,) = stub_server.requests
    content = body["messages"][-1]["content"]
    assert DEFAULT_RUBRIC.splitlines()[0] in content
    assert PROMPT.text in content
    assert "París." in content
    assert "(The user's language: es)" in content
    assert '"Score: N"' in content and "from 0 (worst) to 5 (best)" in content
    assert body["model"] == "judge"
    assert body["temperature"] == 0.0
    assert body["max_tokens"] == 64


def test_custom_rubric_replaces_default(stub_server: StubServer) -> None:
    stub_server.set_handler("judge", lambda messages: "Score: 3")
    _judge(stub_server, rubric="Only brevity matters.").score(PROMPT, "París.")
    content = stub_server.requests[0]["messages"][-1]["content"]
    assert content.startswith("Only brevity matters.")
    assert DEFAULT_RUBRIC.splitlines()[0] not in content


def test_unparsable_reply_is_unscored(stub_server: StubServer) -> None:
    stub_server.set_handler("judge", lambda messages: "I cannot judge this.")
    assert _judge(stub_server).score(PROMPT, "París.") == Score(None)


def test_failed_call_is_unscored_and_key_never_leaks(
    stub_server: StubServer, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    secret = "sk-live-SECRET-0123456789abcdef"
    monkeypatch.setenv("JUDGE_API_KEY", secret)
    # The server echoes the key back in its error, as some providers do.
    stub_server.set_handler(
        "judge", lambda messages: Reply(f"bad request with key {secret}", status=500)
    )
    judge = _judge(stub_server, api_key_env="JUDGE_API_KEY")
    with caplog.at_level(logging.DEBUG):
        scores = judge.score_batch([(PROMPT, "París."), (PROMPT, "Paris.")])
    assert scores == [Score(None), Score(None)]
    assert len(stub_server.requests) >= 2
    warnings = [
        r for r in caplog.records if r.name == "reward.judge" and r.levelno == logging.WARNING
    ]
    assert warnings and "InternalServerError" in warnings[0].getMessage()
    assert secret not in caplog.text
    assert all(secret not in repr(s) for s in scores)


def test_key_sent_to_server_but_not_in_details(
    stub_server: StubServer, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    secret = "sk-live-SECRET-abcdef"
    monkeypatch.setenv("JUDGE_API_KEY", secret)
    stub_server.set_handler("judge", lambda messages: "Score: 8")
    with caplog.at_level(logging.DEBUG):
        score = _judge(stub_server, api_key_env="JUDGE_API_KEY").score(PROMPT, "París.")
    assert score == Score((8 - 1) / (10 - 1), {"judge_raw": 8.0})
    assert secret not in repr(score) and secret not in caplog.text


def test_missing_key_env_is_config_error(stub_server: StubServer) -> None:
    judge = _judge(stub_server, api_key_env="NO_SUCH_JUDGE_KEY_VAR")
    with pytest.raises(ConfigError, match="NO_SUCH_JUDGE_KEY_VAR"):
        judge.score(PROMPT, "París.")


def test_concurrency_is_bounded(stub_server: StubServer) -> None:
    in_flight = peak = 0

    def handler(messages: list[dict[str, Any]]) -> Reply:
        nonlocal in_flight, peak
        in_flight += 1
        peak = max(peak, in_flight)
        time.sleep(0.1)
        in_flight -= 1
        return Reply("Score: 6")

    stub_server.set_handler("judge", handler)
    judge = _judge(stub_server, max_concurrency=3)
    scores = judge.score_batch([(PROMPT, f"answer {i}") for i in range(12)])
    assert [s.details for s in scores] == [{"judge_raw": 6.0}] * 12
    assert 1 < peak <= 3


def test_sync_wrappers_reuse_the_judge_across_event_loops(stub_server: StubServer) -> None:
    stub_server.set_handler("judge", lambda messages: "Score: 2")
    judge = _judge(stub_server, max_concurrency=1)
    assert judge.score(PROMPT, "a").value == pytest.approx(1 / 9)
    assert asyncio.run(judge.ascore(PROMPT, "b")).value == pytest.approx(1 / 9)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [({"scale": (5, 5)}, "low < high"), ({"max_concurrency": 0}, "max_concurrency")],
)
def test_bad_config_is_rejected(kwargs: dict[str, Any], match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        JudgeReward("openai/judge", **kwargs)


PARSE_CASES: list[tuple[str | None, float | None]] = [
    ("Score: 7", 7.0),
    ("7/10", 7.0),
    ("**8**", 8.0),
    ("I'd give it 6 out of 10.", 6.0),
    ('{"score": 7}', 7.0),
    ('{"reasoning": "covers 3 of the 4 points", "score": 9}', 9.0),
    ("Score：８", 8.0),  # full-width digit and colon
    ("８/１０", 8.0),
    ("The answer is correct but wordy (2 extra paragraphs).\n\nScore: 6", 6.0),
    ("Puntuación: 8", 8.0),
    ("评分：9", 9.0),
    ("Оценка: 5", 5.0),
    ("Bewertung: 3", 3.0),
    ("[[4]]", 4.0),
    ("Score:\n\n**7**", 7.0),
    ("Score (1-10): 6", 6.0),
    ("On a scale of 1 to 10, I'd rate it 7.", 7.0),
    ("Helpfulness score: 8\nCorrectness score: 6\nOverall score: 7", 7.0),
    ("Score: 7.5", 7.5),
    ("Score: 7\nScore: 7", 7.0),
    ("Good, concise answer.\n\n8", 8.0),
    ("", None),
    ("   \n", None),
    (None, None),
    ("The answer is fine.", None),
    ("Score: 11", None),  # out of range: not clamped
    ("Score: 0", None),
    ("Score: -3", None),
    ("Score: 4/5", None),  # a different scale
    ("Score: N/A. The answer lists 3 points.", None),
    ("Score: seven", None),
    ("Score: 3\nOn reflection, Score: 8", None),  # conflicting labelled scores
    ("I think 7 or 8.", None),
    ("The answer gives 3 examples.", None),
    ("Uses Python 3.11 correctly.", None),
    ("Published 2024/10/01.", None),
]


@pytest.mark.parametrize(("text", "expected"), PARSE_CASES)
def test_parse_score(text: str | None, expected: float | None) -> None:
    assert parse_score(text, (1, 10)) == expected


def test_structured_request_carries_a_schema_and_json_is_read(stub_server: StubServer) -> None:
    stub_server.set_handler(
        "judge", lambda messages: '{"reason": "Correct, in Spanish.", "score": 8}'
    )
    judge = _judge(stub_server, structured=True)
    assert judge.score(PROMPT, "París.") == Score((8 - 1) / (10 - 1), {"judge_raw": 8.0})
    (body,) = stub_server.requests
    response_format = body["response_format"]
    assert response_format["type"] == "json_schema"
    assert response_format["json_schema"]["strict"] is True
    schema = response_format["json_schema"]["schema"]
    assert schema["properties"]["score"] == {"type": "integer", "minimum": 1, "maximum": 10}
    assert schema["required"] == ["reason", "score"]
    content = body["messages"][-1]["content"]
    assert "JSON object" in content and '"Score: N"' not in content


def test_structured_judge_that_answers_in_prose_still_counts(stub_server: StubServer) -> None:
    stub_server.set_handler("judge", lambda messages: "Correct and concise.\nScore: 6")
    assert _judge(stub_server, structured=True).score(PROMPT, "París.").details == {
        "judge_raw": 6.0
    }


@pytest.mark.parametrize(
    "reply",
    [
        '{"reason": "Excellent.", "score": 11}',
        '{"reason": "Bad.", "score": 0}',
        '{"reason": "Score: 7 at most", "score": "seven"}',
        '{"reason": "Mostly right", "score": 1',  # cut off: it may have been 10
    ],
)
def test_structured_reply_without_a_valid_score_is_unscored(
    stub_server: StubServer, reply: str
) -> None:
    stub_server.set_handler("judge", lambda messages: reply)
    assert _judge(stub_server, structured=True).score(PROMPT, "París.") == Score(None)


def test_structured_output_is_asked_of_litellm_by_default(stub_server: StubServer) -> None:
    assert JudgeReward("openai/gpt-4o-mini").uses_structured_output()
    assert not JudgeReward("openai/judge", api_base=stub_server.url).uses_structured_output()
    assert not JudgeReward("local/smollm2-135m-instruct").uses_structured_output()
    assert not JudgeReward("no-such-provider/model").uses_structured_output()
    stub_server.set_handler("judge", lambda messages: "Score: 5")
    _judge(stub_server).score(PROMPT, "París.")
    assert "response_format" not in stub_server.requests[0]


def test_cache_keeps_prose_and_structured_replies_apart(
    stub_server: StubServer, tmp_path: Path
) -> None:
    stub_server.set_handler(
        "judge",
        lambda messages: (
            json.dumps({"reason": "ok", "score": 9})
            if "JSON" in messages[-1]["content"]
            else "Score: 4"
        ),
    )
    with CallCache(tmp_path / "cache.sqlite") as cache:
        prose = _judge(stub_server, cache=cache, structured=False)
        structured = _judge(stub_server, cache=cache, structured=True)
        assert prose.score(PROMPT, "París.").details == {"judge_raw": 4.0}
        assert structured.score(PROMPT, "París.").details == {"judge_raw": 9.0}
        assert len(stub_server.requests) == 2
        assert structured.score(PROMPT, "París.").details == {"judge_raw": 9.0}
        assert prose.score(PROMPT, "París.").details == {"judge_raw": 4.0}
        assert len(stub_server.requests) == 2
        assert len(cache) == 2


# Replies real judges give when they do not quite follow instructions: each one's parse
# on a 1-10 scale. A number is expected only where the judge plainly gave one.
ODD_REPLIES: list[tuple[str, float | None]] = [
    ("", None),
    (" \t\n  ", None),
    ("N/A", None),
    ("Score: N/A", None),
    ("I would rate this answer highly.", None),
    ("After careful thought, I give it a score of 8 because it is correct.", 8.0),
    ("Score: 8\n\n(Note: a 10 would need sources.)", 8.0),
    ("SCORE:7", 7.0),
    ("Score: 12", None),  # out of range: never clamped
    ("Score: -2", None),
    ("-5/10", None),
    ("Score: 5 out of 5", None),  # another scale
    ("Score: 3. Actually, on reflection, Score: 9.", None),
    ("Overall score: 7\nFinal score: 8", None),
    ("| Criterion | Score |\n|---|---|\n| Correctness | 8 |\n| Overall | 7 |", None),
    ("**Score:** **7**", 7.0),
    ("## Evaluation\n- Correctness: good\n- **Final score: 6/10**", 6.0),
    ("Puntuación final: 6", 6.0),  # Spanish
    ("Note finale : 7/10", 7.0),  # French
    ("Bewertung: 4", 4.0),  # German
    ("评分：8分", 8.0),  # Chinese, with the counter for points
    ("評価：８点", 8.0),  # Japanese, full-width
    ("Оценка: 7 из 10", 7.0),  # Russian
    ("Score: ٨", 8.0),  # Arabic-Indic digit
    ("٨/١٠", 8.0),
    ("Score: １０", 10.0),  # full-width digits
    ('{"score": 7.0}', 7.0),
    ('{"score": "7"}', 7.0),  # a string holding the number
    ('{"reason": "Score: 3 would be harsh", "score": 8}', 8.0),  # the field decides
    ('```json\n{"score": 6, "reason": "fine"}\n```', 6.0),
    ('{"score": 11}', None),
    ('{"score": true}', None),
    ('{"score": [7, 8]}', None),
    ('{"score": null, "reason": "cannot judge"}', None),
    ('{"score": 6} {"score": 9}', None),
    ('{"score": 8, "reason": "Clear and', 8.0),  # cut off after the score was written
    ('{"reason": "The answer is correct and conc', None),  # cut off before it
    ('{"reason": "ok", "score": 1', None),  # cut off mid-number: 1 or 10?
]


@pytest.mark.parametrize(("text", "expected"), ODD_REPLIES)
def test_odd_replies_are_read_or_refused(text: str, expected: float | None) -> None:
    assert parse_score(text, (1, 10)) == expected


def test_parse_score_other_scales() -> None:
    assert parse_score("Score: 4/5", (1, 5)) == 4.0
    assert parse_score("Score: 7", (1, 5)) is None
    assert parse_score("Score: 0", (0, 100)) == 0.0
    assert parse_score("85/100", (0, 100)) == 85.0
    assert parse_score("8/10", (0, 100)) is None


@pytest.mark.parametrize(
    ("reply", "expected"),
    [
        ("Note: 3 steps are missing from the proof.", None),  # a note is not a score
        ("Rating: 2 of the 5 claims are wrong.", None),  # a count is not a score
        ("Note: 2 minor typos remain.\nScore: 8", 8.0),
        ("Score: 8\nNote that a score of 10 requires sources.", 8.0),  # the labelled one
        ("I give it a score of 8.", 8.0),
        ("Score: 8 of 10", 8.0),
        ("Note : 8/10", 8.0),
    ],
)
def test_prose_near_a_score_is_not_a_score(reply: str, expected: float | None) -> None:
    assert parse_score(reply, (1, 10)) == expected
