"""The prompt pool: persona × task × language → an instruction.

Prompts are stratified over the language × task grid (cell sizes differ by at
most one), personas are drawn without replacement, and everything is seeded:
the same config gives the same pool, ids included.
"""

from __future__ import annotations

import asyncio
import json
import random
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from arbitrage import languages
from arbitrage.calls.teachers import Teacher
from arbitrage.errors import ConfigError, DataError
from arbitrage.prompts import frames
from arbitrage.prompts.tasks import TASKS, check_task
from arbitrage.records import Persona, Prompt


@dataclass(frozen=True)
class Slot:
    """What one prompt should be: the persona, task and language it is written for."""

    persona: Persona
    task: str
    language: str
    template: int


def plan(
    personas: Sequence[Persona],
    languages_: Sequence[str],
    tasks: Sequence[str],
    n_prompts: int,
    seed: int = 0,
    *,
    offsets: Mapping[tuple[str, str], int] | None = None,
    variant_seed: int | None = None,
) -> list[Slot]:
    """Choose persona, task and language for ``n_prompts`` prompts, balanced over the grid.

    ``offsets`` (prompts a language × task cell already holds) and ``variant_seed`` (the
    first round's seed) let a later round of ``target_rows`` continue the in-language
    frame variants of the first instead of repeating them.
    """
    if not personas:
        raise DataError("no personas to build prompts from")
    for task in tasks:
        check_task(task)
    rng = random.Random(seed)
    cells = [(lang, task) for lang in languages_ for task in tasks]
    order: list[tuple[str, str]] = []
    while len(order) < n_prompts:
        rng.shuffle(cells)
        order.extend(cells)
    chosen = order[:n_prompts]
    pool = list(personas)
    rng.shuffle(pool)
    slots = []
    in_cell: Counter[tuple[str, str]] = Counter(offsets or {})
    for i, (lang, task) in enumerate(chosen):
        persona = pool[i % len(pool)]
        n_templates = len(TASKS[task].templates)
        template = rng.randrange(n_templates)  # drawn for every slot: English stays as it was
        if frames.base(lang) != "en" and frames.has_frames(lang):
            vseed = seed if variant_seed is None else variant_seed
            template = frames.variant(lang, task, in_cell[lang, task], vseed)
            in_cell[lang, task] += 1
        slots.append(Slot(persona, task, lang, template))
    return slots


def template_text(slot: Slot) -> str:
    """The model-free instruction for a slot, written wholly in the slot's language.

    English frames quote the persona; the other bundled languages use in-language
    frames (``arbitrage.prompts.frames``; ``slot.template`` is then a frame variant). A
    language without frames raises ``ConfigError`` listing the bundled ones.
    """
    if frames.base(slot.language) != "en":
        frames.check_template_languages([slot.language])
        return frames.frame_text(slot.language, slot.task, slot.template)
    frame = TASKS[slot.task].templates[slot.template]
    return frame.format(persona=slot.persona.text.strip())


def english_template_text(slot: Slot) -> str:
    """The English frame with an answer-language directive: what a writer model is asked
    to translate when it fails to write a prompt in a language without frames."""
    frame = TASKS[slot.task].templates[slot.template % len(TASKS[slot.task].templates)]
    text = frame.format(persona=slot.persona.text.strip())
    if frames.base(slot.language) != "en":
        text += f"\n\nAnswer only in {languages.name(slot.language)}."
    return text


def writer_messages(slot: Slot) -> list[dict[str, str]]:
    """The PersonaHub-style request a writer model gets for a slot."""
    task = TASKS[slot.task]
    lang = languages.name(slot.language)
    return [
        {
            "role": "user",
            "content": (
                f"Persona: {slot.persona.text.strip()}\n\n"
                f"Write one {task.description} that this persona might ask an AI assistant. "
                f"Write it entirely in {lang}, in the persona's own voice, self-contained "
                "(include any text it refers to). Reply with the instruction only: no "
                "preamble, no answer, no quotation marks."
            ),
        }
    ]


