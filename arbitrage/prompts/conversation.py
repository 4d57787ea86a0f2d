"""Multi-turn conversations: a user simulator writes each follow-up, the loop answers it.

A conversation is a sequence of turn-prompts. Turn 1 is a pool prompt. Once every
turn-``t`` prompt has been through the loop, the simulator (a configured model, on
the one call path) writes, as the prompt's persona, the user's next message to each
conversation whose turn ``t`` has a winner; that message, after the conversation so
far (``meta["history"]``: every turn's user message and the answer that won it), is a
new ``Prompt`` with an id derived from the conversation and the turn, and it goes
through the same windows, routing, reward and learning as any prompt::

    pool ─► loop (turn 1) ─► simulator ─► turns.jsonl ─► loop (turn 2) ─► ... turn N

Teachers see the whole conversation (``Prompt.messages``), and rewards score an answer
in context (``Prompt.instruction``). With ``route: first`` a later turn is pinned to
the teacher that won the conversation's first turn; with ``every`` it is routed and
arbitrated like a first turn.

Determinism: turn ``t + 1`` starts when turn ``t`` is committed, its prompts are in the
order of their conversations in the pool, and a follow-up depends only on its own
conversation (its simulator call is seeded by the new prompt's id), so the same config
gives the same mixture whatever the latencies.

Resume: each follow-up is appended to ``turns.jsonl`` before it is answered, and each
answered turn to ``outcomes.jsonl`` as any prompt is; a rerun skips what is there and
asks the simulator only for follow-ups that were never written.

The mixture's row of a conversation is its deepest turn that has a winner: its
``messages`` hold the whole conversation. Every turn with two or more scored answers
gives a preference pair whose prompt is the shared history (``arbitrage.outputs.preference``).
"""

from __future__ import annotations

import asyncio
from collections import Counter, deque
from collections.abc import AsyncGenerator, AsyncIterator, Collection, Iterable, Iterator, Sequence
from contextlib import aclosing
from typing import TYPE_CHECKING, Any

from arbitrage.config import ConversationConfig, RunConfig
from arbitrage.languages import name as language_name
from arbitrage.records import Outcome, Prompt, content_id

if TYPE_CHECKING:
    from arbitrage.calls.budget import Budget
    from arbitrage.calls.cache import CallCache
    from arbitrage.calls.teachers import Teacher
    from arbitrage.pipeline import Arbitrage
    from arbitrage.rundir import RunDir

SIMULATOR_PROMPT = """\
Below is a conversation between a person and an AI assistant.

The person: {persona}

{conversation}

Write the person's next message to the assistant, in {language}. It is a natural \
follow-up to the assistant's last answer, as this person would write it: a question \
about a detail, a request to go further or to change something, a correction, or a \
related question. Write only the message, at most three sentences, in the person's \
own words: do not repeat the assistant, do not answer for it, no label, no quotation \
marks."""

_LABELS = ("person:", "user:", "me:", "message:", "next message:", "follow-up:", "you:")
_ECHO_CHARS = 24  # a message at least this long that the conversation already holds is an echo


def turns_of(config: RunConfig) -> int:
    """The turns of each conversation (1: single-turn prompts, no conversation)."""
    return config.conversation.turns if config.conversation is not None else 1


def turn_of(prompt: Prompt) -> int:
    """The turn a prompt is (1 for a pool prompt)."""
    return int(prompt.meta.get("turn", 1))


def conversation_of(prompt: Prompt) -> str:
    """The conversation a prompt belongs to: the id of its first turn."""
    return str(prompt.meta.get("conversation", prompt.id))


def simulator_messages(parent: Outcome) -> list[dict[str, str]]:
    """The simulator's request after ``parent`` (a turn with a winner): who the user is,
    the conversation so far, and what to write."""
    prompt = parent.prompt
    best = parent.best
    assert best is not None
    said = [*prompt.messages(), {"role": "assistant", "content": best.generation.text}]
    conversation = "\n\n".join(
        f"{'Person' if m['role'] == 'user' else 'Assistant'}: {m['content']}" for m in said
    )
    text = SIMULATOR_PROMPT.format(
        persona=prompt.persona or "an ordinary user",
        conversation=conversation,
        language=language_name(prompt.language),
    )
    return [{"role": "user", "content": text}]


