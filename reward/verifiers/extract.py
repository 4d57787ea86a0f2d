"""Final answers out of free text: ``\\boxed{}``, a labelled answer in the prompt's
language, or the last number; and whether two answers are the same.

Numbers are compared as numbers (``0.5`` = ``1/2`` = ``\\frac{1}{2}`` = ``50%``,
``1,000`` = ``1 000`` = ``1000``, digits of any script: ``४२`` = ``٤٢`` = ``42``);
anything else as normalised text (case, spaces, ``$``, ``\\text{}`` and trailing
punctuation ignored), so a multiple-choice letter or a word is checkable too.
"""

from __future__ import annotations

import re
import unicodedata
from fractions import Fraction

#: Phrases that introduce a final answer, by language; the answer is what follows on
#: the same line. The last one in the text wins (a worked answer may restate steps).
ANSWER_LABELS: dict[str, tuple[str, ...]] = {
    "en": ("final answer is", "final answer", "the answer is", "answer is", "answer"),
    "es": ("la respuesta final es", "respuesta final", "la respuesta es", "respuesta"),
    "fr": ("la réponse finale est", "réponse finale", "la réponse est", "réponse"),
    "de": ("die endgültige antwort ist", "die antwort lautet", "die antwort ist", "antwort"),
    "pt": ("a resposta final é", "a resposta é", "resposta"),
    "it": ("la risposta finale è", "la risposta è", "risposta"),
    "ru": ("окончательный ответ", "ответ"),
    "zh": ("最终答案是", "最终答案", "答案是", "答案为", "答案", "答"),
    "ja": ("最終的な答えは", "答えは", "答え", "解答"),
    "ko": ("최종 답은", "정답은", "답은", "정답", "답"),
    "hi": ("अंतिम उत्तर", "उत्तर है", "उत्तर"),
    "ar": ("الإجابة النهائية", "الإجابة هي", "الإجابة", "الجواب"),
    "sw": ("jibu la mwisho ni", "jibu ni", "jibu"),
    "tr": ("cevap", "yanıt"),
}

_BOXED = re.compile(r"\\(?:boxed|fbox)\s*\{")
_NUMBER = re.compile(
    r"[-−]?\s?(?:\d{1,3}(?:[,.\u00a0\u202f ]\d{3})+(?!\d)|\d+)(?:[.,]\d+)?(?:\s?/\s?\d+)?\s?%?"
)
_FRAC = re.compile(r"\\[dt]?frac\s*\{([^{}]+)\}\s*\{([^{}]+)\}")
_TEXT = re.compile(r"\\(?:text|mathrm|textbf|mathbf)\s*\{([^{}]*)\}")
_UNITS = re.compile(r"\\[,;!]|\\(?:left|right|quad)|\$")


def _digits(text: str) -> str:
    """Digits of any script as ASCII (Devanagari, Arabic-Indic, full-width ...)."""
    out = []
    for ch in text:
        if ch.isdigit() and not ch.isascii():
            try:
                out.append(str(unicodedata.digit(ch)))
                continue
            except ValueError:
                pass
        out.append({"，": ",", "．": ".", "／": "/", "％": "%", "－": "-"}.get(ch, ch))
    return "".join(out)


def boxed(text: str) -> str | None:
    """The content of the last ``\\boxed{...}`` (nested braces kept), or ``None``."""
    found = None
    for match in _BOXED.finditer(text):
        depth, start = 1, match.end()
        for i in range(start, len(text)):
            depth += {"{": 1, "}": -1}.get(text[i], 0)
            if depth == 0:
                found = text[start:i]
                break
    if found is None:
        return None
    while found.startswith("{") and found.endswith("}"):  # \boxed{{42}} (escaped templates)
        found = found[1:-1]
    return found.strip()


def labelled(text: str, language: str = "en") -> str | None:
    """What follows the last answer label (in ``language``, or English) on its line."""
    labels = ANSWER_LABELS.get(language.split("-")[0].lower(), ()) + ANSWER_LABELS["en"]
    lowered = text.casefold()
    best: tuple[int, str] | None = None
    for label in labels:
        pattern = re.escape(label.casefold()) + r"\s*(?:[:：=—–-]|是|は|은|ni\b)?\s*"
        for match in re.finditer(pattern, lowered):
            rest = text[match.end() :].split("\n", 1)[0].strip(" *:：")
            # the label ending last: "la respuesta es 3" over its "respuesta"
            if rest and (best is None or match.end() > best[0]):
                best = (match.end(), rest)
    return None if best is None else best[1]


