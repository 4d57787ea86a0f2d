"""Fusion: one teacher writes a prompt's answer from its best candidates.

    candidates (every teacher, every sample) ─► top_k by reward ─► the fuser
        ─► one answer ─► the run's reward ─► kept if it beats the best candidate
           (``keep: better``) or whenever it could be scored (``keep: always``)

The fuser is a configured teacher (``fusion.model`` names it), so its calls go through
that teacher's call path: cache, budget, breaker, limits and retries. The loop
(``arbitrage.pipeline``) starts a prompt's fusion once its last round of answers is
scored, and scores the fused answer in the fixed order of commits, so fusion keeps a
run's result independent of latencies. A prompt with fewer than two scored candidates
is not fused (there is nothing to combine).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Literal, Protocol

from arbitrage.records import Candidate, Fusion, Generation, Outcome, Prompt

if TYPE_CHECKING:
    from arbitrage.config import RunConfig

Keep = Literal["better", "always"]

#: What the fuser is asked; ``{question}``, ``{n}`` and ``{candidates}`` are filled in.
#: Written for this project: the fuser is told to check disagreements rather than vote,
#: to answer in the question's language and format, and to write only the answer (a
#: fused answer that talks about "the candidates" is no training row).
FUSE_TEMPLATE = """\
Below are a question and {n} draft answers to it, written independently. Write the \
one best answer to the question.

How to write it:
- Use what the drafts get right: correct facts, working steps, useful details. \
Leave out what is wrong, repeated or beside the point.
- Where the drafts disagree, work out which one is right; do not just follow the \
majority, and do not copy a mistake they share.
- Reply in the language of the question and in any format it asks for (a number, \
code, a list, a length).
- Write only the answer itself, addressed to whoever asked the question. Do not \
mention the drafts, and do not say that you compared or combined anything.

Question:
<<<
{question}
>>>

{candidates}

Your answer:"""


class Completes(Protocol):
    """What the fuser needs of a teacher: ``Teacher.acomplete``."""

    name: str

    async def acomplete(
        self, messages: list[dict[str, str]], *, prompt_id: str = "", max_tokens: int | None = None
    ) -> Generation: ...


def fusion_messages(prompt: Prompt, sources: Sequence[Candidate]) -> list[dict[str, str]]:
    """The fuser's chat messages for ``prompt`` and its ``sources``, best first."""
    drafts = "\n\n".join(
        f"Draft {i}:\n<<<\n{c.generation.text}\n>>>" for i, c in enumerate(sources, 1)
    )
    text = FUSE_TEMPLATE.format(n=len(sources), question=prompt.text, candidates=drafts)
    return [{"role": "user", "content": text}]


def top_candidates(
    candidates: Sequence[Candidate], order: Sequence[str], top_k: int
) -> list[Candidate]:
    """The ``top_k`` best scored candidates, best first (ties: config order, then the
    lower sample)."""
    rank = {name: i for i, name in enumerate(order)}
    scored = [c for c in candidates if c.scored]
    scored.sort(key=lambda c: (-float(c.reward), rank.get(c.teacher, len(rank)), c.sample))  # type: ignore[arg-type]
    return scored[:top_k]


def source_rows(sources: Sequence[Candidate]) -> tuple[dict[str, Any], ...]:
    """The provenance of a fusion's sources (``fused_from`` in the mixture)."""
    return tuple({"teacher": c.teacher, "sample": c.sample, "reward": c.reward} for c in sources)


def decide(fused: Candidate, sources: Sequence[Candidate], keep: Keep) -> Fusion:
    """The ``Fusion`` record: kept when the fused answer was scored and beats the best
    source's reward (``better``, a tie keeps the source), or was scored (``always``)."""
    best = max((float(c.reward) for c in sources if c.reward is not None), default=None)
    kept = fused.scored and (
        keep == "always" or best is None or float(fused.reward) > best  # type: ignore[arg-type]
    )
    return Fusion(fused, source_rows(sources), best, kept)


class Fuser:
    """Asks ``teacher`` for one answer fused from a prompt's ``top_k`` best candidates.

    Args:
        teacher: The fusing teacher (its call path: cache, budget, retries).
        top_k: How many candidates it is shown (at least 2).
        keep: ``better`` or ``always`` (see ``decide``).
    """

    def __init__(self, teacher: Completes, *, top_k: int = 3, keep: Keep = "better") -> None:
        self.teacher = teacher
        self.top_k = top_k
        self.keep = keep

    def sources(self, candidates: Sequence[Candidate], order: Sequence[str]) -> list[Candidate]:
        """What would be fused: the top candidates, or ``[]`` with fewer than two."""
        top = top_candidates(candidates, order, self.top_k)
        return top if len(top) >= 2 else []

    async def afuse(self, prompt: Prompt, sources: Sequence[Candidate]) -> Generation:
        """The fused answer (a ``Generation`` of the fuser, failed calls included).

        Raises:
            TeacherUnavailable, BudgetExceeded: as the teacher's calls do.
        """
        return await self.teacher.acomplete(fusion_messages(prompt, sources), prompt_id=prompt.id)

    def decide(self, fused: Candidate, sources: Sequence[Candidate]) -> Fusion:
        """``decide`` with this fuser's ``keep``."""
        return decide(fused, sources, self.keep)


def make_fuser(config: RunConfig, teachers: Sequence[Completes]) -> Fuser | None:
    """The run's fuser (``fusion`` config), over the teacher it names; ``None`` if off."""
    cfg = config.fusion
    if cfg is None:
        return None
    teacher = next(t for t in teachers if t.name == cfg.model)  # config checked the name
    return Fuser(teacher, top_k=cfg.top_k, keep=cfg.keep)


def fusion_summary(outcomes: Sequence[Outcome]) -> dict[str, Any]:
    """``report.json`` ``fusion``: how many prompts were fused, how often the fused answer
    won (beat the best candidate) and was kept, and by how much, in reward units.

    ``won``: fused answers scored above the best candidate; ``mean_gain``: over the
    fused answers that were scored, the fused reward minus the best candidate's (negative:
    fusion lost on average); ``mean_gain_when_won``: the same over the wins only.
    """
    fused = kept = failed = 0
    gains: list[float] = []
    costs: list[float] = []
    for outcome in outcomes:  # one pass, keeping numbers only: a fusion holds its answer
        fusion = outcome.fusion
        if fusion is None:
            continue
        fused += 1
        kept += fusion.kept
        failed += not fusion.candidate.generation.ok
        costs.append(fusion.candidate.generation.cost_usd)
        if fusion.gain is not None:
            gains.append(fusion.gain)
    won = [g for g in gains if g > 0]
    return {
        "prompts": len(outcomes),
        "fused": fused,
        "scored": len(gains),
        "won": len(won),
        "kept": kept,
        "win_rate": round(len(won) / len(gains), 4) if gains else None,
        "mean_gain": round(sum(gains) / len(gains), 6) if gains else None,
        "mean_gain_when_won": round(sum(won) / len(won), 6) if won else None,
        "cost_usd": round(sum(costs), 6),
        "failed": failed,
    }
