"""Row filters of the mixture: answer checks, language fidelity and near-duplicate removal.

Each check returns the reason a row is dropped, or ``None``; the reasons are the
keys of the mixture's drop counts (see ``REASONS``).
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Sequence
from typing import Any

#: Every reason a row or a preference pair can be dropped, in the order checks run.
REASONS = (
    "no_winner",
    "empty",
    "truncated",
    "too_short",
    "too_long",
    "refusal",
    "boilerplate",
    "language",
    "contaminated",
    "duplicate_prompt",
    "duplicate_answer",
    "quota_language",
    "quota_task",
    "quota_teacher",
    "over_target",
)

# Refusals are judged on the opening of an answer only: "I can't" deep inside a
# good answer ("I can't stress enough...") is not a refusal.
_REFUSAL = re.compile(
    r"^\W*(?:"
    r"(?:i'?m|i am) (?:so |very )?sorry,? (?:but )?i (?:can(?:no|')t|am unable|won'?t)"
    r"|sorry,? (?:but )?i (?:can(?:no|')t|am unable|won'?t)"
    r"|i apologi[sz]e,? but"
    r"|i (?:can(?:no|')t|am unable to|won'?t|am not able to) "
    r"(?:help|assist|provide|comply|answer|do that|fulfil)"
    r"|(?:je suis )?désolée?,? (?:mais )?je ne (?:peux|suis pas en mesure)"
    r"|je ne peux pas (?:vous |t')?(?:aider|répondre|fournir)"
    r"|lo siento,? (?:pero )?no (?:puedo|es posible)"
    r"|no puedo (?:ayudar|responder|proporcionar)"
    r"|(?:desculpe|sinto muito),? (?:mas )?não (?:posso|consigo)"
    r"|es tut mir leid,? (?:aber )?ich kann"
    r"|ich kann (?:dir |ihnen )?(?:dabei )?(?:leider )?nicht (?:helfen|antworten)"
    r"|samahani,? (?:lakini )?siwezi"
    r"|मुझे (?:खेद|माफ़) है,? (?:लेकिन )?मैं"
    r")",
    re.IGNORECASE,
)
_BOILERPLATE = re.compile(
    r"\bas an ai(?: language model| assistant)?\b"
    r"|\bas a (?:large )?language model\b"
    r"|\bi(?:'m| am) (?:just |only )?an ai\b"
    r"|\bmy knowledge cutoff\b"
    r"|\ben tant qu'(?:ia|intelligence artificielle|assistant ia|modèle de langage)\b"
    r"|\bcomo (?:una? )?(?:ia|inteligencia artificial|modelo de lenguaje)\b"
    r"|\bals (?:ki|ein (?:ki-)?sprachmodell)\b"
    r"|\bkama (?:ai|mfano wa lugha)\b",
    re.IGNORECASE,
)


def is_refusal(text: str) -> bool:
    """True if ``text`` opens by declining to answer (English, French, Spanish, Portuguese,
    German, Swahili and Hindi phrasings)."""
    return bool(_REFUSAL.match(text.strip()[:300]))


def is_boilerplate(text: str) -> bool:
    """True if ``text`` carries an AI self-disclaimer ("As an AI language model, ...")."""
    return bool(_BOILERPLATE.search(text))


def looks_truncated(text: str) -> bool:
    """True for an answer cut inside a code block (an odd number of ``` fences)."""
    return text.count("```") % 2 == 1


def answer_check(
    text: str,
    *,
    finish_reason: str,
    min_chars: int,
    max_chars: int | None,
    refusals: bool,
    boilerplate: bool,
) -> str | None:
    """The first reason ``text`` is not a usable answer, or ``None``.

    ``finish_reason`` is the provider's: where it gave one, it decides whether the answer
    was cut (``Generation.status``), and the fence count is not consulted.
    """
    stripped = text.strip()
    if not stripped:
        return "empty"
    # A complete answer may hold an odd number of fences (a ``` quoted in prose, four
    # backticks around a block that shows one): they are only a guess, for a provider
    # that gives no finish reason.
    if not finish_reason and looks_truncated(stripped):
        return "truncated"
    if len(stripped) < min_chars:
        return "too_short"
    if max_chars is not None and len(stripped) > max_chars:
        return "too_long"
    if refusals and is_refusal(stripped):
        return "refusal"
    if boilerplate and is_boilerplate(stripped):
        return "boilerplate"
    return None


FidelityFn = Callable[[str, str], float]


def fidelity_of(
    text: str, language: str, details: dict[str, float], compute: FidelityFn | None = None
) -> float:
    """The answer's language fidelity: the reward's own ``language_fidelity`` detail when it
    has one, else ``compute(text, language)`` (default: ``reward.fidelity.language_fidelity``,
    loaded on first use)."""
    if "language_fidelity" in details:
        return float(details["language_fidelity"])
    if compute is None:
        from reward.fidelity import language_fidelity

        compute = language_fidelity
    return float(compute(text, language))


SHINGLE = 5
NUM_PERM = 128


def _shingles(text: str) -> set[bytes]:
    norm = " ".join(re.sub(r"[^\w\s]", " ", text.lower()).split())
    if len(norm) <= SHINGLE:
        return {norm.encode("utf-8")}
    return {norm[i : i + SHINGLE].encode("utf-8") for i in range(len(norm) - SHINGLE + 1)}


@functools.cache
def _bands(threshold: float) -> tuple[int, int]:
    """The LSH band layout (bands, rows) datasketch picks for ``threshold``: it finds it
    by numerical integration (~30 ms), so once per threshold, not once per index."""
    from datasketch import MinHashLSH

    lsh = MinHashLSH(threshold=threshold, num_perm=NUM_PERM)
    return lsh.b, lsh.r


def near_duplicates(
    texts: Sequence[str], groups: Sequence[Any], *, threshold: float, min_chars: int
) -> set[int]:
    """Indices of texts that nearly duplicate an earlier text of the same group.

    Order is priority: the first of a set of near-duplicates is kept. Similarity is
    the MinHash estimate of the Jaccard similarity of character 5-gram sets (LSH
    candidates are confirmed against ``threshold``). Texts shorter than
    ``min_chars`` are never duplicates (a bare number repeats legitimately).
    """
    from datasketch import MinHash, MinHashLSH

    todo = [i for i, t in enumerate(texts) if len(t.strip()) >= min_chars]
    if not todo:
        return set()
    hashes = MinHash.bulk([_shingles(texts[i]) for i in todo], num_perm=NUM_PERM, seed=1)
    index: dict[Any, Any] = {}
    seen: dict[Any, dict[int, Any]] = {}
    dupes: set[int] = set()
    for i, mh in zip(todo, hashes, strict=True):
        group = groups[i]
        if group not in index:
            index[group] = MinHashLSH(num_perm=NUM_PERM, params=_bands(threshold))
        lsh = index[group]
        kept = seen.setdefault(group, {})
        if any(kept[j].jaccard(mh) >= threshold for j in lsh.query(mh)):
            dupes.add(i)
            continue
        lsh.insert(i, mh)
        kept[i] = mh
    return dupes
