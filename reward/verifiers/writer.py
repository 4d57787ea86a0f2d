"""Tests for coding prompts, written by the pool's writer model (``pool.write_tests``).

The writer gets the task and is asked for ``assert`` statements a correct solution must
pass, calling only what the task itself names. What comes back is read tolerantly: the
``assert`` lines of its reply (fenced or not) that parse as Python, at most ``MAX_TESTS``;
a reply of ``NONE``, a failed call or no parsable assert gives the prompt no tests (its
answers are then not scored by ``code``). The tests are the writer's guess at the right
behaviour, not ground truth: a wrong test fails every answer alike, so the ``code``
reward stops telling answers apart on that prompt rather than rewarding a wrong one.
"""

from __future__ import annotations

import ast
import asyncio
import re
from collections.abc import Sequence
from dataclasses import replace
from typing import Protocol

from arbitrage.records import Generation, Prompt

MAX_TESTS = 5
#: Tasks whose prompts get tests.
CODE_TASKS = frozenset({"coding"})

_ASK = """\
Here is a programming task that will be given to an AI assistant:

[Task]
{task}
[End of task]

Write 3 to {n} tests that any correct Python solution must pass: Python `assert` \
statements, one per line, in a single ```python block, with nothing else. Call only the \
functions or classes the task itself names, with the names it gives, and test behaviour \
the task states. If the task names no function or class to call, reply with NONE."""


class Writer(Protocol):
    """What writes the tests: a teacher (``arbitrage.calls.teachers.Teacher``) or anything with
    its ``acomplete``."""

    name: str

    async def acomplete(
        self, messages: list[dict[str, str]], *, prompt_id: str = "", max_tokens: int | None = None
    ) -> Generation: ...


def tests_request(prompt: Prompt) -> list[dict[str, str]]:
    """The request the writer gets for ``prompt``'s tests."""
    return [{"role": "user", "content": _ASK.format(task=prompt.text, n=MAX_TESTS)}]


def parse_tests(reply: str) -> list[str]:
    """The ``assert`` statements of a writer's reply that parse, at most ``MAX_TESTS``."""
    if reply.strip().upper().startswith("NONE"):
        return []
    tests = []
    for line in reply.splitlines():
        line = line.strip()
        if not re.match(r"assert\b", line):
            continue
        try:
            tree = ast.parse(line)
        except SyntaxError:
            continue
        if len(tree.body) == 1 and isinstance(tree.body[0], ast.Assert) and line not in tests:
            tests.append(line)
    return tests[:MAX_TESTS]


async def awrite_tests(
    prompts: Sequence[Prompt], writer: Writer, *, max_tokens: int = 400
) -> list[Prompt]:
    """``prompts`` with tests from ``writer`` added to each coding prompt that has none;
    ``meta["tests_by"]`` names the writer where it gave some."""
    todo = [i for i, p in enumerate(prompts) if p.task in CODE_TASKS and not p.tests]
    gens = await asyncio.gather(
        *(
            writer.acomplete(
                tests_request(prompts[i]), prompt_id=f"{prompts[i].id}:tests", max_tokens=max_tokens
            )
            for i in todo
        )
    )
    out = list(prompts)
    for i, gen in zip(todo, gens, strict=True):
        tests = parse_tests(gen.text) if gen.ok else []
        if tests:
            meta = {**out[i].meta, "tests_by": writer.name}
            out[i] = replace(out[i], tests=list(tests), meta=meta)
    return out
