"""IFEval-style instruction constraints: each a small check of an answer's text.

A constraint is a dict: its ``kind`` and the kind's params, as it appears in a
prompt row's ``constraints`` list::

    {"kind": "word_count", "max": 120}        {"kind": "bullets", "count": 3}
    {"kind": "include_keywords", "keywords": ["budget"]}     {"kind": "lowercase"}

``CHECKS`` maps each kind to ``(check, params, sentence)``: the check takes the text,
the prompt's language and the params and returns ``None`` when the text passes or the
reason it fails; ``sentence`` is the instruction a prompt gets for it.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

_CJK = re.compile(r"[\u3040-\u30ff\u3400-\u9fff\uac00-\ud7af]")
_WORD = re.compile(r"[^\W_]+(?:['’-][^\W_]+)*")
_SENTENCE_END = re.compile(r"[.!?。！？।؟]+(?=\s|$)|[。！？]+")
_BULLET = re.compile(r"^\s*(?:[-*•]|\d+[.)])\s+\S", re.MULTILINE)
_FENCE = re.compile(r"^```(?:json)?\s*\n(.*?)\n```\s*$", re.DOTALL)

Params = Mapping[str, Any]


def count_words(text: str) -> int:
    """Words in ``text``; each Chinese, Japanese or Korean character counts as one."""
    return len(_WORD.findall(_CJK.sub(" ", text))) + len(_CJK.findall(text))


def count_sentences(text: str) -> int:
    """Sentences in ``text``: runs of text ended by ``.`` ``!`` ``?`` (and ``。`` ``।`` ...)."""
    parts = _SENTENCE_END.split(text.strip())
    return sum(1 for p in parts if _WORD.search(p))


def _bounds(n: int, params: Params, noun: str) -> str | None:
    low, high = params.get("min"), params.get("max")
    if low is not None and n < low:
        return f"{n} {noun}, fewer than {low}"
    if high is not None and n > high:
        return f"{n} {noun}, more than {high}"
    return None


def word_count(text: str, language: str, params: Params) -> str | None:
    return _bounds(count_words(text), params, "words")


def sentence_count(text: str, language: str, params: Params) -> str | None:
    return _bounds(count_sentences(text), params, "sentences")


def bullets(text: str, language: str, params: Params) -> str | None:
    n = len(_BULLET.findall(text))
    return None if n == params["count"] else f"{n} bullet points, not {params['count']}"


def json_format(text: str, language: str, params: Params) -> str | None:
    body = text.strip()
    fenced = _FENCE.match(body)
    try:
        json.loads(fenced.group(1) if fenced else body)
    except ValueError as exc:
        return f"not JSON ({exc.__class__.__name__})"
    return None


def _has(text: str, keyword: str) -> bool:
    if _CJK.search(keyword) or not keyword[:1].isalnum():
        return keyword.casefold() in text.casefold()
    return re.search(rf"(?<!\w){re.escape(keyword)}(?!\w)", text, re.IGNORECASE) is not None


def include_keywords(text: str, language: str, params: Params) -> str | None:
    missing = [k for k in params["keywords"] if not _has(text, k)]
    return f"missing {', '.join(map(repr, missing))}" if missing else None


def exclude_keywords(text: str, language: str, params: Params) -> str | None:
    present = [k for k in params["keywords"] if _has(text, k)]
    return f"contains {', '.join(map(repr, present))}" if present else None


def lowercase(text: str, language: str, params: Params) -> str | None:
    return None if text == text.lower() else "has capital letters"


def ends_with(text: str, language: str, params: Params) -> str | None:
    phrase = params["phrase"].strip()
    return None if text.strip().endswith(phrase) else f"does not end with {phrase!r}"


def answer_language(text: str, language: str, params: Params) -> str | None:
    from reward.fidelity import language_fidelity

    expected = params.get("language") or language
    fidelity = language_fidelity(text, expected)
    threshold = params.get("threshold", 0.5)
    return None if fidelity >= threshold else f"not in {expected} (fidelity {fidelity:.2f})"


class Kind(NamedTuple):
    """One kind of constraint: its check, its params (name → type; ``?`` optional) and
    the instruction sentence (``str.format`` over the params)."""

    check: Callable[[str, str, Params], str | None]
    params: dict[str, str]
    sentence: str


CHECKS: dict[str, Kind] = {
    "word_count": Kind(word_count, {"min": "int?", "max": "int?"}, "{words}"),
    "sentence_count": Kind(sentence_count, {"min": "int?", "max": "int?"}, "{sentences}"),
    "bullets": Kind(bullets, {"count": "int"}, "Use exactly {count} bullet points."),
    "json": Kind(json_format, {}, "Reply with valid JSON only."),
    "include_keywords": Kind(
        include_keywords, {"keywords": "list"}, "Include the words {keywords}."
    ),
    "exclude_keywords": Kind(
        exclude_keywords, {"keywords": "list"}, "Do not use the words {keywords}."
    ),
    "lowercase": Kind(lowercase, {}, "Write everything in lowercase letters."),
    "ends_with": Kind(ends_with, {"phrase": "str"}, 'End your answer with "{phrase}".'),
    "language": Kind(
        answer_language, {"language": "str?", "threshold": "float?"}, "Answer in {language}."
    ),
}


def validate(constraint: Any) -> str | None:
    """Why ``constraint`` is not a valid constraint, or ``None`` when it is."""
    from arbitrage.registry import closest_hint

    if not isinstance(constraint, dict) or not isinstance(constraint.get("kind"), str):
        return "a constraint is an object with a 'kind'"
    kind = constraint["kind"]
    if kind not in CHECKS:
        return f"unknown constraint kind {kind!r}{closest_hint(kind, CHECKS)}; kinds: " + ", ".join(
            CHECKS
        )
    spec = CHECKS[kind].params
    for key, value in constraint.items():
        if key == "kind":
            continue
        if key not in spec:
            return f"constraint {kind!r} takes no {key!r}; params: {', '.join(spec) or 'none'}"
        want = spec[key].rstrip("?")
        ok = {
            "int": isinstance(value, int) and not isinstance(value, bool) and value >= 0,
            "float": isinstance(value, int | float) and not isinstance(value, bool),
            "str": isinstance(value, str) and bool(value.strip()),
            "list": isinstance(value, list) and bool(value)
            and all(isinstance(v, str) and v.strip() for v in value),
        }[want]  # fmt: skip
        if not ok:
            return f"constraint {kind!r}: {key!r} must be a {_WANT[want]}"
    missing = [k for k, t in spec.items() if not t.endswith("?") and k not in constraint]
    if missing:
        return f"constraint {kind!r} needs {', '.join(map(repr, missing))}"
    if kind in ("word_count", "sentence_count") and not ({"min", "max"} & set(constraint)):
        return f"constraint {kind!r} needs 'min' or 'max'"
    return None


_WANT = {
    "int": "whole number >= 0",
    "float": "number",
    "str": "non-empty string",
    "list": "non-empty list of strings",
}


def check(constraint: Params, text: str, language: str) -> str | None:
    """``None`` if ``text`` meets ``constraint``, else the reason it does not."""
    params = {k: v for k, v in constraint.items() if k != "kind"}
    return CHECKS[constraint["kind"]].check(text, language, params)


def sentence(constraint: Params, language_name: str = "") -> str:
    """The instruction sentence that asks for ``constraint``."""
    kind = constraint["kind"]
    values: dict[str, Any] = dict(constraint)
    noun = {"word_count": "words", "sentence_count": "sentences"}.get(kind)
    if noun is not None:
        low, high = constraint.get("min"), constraint.get("max")
        if low is not None and high is not None:
            values[noun] = f"Use between {low} and {high} {noun}."
        elif high is not None:
            values[noun] = f"Use at most {high} {noun}."
        else:
            values[noun] = f"Use at least {low} {noun}."
    if "keywords" in constraint:
        values["keywords"] = ", ".join(f'"{k}"' for k in constraint["keywords"])
    if kind == "language":
        values["language"] = language_name or constraint.get("language", "the prompt's language")
    return CHECKS[kind].sentence.format(**values)