def _clean(text: str) -> str:
    text = text.strip().strip('"“”«»').strip()
    for prefix in ("Instruction:", "Prompt:"):
        if text.lower().startswith(prefix.lower()):
            text = text[len(prefix) :].strip()
    return text


def _prompt(slot: Slot, text: str, writer: str, seed: int) -> Prompt:
    return Prompt(
        text=text,
        language=slot.language,
        task=slot.task,
        persona=slot.persona.text,
        meta={
            "persona_id": slot.persona.id,
            "persona_source": slot.persona.source,
            "writer": writer,
            "template": slot.template,
            "seed": seed,
        },
    )


#: The reply length of a writer call unless ``pool.writer_max_tokens`` says otherwise.
WRITER_MAX_TOKENS = 160


async def awrite(
    slots: Sequence[Slot],
    writer: Teacher | None = None,
    seed: int = 0,
    *,
    max_tokens: int = WRITER_MAX_TOKENS,
) -> list[Prompt]:
    """Turn slots into prompts, with a writer model or (``writer=None``) from templates.

    ``max_tokens`` bounds each writer reply (``pool.writer_max_tokens``). A writer call
    that fails or returns nothing falls back to the template, and the prompt's
    ``meta["writer"]`` says so.
    """
    if writer is None:
        return [_prompt(s, template_text(s), "template", seed) for s in slots]
    gens = await asyncio.gather(
        *(writer.acomplete(writer_messages(s), max_tokens=max_tokens) for s in slots)
    )
    prompts: list[Prompt | None] = []
    for slot, gen in zip(slots, gens, strict=True):
        text = _clean(gen.text) if gen.ok else ""
        if text:
            prompts.append(_prompt(slot, text, writer.name, seed))
        elif frames.has_frames(slot.language):
            prompts.append(_prompt(slot, template_text(slot), "template-fallback", seed))
        else:
            prompts.append(None)
    # A language without frames has no template to fall back on: the writer translates
    # the English one instead, and only if that fails too is the prompt English.
    todo = [i for i, p in enumerate(prompts) if p is None]
    gens = await asyncio.gather(
        *(writer.acomplete(translate_messages(slots[i]), max_tokens=max_tokens) for i in todo)
    )
    for i, gen in zip(todo, gens, strict=True):
        text = _clean(gen.text) if gen.ok else ""
        slot = slots[i]
        if text:
            prompts[i] = _prompt(slot, text, "template-translated", seed)
        else:
            prompts[i] = _prompt(slot, english_template_text(slot), "template-english", seed)
    return [p for p in prompts if p is not None]


def translate_messages(slot: Slot) -> list[dict[str, str]]:
    """The request that translates a slot's English template into its language."""
    lang = languages.name(slot.language)
    return [
        {
            "role": "user",
            "content": (
                f"Translate this request into {lang}. Reply with the translation only: "
                f"no preamble, no answer, no quotation marks.\n\n{english_template_text(slot)}"
            ),
        }
    ]


def load_prompts(path: str | Path) -> list[Prompt]:
    """Ready-made prompts from a JSONL file with ``text``, ``language`` and ``task`` per
    line. A row that is not a prompt (no text, an empty one, no language) is a
    ``DataError`` naming its file and line: it would be sent, and paid for, as is."""
    from arbitrage.config import read_text

    path = Path(path)
    if not path.is_file():
        raise DataError(f"prompt file not found: {path}")
    text = read_text(path).removeprefix("\ufeff")  # a byte-order mark is no part of row 1
    prompts = []
    # Split on newlines only: str.splitlines also splits at U+2028 and the like, which
    # JSON allows unescaped inside a string.
    for n, line in enumerate(text.split("\n"), 1):
        if line.strip():
            prompts.append(_prompt_row(path, n, line))
    if not prompts:
        raise DataError(f"{path}: no prompts")
    return prompts