def clean_message(text: str) -> str:
    """The user's message in a simulator's reply: labels, quotes and any dialogue the
    model went on to write (an ``Assistant:`` line) cut off; ``""`` when nothing is left."""
    text = text.strip()
    lowered = text.lower()
    for label in ("assistant:", "assistant (", "\nai:"):
        cut = lowered.find(label, 1)
        if cut > 0:
            text, lowered = text[:cut].strip(), lowered[:cut].strip()
    for _ in range(2):
        for label in _LABELS:
            if lowered.startswith(label) or lowered.startswith(f"**{label}"):
                text = text[len(label) + (2 if lowered.startswith("**") else 0) :]
                text = text.lstrip("* ").strip()
                lowered = text.lower()
    return text.strip().strip('"“”«»').strip()


def echoes(message: str, parent: Outcome) -> bool:
    """Whether ``message`` only repeats the conversation (a small simulator copying the
    assistant's answer or an earlier turn): its start is already there, word for word."""
    words = " ".join(message.lower().split())
    if len(words) < _ECHO_CHARS:
        return False
    best = parent.best
    said = [
        *parent.prompt.messages(),
        *([] if best is None else [{"content": best.generation.text}]),
    ]
    return any(words[:60] in " ".join(m["content"].lower().split()) for m in said)


def follow_up(parent: Outcome, text: str, route: str) -> Prompt:
    """Turn ``t + 1`` of ``parent``'s conversation: the user's ``text`` after the
    conversation so far. ``route: first`` pins it to the conversation's first winner."""
    prompt = parent.prompt
    best = parent.best
    assert best is not None and parent.winner is not None
    conversation = conversation_of(prompt)
    turn = turn_of(prompt) + 1
    meta: dict[str, Any] = {
        k: v for k, v in prompt.meta.items() if k not in ("history", "pin", "parent")
    }
    meta.update(
        conversation=conversation,
        turn=turn,
        parent=prompt.id,
        history=[*prompt.messages(), {"role": "assistant", "content": best.generation.text}],
    )
    if route == "first":
        meta["pin"] = prompt.meta.get("pin") or parent.winner
    return Prompt(
        text=text,
        language=prompt.language,
        task=prompt.task,
        persona=prompt.persona,
        id=content_id(conversation, "turn", str(turn)),
        meta=meta,
    )


def final_turns(outcomes: Iterable[Outcome]) -> list[Outcome]:
    """One outcome per conversation, in the order of their first turns: the deepest turn
    that has a winner (its ``messages`` are the whole conversation), else the first.
    Single-turn outcomes come back as they are."""
    outcomes = list(outcomes)
    picks = final_turn_indices(outcomes)
    return outcomes if picks is None else [outcomes[i] for i in picks]


def final_turn_indices(outcomes: Sequence[Outcome]) -> list[int] | None:
    """``final_turns`` as positions in ``outcomes``, or ``None`` when no outcome is a turn
    (every one stays). Two passes over ``outcomes`` at most, keeping three small values
    a conversation, none for a single-turn run."""
    if not any("turn" in o.prompt.meta for o in outcomes):
        return None
    picked: dict[str, tuple[int, int, bool]] = {}  # conversation → (position, turn, won)
    for i, outcome in enumerate(outcomes):
        prompt = outcome.prompt
        key, turn, won = conversation_of(prompt), turn_of(prompt), outcome.best is not None
        held = picked.get(key)
        if held is None or (won and (not held[2] or turn > held[1])):
            picked[key] = (i, turn, won)
    return [i for i, _, _ in picked.values()]


def make_simulator(
    config: RunConfig, *, cache: CallCache | None = None, budget: Budget | None = None
) -> Teacher:
    """The simulator, on the one call path: the run's cache and budget, its own breaker
    and limits."""
    from arbitrage.calls.breaker import CircuitBreaker
    from arbitrage.calls.teachers import Teacher

    assert config.conversation is not None and config.conversation.simulator is not None
    sim = config.conversation.simulator
    brk = config.breaker
    return Teacher(
        sim,
        cache=cache,
        budget=budget,
        breaker=CircuitBreaker("simulator", failures=brk.failures, cooldown_s=brk.cooldown_s),
    )


def iter_run_prompts(run_dir: RunDir) -> Iterator[Prompt]:
    """Every prompt of a run directory: the pool, then its follow-up turns."""
    yield from run_dir.iter_prompts()
    yield from run_dir.iter_turns()


