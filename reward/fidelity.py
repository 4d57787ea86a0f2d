"""Language fidelity: is a text written in the language it should be?

Uses lingua (offline n-gram models, loaded lazily on first use) in its high
accuracy mode, over the languages named in ``arbitrage.languages.NAMES`` that
lingua knows (50): ~700 MB and ~5 s to load. Its low accuracy mode is 10x
lighter but calls "The blue whale is a mammal that lives in the ocean." Sotho.
"""

from __future__ import annotations

import functools
import re
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


@functools.cache
def _languages() -> frozenset[Any]:
    return frozenset(filter(None, (_language(code) for code in NAMES)))


@functools.cache
def _detector() -> Any:
    from lingua import LanguageDetectorBuilder

    return LanguageDetectorBuilder.from_languages(*_languages()).build()


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
    values = _detector().compute_language_confidence_values(prose)
    if not values or values[0].value <= 0:
        return 0.0
    mine = next((v.value for v in values if v.language == language), 0.0)
    return min(1.0, mine / values[0].value)
