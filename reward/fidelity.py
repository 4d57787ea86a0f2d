"""Language fidelity: is a text written in the language it should be?

Uses lingua (offline n-gram models) in its high accuracy mode. A text expected in
language L is weighed against L, the run's languages (``weigh_against``, which a
run calls with ``pool.languages``), the close relatives of each (``RELATIVES``:
Russian and Ukrainian, Hindi and Marathi, Arabic and Urdu, ...) and ``DRIFT``, the
languages a teacher most often answers in instead of the one asked (English first).
A language's model is loaded the first time it is needed and shared by every check
after, so a run loads only those: 18 languages for the default run (a 320 MB
process), against 670 MB for all 50 that lingua and ``arbitrage.languages.NAMES``
have in common. lingua's low accuracy mode is 10x
lighter but calls "The blue whale is a mammal that lives in the ocean." Sotho.

What this costs: an answer in a language outside that set is weighed against the
closest in it, so a Tagalog answer to a Swahili prompt is caught only as far as it
reads unlike Swahili.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable
from typing import Any

from arbitrage.languages import NAMES

#: Texts with fewer letters than this (code, arithmetic, a bare number) are not judged.
MIN_LETTERS = 20
#: Only the start of a long text is read: the language rarely changes after it.
MAX_CHARS = 2000

_CODE_BLOCK = re.compile(r"```.*?(```|$)", re.DOTALL)


@functools.cache
def _language(code: str) -> Any:
    from lingua import IsoCode639_1, Language

    iso = getattr(IsoCode639_1, code.split("-")[0].split("_")[0].upper(), None)
    return None if iso is None else Language.from_iso_code_639_1(iso)


#: What a text is weighed against besides its expected language: the languages a
#: teacher drifts into most (the largest in web and instruction data).
DRIFT = ("en", "zh", "es", "fr", "de", "pt", "ru", "ja", "ar", "hi", "it", "ko")

#: Close relatives, which a teacher mixes up and a detector must tell apart: a text
#: expected in one of a group is weighed against all of it.
RELATIVES = (
    ("es", "pt", "ca", "fr", "it", "ro"),
    ("en", "de", "nl", "af", "da", "no", "sv"),
    ("ru", "uk", "sr"),
    ("pl", "cs", "sk", "hr", "sr"),
    ("hi", "mr", "ur", "bn", "gu", "pa"),
    ("ar", "fa", "ur"),
    ("sw", "zu", "xh"),
    ("id", "ms", "jv", "tl"),
    ("lt", "lv", "et", "fi"),
    ("zh", "ja", "ko"),
    ("ta", "te", "kn"),
    ("ha", "yo", "ig", "so"),
)


def _relatives(code: str) -> set[str]:
    return {c for group in RELATIVES if code in group for c in group}


@functools.cache
def _languages() -> frozenset[Any]:
    """Every language the detector can judge (lingua's, named in ``NAMES``)."""
    return frozenset(filter(None, (_language(code) for code in NAMES)))


_run_languages: frozenset[str] = frozenset()


def weigh_against(codes: Iterable[str]) -> None:
    """Weigh every text against these languages too (a run's ``pool.languages``), so an
    answer in another of the run's languages is caught whichever it is."""
    global _run_languages
    more = _run_languages | set(codes)
    if more != _run_languages:
        _run_languages = frozenset(more)
        _detector.cache_clear()


@functools.cache
def _detector(expected: Any) -> Any:
    """The detector for texts expected in ``expected``: it, the run's languages, their
    relatives and ``DRIFT``. lingua keeps one copy of each language's model for every
    detector of the process."""
    from lingua import LanguageDetectorBuilder

    codes = set(DRIFT)
    for code in {expected.iso_code_639_1.name.lower(), *_run_languages}:
        codes |= {code} | _relatives(code)
    among = {_language(code) for code in codes} - {None}
    return LanguageDetectorBuilder.from_languages(*(among | {expected})).build()


def language_fidelity(text: str, expected: str) -> float:
    """How sure lingua is that ``text`` is in ``expected`` (ISO 639-1, e.g. ``"sw"``), in [0, 1].

    The expected language's confidence is divided by the top language's, so a text
    in the expected language scores 1.0 even when a close relative (Hindi and
    Marathi, Portuguese and Galician) takes some of the probability. Code blocks
    are ignored. A text with fewer than ``MIN_LETTERS`` letters, and a language
    outside the detector's set, score 1.0: there is nothing to judge.
    """
    language = _language(expected)
    prose = _CODE_BLOCK.sub(" ", text)[:MAX_CHARS]
    if language not in _languages() or sum(c.isalpha() for c in prose) < MIN_LETTERS:
        return 1.0
    values = _detector(language).compute_language_confidence_values(prose)
    if not values or values[0].value <= 0:
        return 0.0
    mine = next((v.value for v in values if v.language == language), 0.0)
    return min(1.0, mine / values[0].value)
