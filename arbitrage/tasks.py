"""The task taxonomy: what kind of instruction a prompt is.

Each task has a description (used when a writer model synthesises the prompt) and
a few templates (used by the model-free ``template`` writer). Templates are our
own; ``{persona}`` is the persona sentence, ``{persona_lc}`` the same with a
lower-case first letter and no final full stop.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Task:
    """A kind of instruction."""

    name: str
    description: str
    templates: tuple[str, ...]


TASKS: dict[str, Task] = {
    t.name: t
    for t in [
        Task(
            "open_qa",
            "an open-ended question that asks for an explanation or factual answer",
            (
                "I am {persona_lc}. Explain one idea from my field that I should understand "
                "better, with a concrete example.",
                "Imagine you are advising {persona_lc}. What is the most useful thing they could "
                "learn this year, and why?",
            ),
        ),
        Task(
            "brainstorming",
            "a request to brainstorm several distinct ideas",
            (
                "List five practical ideas that would make daily work easier for {persona_lc}.",
                "Brainstorm four names and one-line pitches for a small project started by "
                "{persona_lc}.",
            ),
        ),
        Task(
            "creative_writing",
            "a creative writing request (poem, story, letter or dialogue)",
            (
                "Write a short poem of at most eight lines in the voice of {persona_lc}.",
                "Write a 120-word story about an ordinary morning of {persona_lc}.",
            ),
        ),
        Task(
            "coding",
            "a programming task with a clear, checkable goal",
            (
                "Write a short Python function that would help {persona_lc} with a routine "
                "task, and explain it in two sentences.",
                "{persona} Write a Python script that keeps a simple log of their daily "
                "activities in a CSV file.",
            ),
        ),
        Task(
            "math",
            "a math word problem with a single numeric answer",
            (
                "Write and solve a short word problem about the daily life of {persona_lc}. "
                "Show the steps and give the final number.",
                "{persona} They buy 3 items at 4.50 each and 2 items at 7.25 each. How much do "
                "they spend in total? Show your steps.",
            ),
        ),
        Task(
            "extraction",
            "a request to extract or summarise structured information from a given text",
            (
                "Extract the occupation, the place and the main interest from this description "
                'and return them as JSON: "{persona}"',
                'Summarise this description in one sentence of at most 12 words: "{persona}"',
            ),
        ),
        Task(
            "classification",
            "a request to classify a given text into labels and justify the choice",
            (
                "Classify the sector of this person as one of: health, education, technology, "
                "agriculture, arts, trade, public service, other. Justify in one sentence: "
                '"{persona}"',
                "Is the following description more about work or about a hobby? Answer with "
                'one word, then explain briefly: "{persona}"',
            ),
        ),
        Task(
            "reasoning",
            "a multi-step reasoning problem that needs careful thinking",
            (
                "{persona} They have three tasks due tomorrow and time for only two. Reason "
                "step by step about how they should decide which to drop.",
                "Think step by step: what are the three biggest risks in a typical week of "
                "{persona_lc} and which one should they address first?",
            ),
        ),
        Task(
            "rewriting",
            "a request to rewrite a given text in another style or register",
            (
                'Rewrite this description in a formal register, then in a casual one: "{persona}"',
                'Rewrite this sentence so that a ten-year-old would understand it: "{persona}"',
            ),
        ),
    ]
}


def check_task(name: str) -> Task:
    """The task called ``name``; raises ``ConfigError`` naming the closest task."""
    from arbitrage.config import closest_hint
    from arbitrage.errors import ConfigError

    if name not in TASKS:
        raise ConfigError(f"unknown task {name!r}{closest_hint(name, TASKS)}")
    return TASKS[name]
