"""Reading judges' replies: a score (``parse_score``) or a pairwise verdict (``parse_verdict``).

Judges do not always follow the format they are asked for. Both parsers accept
JSON, labels in several languages, fractions, emphasis and bare answers, and both
return ``None`` rather than guess: a reply with no answer, an answer off the
scale, or several conflicting answers is no answer.
"""

from __future__ import annotations

import json
import re
import unicodedata
from typing import Any, Literal

Verdict = Literal["A", "B", "tie"]


# --- scores -----------------------------------------------------------------------------


def json_values(text: str, key: str) -> list[Any] | None:
    """The values of ``key`` (any case) in the JSON objects written in ``text``; ``None``
    if no object holds it. Objects may stand in prose or a code fence."""
    found: list[Any] = []
    decoder = json.JSONDecoder()
    pos = text.find("{")
    while pos != -1:
        try:
            obj, end = decoder.raw_decode(text, pos)
        except ValueError:
            pos = text.find("{", pos + 1)
            continue
        if isinstance(obj, dict):
            found += [v for k, v in obj.items() if isinstance(k, str) and k.lower() == key]
        pos = text.find("{", end)
    return found or None


def cut_short(text: str) -> bool:
    """A JSON reply that breaks off right after a digit: ``{"score": 1`` may have been 10."""
    stripped = text.strip().removeprefix("```json").removeprefix("```").lstrip()
    if not stripped.startswith("{") or not re.search(r"\d$", stripped):
        return False
    try:
        json.JSONDecoder().raw_decode(stripped)
    except ValueError:
        return True
    return False


# A number may be followed by a CJK counter for points: "8分", "８点", "8점".
_NUM = r"(?<![\w.])-?\d+(?:[.,]\d+)?(?:(?![\w])|(?=[分点점]))"
_LATIN_LABELS = (
    # Not "note"/"nota": "Note: 3 steps are missing" is no score.
    r"score|rating|grade|puntuaci[oó]n|puntaje|calificaci[oó]n|punteggio|voto"
    r"|bewertung|punktzahl|wertung|puan|skor|điểm|cijfer|оценка|балл"
)
_CJK_LABELS = r"評分|评分|分数|分數|得分|スコア|点数|評価|점수"
_LABEL = rf"(?:(?<![^\W\d_])(?:{_LATIN_LABELS})(?![^\W\d_])|{_CJK_LABELS})"
_FILLER = r"[\s*_\"'`#]*"
_OF = r"\s*(?:/|out of|of|sur|de|su|von|из)\s*"
# "Rating: 2 of the 5 claims ...": a count, not a score.
_COUNT = r"(?![ \t]+(?:of|de|von|из)\b)"
_LABELLED = re.compile(
    rf"(?P<final>(?:final|overall)\s+)?{_LABEL}(?P<after>\s+(?:final|finale|global|globale))?"
    rf"(?:\s*\([^)\n]*\))?{_FILLER}"
    rf"(?:(?P<sep>[:=])|\bis\b|\bof\b|would be)?{_FILLER}(?P<num>{_NUM})(?:{_OF}(?P<den>\d+))?"
    rf"{_COUNT}"
    # "I'd rate it 7", "I give this answer an 8"
    rf"|\b(?:rate|give)\s+(?:it|this(?:\s+answer|\s+response)?)\s+(?:an?\s+)?"
    rf"(?P<vnum>{_NUM})(?:{_OF}(?P<vden>\d+))?",
    re.IGNORECASE,
)
# A label with a colon but no number ("Score: N/A"): the judge declined to score.
_DECLINED = re.compile(rf"(?<![^\W\d_])(?:score|rating|grade|{_CJK_LABELS}){_FILLER}[:=]", re.I)
_FRACTION = re.compile(rf"(?P<num>{_NUM}){_OF}(?P<den>\d+)(?![\d.])", re.IGNORECASE)
_EMPHASIS = re.compile(rf"(?:\*\*|__|\[\[)\s*(?P<num>{_NUM})\s*(?:\*\*|__|\]\])")
# A number alone on its line ("8", "**8**."); a number inside prose may count anything.
_ALONE = re.compile(rf"^[ \t*_#>]*(?P<num>{_NUM})[ \t*_.!]*$", re.MULTILINE)


