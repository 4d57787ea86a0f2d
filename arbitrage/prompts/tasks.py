"""The task taxonomy: what kind of instruction a prompt is.

Each task has a description (used when a writer model synthesises the prompt) and
a few templates (used by the model-free ``template`` writer). Templates are our
own; ``{persona}`` is the persona sentence.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Task:
    """A kind of instruction."""

    name: str
    description: str
    templates: tuple[str, ...]


_ME = "About me: {persona}\n\n"

TASKS: dict[str, Task] = {
    t.name: t
    for t in [
        Task(
            "open_qa",
            "an open-ended question that asks for an explanation or factual answer",
            (
                _ME + "Explain one idea from my field that I should understand better, "
                "with a concrete example.",
                _ME + "What is the most useful thing I could learn this year, and why?",
            ),
        ),
        Task(
            "brainstorming",
            "a request to brainstorm several distinct ideas",
            (
                _ME + "List five practical ideas that would make my daily work easier.",
                _ME + "Brainstorm four names, each with a one-line pitch, for a small side "
                "project I could start.",
            ),
        ),
        Task(
            "creative_writing",
            "a creative writing request (poem, story, letter or dialogue)",
            (
                _ME + "Write a short poem of at most eight lines about my everyday life.",
                _ME + "Write a 120-word story about an ordinary morning in my life.",
            ),
        ),
        Task(
            "coding",
            "a programming task with a clear, checkable goal",
            (
                _ME + "Write a short Python function that would help me with a routine task, "
                "and explain it in two sentences.",
                _ME + "Write a Python script that keeps a simple log of my daily activities "
                "in a CSV file.",
            ),
        ),
        Task(
            "math",
            "a math word problem with a single numeric answer",
            (
                _ME + "Write and solve a short word problem about my daily life. Show the "
                "steps and give the final number.",
                _ME + "I buy 3 items at 4.50 each and 2 items at 7.25 each. How much do I "
                "spend in total? Show your steps.",
            ),
        ),
        Task(
            "extraction",
            "a request to extract or summarise structured information from a given text",
            (
                "Extract the occupation, the place and the main interest from this "
                'description and return them as JSON: "{persona}"',
                'Summarise this description in one sentence of at most 12 words: "{persona}"',
            ),
        ),
        Task(
            "classification",
            "a request to classify a given text into labels and justify the choice",
            (
                "Classify the sector of this person as one of: health, education, "
                "technology, agriculture, arts, trade, public service, other. Justify in "
                'one sentence: "{persona}"',
                "Is the following description more about work or about a hobby? Answer "
                'with one word, then explain briefly: "{persona}"',
            ),
        ),
        Task(
            "reasoning",
            "a multi-step reasoning problem that needs careful thinking",
            (
                _ME + "I have three tasks due tomorrow and time for only two. Reason step "
                "by step about how I should decide which one to drop.",
                _ME + "Think step by step: what are the three biggest risks in a typical "
                "week of mine, and which should I address first?",
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
    from arbitrage.errors import ConfigError
    from arbitrage.registry import closest_hint

    if name not in TASKS:
        raise ConfigError(f"unknown task {name!r}{closest_hint(name, TASKS)}")
    return TASKS[name]