def last_number(text: str) -> str | None:
    """The last number written in ``text``, as written."""
    found = _NUMBER.findall(_digits(text))
    return found[-1].strip() if found else None


def extract_answer(text: str, language: str = "en") -> str | None:
    """A completion's final answer: its last ``\\boxed{}``, else its last labelled
    answer, else its last number; ``None`` when it gives none."""
    for way in (boxed(text), labelled(text, language)):
        if way:
            return way
    return last_number(text)


def to_number(answer: str) -> Fraction | None:
    """``answer`` as an exact number, or ``None`` if it is not one.

    Reads integers, decimals (``.`` or ``,``), thousands separators (``,``, a space,
    or ``.`` before exactly three digits), fractions (``3/4``, ``\\frac{3}{4}``), a
    trailing ``%`` (``50%`` is ``1/2``) and a number with a short unit or label around
    it (``$12``, ``x = 4``, ``12 cm``)."""
    text = _digits(_TEXT.sub(r"\1", answer))
    text = _FRAC.sub(r"(\1)/(\2)", _UNITS.sub("", text)).replace("−", "-").strip()
    text = re.sub(r"^[a-zA-Z]\s*=\s*", "", text)  # x = 4
    match = re.fullmatch(r"\(?\s*([^()]*?)\s*\)?\s*/\s*\(?\s*([^()]*?)\s*\)?", text)
    if match and "/" in text:
        top, bottom = _plain(match.group(1)), _plain(match.group(2))
        return None if top is None or not bottom else top / bottom
    numbers = _NUMBER.findall(text)
    if len(numbers) != 1 or len(re.sub(r"[^a-zA-Z\u0080-\uffff]", "", text)) > 12:
        return None  # no number, several, or a sentence with one in it
    return _plain(numbers[0])


def _plain(text: str) -> Fraction | None:
    text = text.replace(" ", "").replace("\u202f", "").replace("\u00a0", "")
    percent = text.endswith("%")
    text = text.rstrip("%")
    if re.fullmatch(r"-?\d{1,3}(,\d{3})+(\.\d+)?", text):
        text = text.replace(",", "")
    elif re.fullmatch(r"-?\d{1,3}(\.\d{3})+,\d+", text):  # 1.234,5
        text = text.replace(".", "").replace(",", ".")
    elif re.fullmatch(r"-?\d+,\d+", text):  # 2,5 (a decimal comma)
        text = text.replace(",", ".")
    try:
        value = Fraction(text)
    except (ValueError, ZeroDivisionError):
        return None
    return value / 100 if percent else value


def normalise_text(answer: str) -> str:
    """``answer`` for a text comparison: case, spaces, ``$``, ``\\text{}``, emphasis and
    trailing punctuation dropped."""
    text = _TEXT.sub(r"\1", _digits(answer))
    text = _UNITS.sub("", text).replace("*", "").casefold()
    return re.sub(r"\s+", " ", text).strip(" .。!,;:")


def same_answer(answer: str, reference: str) -> bool:
    """``answer`` states ``reference``: equal as numbers (both read as numbers; a
    percentage also matches its bare number) or as normalised text. A one-letter
    reference (a multiple-choice option) also matches ``"D. Video conferencing"``."""
    a, r = to_number(answer), to_number(reference)
    if a is not None and r is not None:
        if a == r:
            return True
        pct = "%" in answer or "%" in reference
        return pct and (a * 100 == r or r * 100 == a)
    a_text, r_text = normalise_text(answer), normalise_text(reference)
    if a_text == r_text:
        return bool(a_text)
    if len(r_text) == 1 and r_text.isalpha():
        return re.match(rf"\(?{re.escape(r_text)}[).:]?(\s|$)", a_text) is not None
    return False


def answer_key(answer: str) -> str:
    """A key under which equal answers (``same_answer``) meet, for a majority vote."""
    number = to_number(answer)
    return f"n:{number}" if number is not None else f"t:{normalise_text(answer)}"