def parse_score(text: str | None, scale: tuple[int, int]) -> float | None:
    """The score in a judge's reply, on the judge's scale; ``None`` if there is no single one.

    A JSON object with a ``"score"`` decides first (a number, or a string holding one;
    ``{"reason": "...", "score": 7}`` is what structured output asks for). A reply
    that is JSON cut off right after a digit gives ``None``. Otherwise looks, in
    order, for a labelled score (``Score: 7``, ``Puntuación: 8``, ``评分：8``,
    ``I'd rate it 7``; "final"/"overall" ones win a disagreement), a fraction of the
    scale's top (``7/10``, ``6 out of 10``), an emphasised number (``**8**``,
    ``[[8]]``), then a number alone on its line. The first kind found decides: if
    its numbers disagree, or the score lies outside ``scale``, the answer is
    ``None`` (never clamped, never guessed).
    """
    if not isinstance(text, str) or not text.strip():
        return None
    text = unicodedata.normalize("NFKC", text)  # full-width digits, colons and braces
    values = json_values(text, "score")
    if values is not None:
        scores = {_json_score(v, scale) for v in values}
        if len(scores) != 1:
            return None
        return scores.pop()
    if cut_short(text):
        return None
    return _prose_score(text, scale)


def _json_score(value: Any, scale: tuple[int, int]) -> float | None:
    if isinstance(value, bool):  # JSON true is not a 1
        return None
    if isinstance(value, int | float):
        return float(value) if scale[0] <= value <= scale[1] else None
    if isinstance(value, str) and value.strip():
        return _prose_score(unicodedata.normalize("NFKC", value), scale)
    return None


def _prose_score(text: str, scale: tuple[int, int]) -> float | None:
    low, high = scale
    # A mention of the scale itself ("on a 1-10 scale") is not a score.
    text = re.sub(rf"(?<![\d.]){low}\s*(?:-|–|—|to|a|bis|à)\s*{high}(?![\d.])", " ", text)

    labelled = list(_LABELLED.finditer(text))
    if labelled:
        # "Final score: 8" beats "Score: 7"; "Score: 8" beats "a score of 10 needs ...".
        final = [m for m in labelled if m.group("final") or m.group("after")]
        colon = [m for m in labelled if m.group("sep")]
        return _decide(final or colon or labelled, low, high)
    if _DECLINED.search(text):
        return None
    fractions = [m for m in _FRACTION.finditer(text) if float(m.group("den")) == high]
    for matches in (fractions, list(_EMPHASIS.finditer(text)), list(_ALONE.finditer(text))):
        if matches:
            return _decide(matches, low, high)
    return None


def _decide(matches: list[re.Match[str]], low: int, high: int) -> float | None:
    values = set()
    for m in matches:
        groups = m.groupdict()
        num, den = groups.get("num") or groups["vnum"], groups.get("den") or groups.get("vden")
        if den is not None and float(den) != high:
            return None  # "4/5" from a judge asked for 1-10: another scale, not ours
        values.add(float(num.replace(",", ".")))
    if len(values) != 1:
        return None
    (value,) = values
    return value if low <= value <= high else None


# --- pairwise verdicts -----------------------------------------------------------------

_LETTERS = "A-Za-zÀ-ɏЀ-ӿ"  # alphabets that put spaces between words
_TIE_WORDS = (
    r"tie|draw|empate|égalité|egalite|ex[ -]aequo|unentschieden|pareggio|parità"
    r"|ничья|平局|平手|打平|引き分け|무승부|동점"
)
# In free prose a tie word alone is no verdict ("how to tie a tie", "l'égalité salariale",
# "both answers draw on ..."): only a phrase that declares a tie is.
_TIE_CLAIM = (
    r"(?P<t>\b(?:it'?s|it\s+is|this\s+is|that'?s|result\s+is)\s+an?\s+(?:clear\s+)?tie\b"
    r"|\bequally\s+(?:good|strong|helpful|correct|matched)\b"
    r"|\b(?:es|hay)\s+(?:un\s+)?empate\b|\bc'est\s+(?:une\s+)?égalité\b|\bex[ -]aequo\b"
    r"|\bunentschieden\b|\bpareggio\b|\bничья\b|平局|打平|引き分け|무승부)"
)
_NOUN = (
    r"(?:answer|response|assistant|output|completion|candidate|option|respuesta|opción"
    r"|réponse|reponse|antwort|risposta|resposta|ответ|вариант)[ \t]+"
    r"|(?:回答|答案|回复|回應|応答|答え|응답|답변)[ \t]*"
)


