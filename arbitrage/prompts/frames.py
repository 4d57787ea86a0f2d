"""In-language prompt frames for the model-free ``template`` writer.

The frames live in ``data/frames.yaml`` (written for this project). English keeps the
persona-quoting templates of ``tasks.py``; every other bundled language has its own
frames, so the whole user turn, not only the requested answer, is in the language.

Personas are English sentences, and pasting one into a French frame would make the
user turn half English. So a non-English prompt is built from in-language parts instead:
a first-person opener, a task frame and an everyday topic, combined so that prompts of
one language × task differ (``variant``). The persona does not shape that text; it
stays on the prompt row (``persona``, ``meta.persona_id``). A writer model
(``pool.writer``) writes persona-voiced prompts in any language.
"""

from __future__ import annotations

import functools
import random
from importlib.resources import files
from typing import Any

from arbitrage.errors import ConfigError


@functools.cache
def _frames() -> dict[str, dict[str, Any]]:
    import yaml

    text = files("arbitrage").joinpath("data/frames.yaml").read_text(encoding="utf-8")
    return dict(yaml.safe_load(text))


def base(code: str) -> str:
    """The language part of a BCP-47 tag: ``pt-BR`` → ``pt``, ``zh-Hans`` → ``zh``."""
    return code.split("-")[0].split("_")[0].lower()


def bundled_languages() -> list[str]:
    """Languages the template writer writes in: ``en`` and every language with frames."""
    return ["en", *sorted(_frames())]


def has_frames(code: str) -> bool:
    """Whether the template writer can write ``code`` in-language."""
    return base(code) == "en" or base(code) in _frames()


def check_template_languages(codes: list[str]) -> None:
    """Raise ``ConfigError`` naming the languages without frames and the bundled ones."""
    missing = [code for code in codes if not has_frames(code)]
    if missing:
        raise ConfigError(
            f"pool.writer 'template' has no in-language frames for {', '.join(missing)} "
            f"(bundled: {', '.join(bundled_languages())}); set pool.writer to a teacher, "
            "which writes prompts in any language"
        )


def variant(code: str, task: str, k: int, seed: int) -> int:
    """The frame × topic × opener combination of the ``k``-th prompt of a language × task
    cell, as one number (``Slot.template``). The first ``len(topics)`` prompts of a cell
    differ in topic and opener, the next in the pairing of the two, and so on; the
    seed decides the order, so different seeds give different pools."""
    entry = _frames()[base(code)]
    n_frames, n_topics, n_openers = len(entry[task]), len(entry["topics"]), len(entry["openers"])
    rng = random.Random(f"{seed}:{base(code)}:{task}")
    topics = rng.sample(range(n_topics), n_topics)
    openers = rng.sample(range(n_openers), n_openers)
    first = rng.randrange(n_frames)
    q, r = divmod(k, n_topics)
    t = topics[r]
    o = openers[(r + q) % n_openers]
    f = (first + k + k // (n_topics * n_openers)) % n_frames
    return f + n_frames * (t + n_topics * o)


def frame_text(code: str, task: str, template: int) -> str:
    """The in-language user turn of a non-English slot: opener, frame on a topic, and
    the reply directive. ``template`` is a ``variant`` number."""
    entry = _frames()[base(code)]
    frames, topics, openers = entry[task], entry["topics"], entry["openers"]
    f, rest = template % len(frames), template // len(frames)
    t, o = rest % len(topics), (rest // len(topics)) % len(openers)
    return f"{openers[o]} {frames[f].format(topic=topics[t])}\n\n{entry['reply']}"