class Conversations:
    """Drives a run's turns through the loop (``astream``) and counts how each ended.

    Args:
        config: The ``conversation`` section.
        simulator: Writes the follow-ups (``make_simulator``).
        run_dir: The run directory (``arbitrage.rundir.RunDir``): the pool, the outcomes
            committed so far, ``turns.jsonl``.
        lookahead: Follow-ups written ahead of the loop's need for them.
    """

    def __init__(
        self,
        config: ConversationConfig,
        simulator: Teacher,
        run_dir: RunDir,
        *,
        lookahead: int | None = None,
    ) -> None:
        self.config = config
        self.simulator = simulator
        self.run_dir = run_dir
        self.lookahead = lookahead or 2 * simulator.config.max_concurrency
        self.ended: Counter[str] = Counter()
        self.written = 0

    async def astream(
        self, engine: Arbitrage, *, skip: Collection[str] = frozenset()
    ) -> AsyncGenerator[list[Outcome], None]:
        """Every committed window of every turn, turn after turn (``skip``: prompt ids
        already answered). The caller appends each window to ``outcomes.jsonl`` before
        asking for the next: a turn's follow-ups are read back from there."""
        order = [p.id for p in self.run_dir.iter_prompts()]
        async with aclosing(engine.astream(self.run_dir.iter_prompts(), skip=skip)) as stream:
            async for window in stream:
                yield window
        for turn in range(2, self.config.turns + 1):
            asked: list[str] = []
            source = self._follow_ups(order, turn, asked)
            async with aclosing(engine.astream(source, skip=skip)) as stream:
                async for window in stream:
                    yield window
            order = asked
            if not order:
                return

    def report(self) -> dict[str, Any]:
        """``report.json`` ``conversation``: turns, follow-ups written, conversations ended
        early and why."""
        return {
            "turns": self.config.turns,
            "route": self.config.route,
            "follow_ups_written": self.written,
            "ended_early": dict(self.ended),
            "simulator": self.simulator.stats.to_dict(),
        }

    async def _follow_ups(
        self, order: list[str], turn: int, asked: list[str]
    ) -> AsyncIterator[Prompt]:
        """Turn ``turn``'s prompts in their conversations' order (``order``: the ids of
        turn ``turn - 1``), each recorded in ``asked`` and ``turns.jsonl`` as it is handed
        on; the simulator is asked only for those not in ``turns.jsonl`` yet."""
        parents = {
            o.prompt.id: o for o in self.run_dir.iter_outcomes() if turn_of(o.prompt) == turn - 1
        }
        have = {p.meta["parent"]: p for p in self.run_dir.iter_turns() if turn_of(p) == turn}
        pending: deque[Prompt | asyncio.Task[Prompt | None]] = deque()
        try:
            for pid in order:
                parent = parents.get(pid)
                if parent is None or parent.best is None or parent.winner is None:
                    if parent is not None:
                        self.ended["no_winner"] += 1
                    continue
                if pid in have:
                    pending.append(have[pid])
                else:
                    pending.append(asyncio.ensure_future(self._write(parent)))
                while len(pending) > self.lookahead:
                    prompt = await self._take(pending.popleft())
                    if prompt is not None:
                        asked.append(prompt.id)
                        yield prompt
            while pending:
                prompt = await self._take(pending.popleft())
                if prompt is not None:
                    asked.append(prompt.id)
                    yield prompt
        finally:
            for item in pending:
                if isinstance(item, asyncio.Task):
                    item.cancel()

    async def _take(self, item: Prompt | asyncio.Task[Prompt | None]) -> Prompt | None:
        if isinstance(item, Prompt):
            return item
        prompt = await item
        if prompt is not None:
            self.run_dir.append_turn(prompt)
            self.written += 1
        return prompt

    async def _write(self, parent: Outcome) -> Prompt | None:
        """The follow-up to ``parent``, or ``None`` (the conversation ends: the simulator
        failed or wrote nothing)."""
        key = content_id(conversation_of(parent.prompt), "turn", str(turn_of(parent.prompt) + 1))
        gen = await self.simulator.acomplete(simulator_messages(parent), prompt_id=key)
        if gen.status not in ("ok", "truncated"):
            self.ended[f"simulator_{gen.status}"] += 1
            return None
        text = clean_message(gen.text)
        if not text or echoes(text, parent):
            self.ended["simulator_empty" if not text else "simulator_echo"] += 1
            return None
        return follow_up(parent, text, self.config.route)


def conversations_for(
    config: RunConfig, run_dir: RunDir, *, cache: CallCache | None, budget: Budget | None
) -> Conversations | None:
    """The run's conversations, or ``None`` for a single-turn run."""
    if config.conversation is None or config.conversation.turns < 2:
        return None
    return Conversations(
        config.conversation, make_simulator(config, cache=cache, budget=budget), run_dir
    )