def _ab(group: str) -> str:
    """An uppercase A or B not touching a Latin or Cyrillic letter: "Answer A", "回答A" and
    "A更好" count, "Also" does not."""
    return rf"(?<![{_LETTERS}])(?-i:(?P<{group}>[AB]))(?![{_LETTERS}])"


def _tie(group: str, words: str = _TIE_WORDS) -> str:
    return rf"(?<![{_LETTERS}])(?P<{group}>{words})(?![{_LETTERS}])"


_VERDICT_LABEL = (
    r"verdict|winner|decision|choice|preference|better\s+(?:answer|response|one)"
    r"|best\s+(?:answer|response)|preferred(?:\s+(?:answer|response))?"
    r"|veredicto|ganador|ganadora|mejor\s+respuesta|gagnant|gagnante|meilleure\s+réponse"
    r"|urteil|gewinner|bessere\s+antwort|verdetto|vincitore|risposta\s+migliore"
    r"|вердикт|победитель|лучший\s+ответ"
    r"|判决|判定|结论|結論|裁决|胜者|获胜者|勝者|판정|승자"
)
_ARTICLE = r"(?:(?:the|la|le|l'|die|der|el)\s*)?"
# "Verdict: A", "Final verdict: [[B]]", "The better answer is Response A", "Veredicto: empate".
_VERDICT_LABELLED = re.compile(
    rf"(?P<final>(?:final|overall)\s+)?(?<![{_LETTERS}])(?:{_VERDICT_LABEL}){_FILLER}"
    rf"(?:[:=：]|\b(?:is|es|est|ist|è|é)\b[ \t]*:?){_FILLER}{_ARTICLE}(?:{_NOUN})?\[*"
    rf"(?:{_ab('v')}|(?-i:(?P<c>C))(?![{_LETTERS}])|{_tie('t')})",
    re.IGNORECASE,
)
_BRACKETS = re.compile(r"\[\[\s*(?:(?P<v>[AB])|(?P<c>C)|(?P<t>tie))\s*\]\]", re.IGNORECASE)
_ADVERB = (
    r"(?:clearly|slightly|much|significantly|somewhat|far|overall|definitely|claramente"
    r"|ligeramente|nettement|clairement|légèrement|klar|deutlich|etwas|chiaramente)\s+"
)
_BETTER = (
    r"better|superior|stronger|preferable|the\s+better(?:\s+one)?|the\s+winner|wins"
    r"|mejor|preferible|gana|meilleure?|supérieure?|préférable|gagne|l'emporte"
    r"|besser|überlegen|gewinnt|migliore|vince|melhor|vence|лучше|предпочтительнее|побеждает"
)
_CJK_BETTER = (
    r"(?:的(?:回答|答案))?\s*(?:更好|更佳|较好|較好|更优|更優|胜出|獲勝|获胜|更胜一筹"
    r"|の方が(?:良い|よい|優れ)|が(?:より)?(?:良い|よい|優れ)|가\s*더\s*(?:좋|낫|우수))"
)
# "Answer A is better", "B wins", "La respuesta A es mejor", "回答A更好", "I prefer B", "tie".
_CLAIMS = re.compile(
    rf"(?<![{_LETTERS}])(?:{_NOUN})?{_ab('v1')}[ \t]*(?:(?:is|was|seems|es|est|ist|è|é)\s+)?"
    rf"(?:{_ADVERB})?(?:{_BETTER})(?![{_LETTERS}])"
    rf"|(?:{_NOUN})?{_ab('v2')}{_CJK_BETTER}"
    rf"|\b(?:i\s+)?(?:prefer|prefiero|préfère|bevorzuge|preferisco)\s+{_ARTICLE}(?:{_NOUN})?"
    rf"{_ab('v3')}"
    rf"|{_TIE_CLAIM}"
    rf"|\bneither(?:\s+(?:answer|response|one))?\s+is\s+(?:clearly\s+)?better\b",
    re.IGNORECASE,
)
# "Neither A nor B is better", "Answer A is not better": a negated claim is no claim.
_NEGATION = re.compile(rf"\b(?:not|nor|no|ni|noch|non|neither)\s+(?:{_NOUN})?$", re.IGNORECASE)
_VERDICT_EMPHASIS = re.compile(
    rf"(?:\*\*|__)\s*(?:{_ab('v')}|{_tie('t')})\s*[.!]?\s*(?:\*\*|__)", re.IGNORECASE
)
# A verdict alone on its line: "B", "Response A", "回答A", "Tie."
_VERDICT_ALONE = re.compile(
    rf"^[ \t*_#>\"'`]*(?:(?:final[ \t]+)?(?:{_NOUN}))?(?:{_ab('v')}|{_tie('t')})"
    rf"[ \t*_.!\"'`]*$",
    re.IGNORECASE | re.MULTILINE,
)
# Cyrillic А/В typed for the Latin letters ("Ответ А лучше") when they stand alone.
_CYRILLIC_AB = re.compile(r"(?<![^\W\d_])([АВ])(?![^\W\d_])")