def _prompt_row(path: Path, n: int, line: str) -> Prompt:
    try:
        row = json.loads(line)
    except json.JSONDecodeError as exc:
        raise DataError(f"{path}:{n}: not a prompt row (JSONDecodeError: {exc})") from None
    if not isinstance(row, dict):
        raise DataError(f"{path}:{n}: not a prompt row (a JSON {type(row).__name__})")
    for key in ("text", "language"):
        value = row.get(key)
        what = (
            "missing" if key not in row
            else "null" if value is None
            else "not text" if not isinstance(value, str)
            else "empty" if not value.strip()
            else None
        )  # fmt: skip
        if what is not None:
            need = "an instruction" if key == "text" else "a language code"
            raise DataError(f"{path}:{n}: '{key}' is {what}; every prompt row needs {need}")
    try:
        language = languages.check_code(row["language"])
    except ConfigError as exc:
        raise DataError(f"{path}:{n}: {exc}") from None
    return Prompt(
        text=row["text"],
        language=language,
        task=str(row.get("task") or "custom"),
        persona=str(row.get("persona") or ""),
        meta={"source": str(path)},
        **_verifier_fields(row, f"{path}:{n}"),
    )


def _verifier_fields(row: dict[str, Any], where: str) -> dict[str, Any]:
    """A row's optional ``reference``, ``tests`` and ``constraints``, checked (a bad one
    would score every answer to the prompt wrong): ``DataError`` at ``where``."""
    from reward.verifiers.checks import validate
    from reward.verifiers.code import check_test

    out: dict[str, Any] = {}
    reference = row.get("reference")
    if reference is not None:
        if isinstance(reference, bool) or not isinstance(reference, str | int | float):
            raise DataError(f"{where}: 'reference' must be text or a number (the final answer)")
        if not str(reference).strip():
            raise DataError(f"{where}: 'reference' is empty; leave it out instead")
        out["reference"] = str(reference)
    for key, check in (("tests", check_test), ("constraints", validate)):
        items = row.get(key)
        if items is None:
            continue
        if not isinstance(items, list):
            raise DataError(f"{where}: '{key}' must be a list")
        for i, item in enumerate(items):
            why = check(item)
            if why is not None:
                raise DataError(f"{where}: {key}[{i}]: {why}")
        out[key] = items
    return out


def take_prompts(path: str | Path, n_prompts: int | None) -> tuple[list[Prompt], str]:
    """The prompts a pool takes from a prompts file: the first ``n_prompts`` rows, or all
    of them for ``None``; and where they came from, in words (``"the first 60 of 805 in
    prompts.jsonl (n_prompts: 60)"``)."""
    rows = load_prompts(path)
    if n_prompts is None or n_prompts == len(rows):
        return rows, f"from {path}"
    if n_prompts > len(rows):  # asked for more than the file has
        return rows, f"all of {path} (n_prompts: {n_prompts})"
    origin = f"the first {n_prompts} of {len(rows)} in {path} (n_prompts: {n_prompts})"
    return rows[:n_prompts], origin


def describe(prompts: Iterable[Prompt]) -> str:
    """What a pool holds: ``"805 prompts × 1 language (en) × 8 tasks"`` (names are listed
    up to five)."""
    langs: Counter[str] = Counter()
    tasks: Counter[str] = Counter()
    for prompt in prompts:
        langs[prompt.language] += 1
        tasks[prompt.task] += 1
    n = sum(langs.values())
    return f"{n} prompt{'s' * (n != 1)} × {_count(langs, 'language')} × {_count(tasks, 'task')}"


def _count(values: Counter[str], noun: str) -> str:
    names = [name for name, _ in values.most_common()]
    text = f"{len(names)} {noun}{'s' * (len(names) != 1)}"
    return f"{text} ({', '.join(names)})" if 0 < len(names) <= 5 else text
