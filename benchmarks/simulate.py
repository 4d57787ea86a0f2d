"""A documented simulation of a fully scored run, for router benchmarks and tests.

Teacher quality genuinely differs by language × task: each teacher has a base
skill, a per-language strength and a per-task strength; a prompt's reward for a
teacher is that cell mean plus the prompt's own difficulty (shared by all
teachers) plus teacher-specific noise, clipped to [0, 1]. A small fraction of
answers is truncated (no reward). Every teacher answers every prompt, as after a
``reward``-routed run, so any router can be replayed on it.
"""

from __future__ import annotations

import random
from collections.abc import Sequence

from arbitrage.records import Candidate, Generation, Outcome, Prompt, Usage, pick_winner


def simulated_outcomes(
    n_prompts: int = 600,
    teachers: Sequence[str] = ("multi", "regional", "mono"),
    languages: Sequence[str] = ("en", "fr", "sw", "hi"),
    tasks: Sequence[str] = ("open_qa", "coding", "math", "creative_writing"),
    *,
    seed: int = 0,
    noise: float = 0.08,
    difficulty: float = 0.1,
    truncation_rate: float = 0.02,
    cost_per_call: Sequence[float] = (0.002, 0.001, 0.0005),
) -> list[Outcome]:
    """Outcomes where every teacher answered every prompt, with simulated rewards."""
    rng = random.Random(seed)
    means: dict[tuple[str, str, str], float] = {}
    for t in teachers:
        base = rng.uniform(0.45, 0.6)
        lang_skill = {lang: rng.uniform(-0.2, 0.2) for lang in languages}
        task_skill = {task: rng.uniform(-0.1, 0.1) for task in tasks}
        for lang in languages:
            for task in tasks:
                means[(t, lang, task)] = base + lang_skill[lang] + task_skill[task]
    order = list(teachers)
    outcomes = []
    for i in range(n_prompts):
        lang, task = rng.choice(languages), rng.choice(tasks)
        prompt = Prompt(text=f"simulated prompt {i}", language=lang, task=task)
        hardness = rng.gauss(0.0, difficulty)
        cands = []
        for t, cost in zip(teachers, cost_per_call, strict=True):
            truncated = rng.random() < truncation_rate
            reward = min(1.0, max(0.0, means[(t, lang, task)] + hardness + rng.gauss(0.0, noise)))
            gen = Generation(
                prompt_id=prompt.id,
                teacher=t,
                model=f"sim/{t}",
                text=f"answer of {t}",
                finish_reason="length" if truncated else "stop",
                usage=Usage(prompt_tokens=50, completion_tokens=200),
                cost_usd=cost,
            )
            cands.append(Candidate(gen, None if truncated else round(reward, 4)))
        cand_tuple = tuple(cands)
        outcomes.append(Outcome(prompt, cand_tuple, pick_winner(cand_tuple, order), "all"))
    return outcomes