def parse_verdict(text: str | None) -> Verdict | None:
    """The verdict in a pairwise judge's reply: ``"A"``, ``"B"``, ``"tie"``, or ``None``.

    Looks, in order, for a JSON ``"winner"`` (or ``"verdict"``), a bracketed verdict
    (``[[A]]``; ``[[C]]`` is a tie), a labelled one (``Verdict: B``, ``Veredicto:
    Respuesta A``, ``The better answer is A``; "final"/"overall" ones win a
    disagreement), a claim (``Answer A is better``, ``La réponse B est meilleure``,
    ``回答A更好``, ``I prefer B``, ``tie``), an emphasised letter (``**B**``) and a
    verdict alone on its line (``Response B``). The first kind found decides; if it
    names more than one result, or nothing is found, the answer is ``None``.
    """
    if not isinstance(text, str) or not text.strip():
        return None
    text = unicodedata.normalize("NFKC", text)
    values = json_values(text, "winner") or json_values(text, "verdict")
    if values is not None:
        verdicts = {_json_verdict(v) for v in values}
        return verdicts.pop() if len(verdicts) == 1 else None
    text = _CYRILLIC_AB.sub(lambda m: "A" if m.group(1) == "А" else "B", text)
    for pattern in (_BRACKETS, _VERDICT_LABELLED, _CLAIMS, _VERDICT_EMPHASIS, _VERDICT_ALONE):
        matches = list(pattern.finditer(text))
        if pattern is _CLAIMS:
            matches = [m for m in matches if not _NEGATION.search(text, 0, m.start())]
        if not matches:
            continue
        final = [m for m in matches if m.groupdict().get("final")]
        verdicts = {_match_verdict(m) for m in final or matches}
        return verdicts.pop() if len(verdicts) == 1 else None
    return None


def _match_verdict(match: re.Match[str]) -> Verdict:
    for group, value in match.groupdict().items():
        if value and group.startswith("v"):
            return "A" if value.upper() == "A" else "B"
    return "tie"  # [[C]], "Verdict: C", a tie word, "neither is better"


def _json_verdict(value: Any) -> Verdict | None:
    if not isinstance(value, str):
        return None
    word = re.sub(rf"^\s*(?:{_NOUN})?", "", value.strip(), flags=re.IGNORECASE).strip(" .*[]")
    if word.upper() in ("A", "B"):
        return "A" if word.upper() == "A" else "B"
    if word.upper() == "C" or re.fullmatch(_TIE_WORDS, word, re.IGNORECASE):
        return "tie"
    return None
