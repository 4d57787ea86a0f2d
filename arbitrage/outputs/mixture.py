"""The SFT mixture: one row per prompt whose winning answer passes the filters, balanced by quotas.

    outcomes ─► winner rows ─► answer checks ─► language fidelity ─► decontamination
             ─► near-duplicates ─► per-language / per-task caps ─► teacher share cap
             ─► row targets ─► rows (+ preference pairs)

Every row that does not make it is counted with the first reason it failed
(``arbitrage.outputs.filters.REASONS``). Rows keep pool order.
"""

from __future__ import annotations

import math
import sys
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from arbitrage.config import MixtureConfig
from arbitrage.outputs.filters import answer_check, fidelity_of, near_duplicates
from arbitrage.outputs.kept import Kept, RowMeta
from arbitrage.outputs.tables import to_dataset
from arbitrage.prompts.conversation import final_turn_indices
from arbitrage.records import Outcome
from arbitrage.run_outcomes import OutcomeRows, subset
from reward.verifiers.basis import basis

if TYPE_CHECKING:
    from datasets import Dataset


def mixture_row(outcome: Outcome) -> dict[str, Any] | None:
    """The dataset row for an outcome, or ``None`` if no answer won (nothing usable)."""
    best = outcome.best
    if best is None:
        return None
    prompt = outcome.prompt
    return {
        "messages": [
            *prompt.messages(),  # a conversation's turns before this one, if any
            {"role": "assistant", "content": best.generation.text},
        ],
        "prompt_id": prompt.id,
        "persona": prompt.persona,
        "language": prompt.language,
        "task": prompt.task,
        "teacher": best.teacher,
        "model": best.generation.model,
        "reward": float(best.reward if best.reward is not None else 0.0),
        "routed_by": outcome.routed_by,
        "basis": basis(best.reward_details),  # what the reward rested on: reward.verifiers.basis
        "candidates": [
            {
                "teacher": c.teacher,
                "reward": c.reward,
                "status": c.generation.status,
                "sample": c.sample,
            }
            for c in outcome.candidates
        ],
        "sample": best.sample,
        # a kept fused answer's sources, best first; [] when the answer is one teacher's
        "fused_from": _fused_from(outcome),
    }


def _fused_from(outcome: Outcome) -> list[dict[str, Any]]:
    fusion = outcome.fusion
    return list(fusion.sources) if fusion is not None and fusion.kept else []


@dataclass
class Mixture:
    """The kept SFT rows, the preference pairs, and why everything else was dropped.

    ``rows`` and ``pairs`` are made again from the outcomes each time they are read
    (``arbitrage.run_outcomes.OutcomeRows``): a mixture holds the dropped rows and a
    ``RowMeta`` a kept row (``kept()``, ``arbitrage.outputs.kept``), never the texts.
    """

    rows: Sequence[dict[str, Any]]
    pairs: Sequence[dict[str, Any]]
    dropped: list[dict[str, str]]
    pairs_dropped: Counter[str]
    outcomes: int
    config: MixtureConfig
    shortfall: dict[str, int] = field(default_factory=dict)
    #: per eval set of ``decontaminate``: its items, and those too short to match
    eval_sets: dict[str, dict[str, int]] = field(default_factory=dict)

    def kept(self) -> Sequence[RowMeta]:
        """Each row's ``RowMeta``, in row order, without making the rows."""
        if isinstance(self.rows, MixtureRows):
            return self.rows.meta
        return Kept(RowMeta.of(-1, row) for row in self.rows)

    def sft(self) -> Dataset:
        """The rows as an HF ``Dataset`` (``messages`` column: TRL's SFTTrainer loads it as is)."""
        return rows_to_dataset(self.rows)

    def preference(self) -> Dataset:
        """The pairs as an HF ``Dataset`` in TRL's conversational preference format."""
        from arbitrage.outputs.preference import pairs_to_dataset

        return pairs_to_dataset(self.pairs)

    def contaminated(self) -> dict[str, int]:
        """Rows dropped as ``contaminated``, per eval set (every configured set listed)."""
        hits = Counter(d.get("eval_set", "") for d in self.dropped if d["reason"] == "contaminated")
        return {name: hits.get(name, 0) for name in self.eval_sets} | dict(hits)

    def counts(self) -> dict[str, Any]:
        """Rows kept and dropped (by reason), pairs, and rows per language × task × teacher."""
        cells = Counter((m.language, m.task, m.teacher) for m in self.kept())
        return {
            "outcomes": self.outcomes,
            "rows": len(self.rows),
            "dropped": dict(Counter(d["reason"] for d in self.dropped)),
            "pairs": len(self.pairs),
            "pairs_dropped": dict(self.pairs_dropped),
            "shortfall": self.shortfall,
            "contaminated": self.contaminated(),
            "eval_sets": self.eval_sets,
            "by_cell": [
                {"language": lang, "task": task, "teacher": teacher, "rows": n}
                for (lang, task, teacher), n in sorted(cells.items())
            ],
        }


def make_mixture(
    outcomes: Sequence[Outcome],
    config: MixtureConfig | None = None,
    *,
    teacher_order: Sequence[str] = (),
    fidelity: Callable[[str, str], float] | None = None,
    targets: int | Mapping[str, int] | None = None,
) -> Mixture:
    """Filter, deduplicate and balance the winners of ``outcomes``; build preference pairs.

    ``outcomes`` is read in a few passes (one more for decontamination and one for
    near-duplicates, which read the kept rows' texts); what is kept of it is a
    ``RowMeta`` a row (``Kept``: by column) and each dropped row, so a run's
    ``RunOutcomes`` is never held in memory. The mixture's rows and pairs read it again.

    Args:
        outcomes: A run's outcomes, in pool order.
        config: The ``mixture`` config section (default: ``MixtureConfig()``).
        teacher_order: Breaks ties when the teacher-share cap trims rows.
        fidelity: ``(text, language) -> [0, 1]`` for answers whose reward carries no
            ``language_fidelity`` detail (default: ``reward.fidelity.language_fidelity``).
        targets: The run's ``target_rows``: rows past a target (a total, or per
            ``"<language>/<task>"``) are dropped as ``over_target``, latest in pool order.
    """
    from arbitrage.outputs.preference import build_pairs

    cfg = config or MixtureConfig()
    dropped: list[dict[str, str]] = []
    reasons: dict[str, str] = {}  # prompt id → why its row was filtered (before quotas)

    def drop(
        prompt_id: str, language: str, task: str, teacher: str, reason: str, **extra: str
    ) -> None:
        reasons[prompt_id] = reason
        dropped.append(
            {
                "prompt_id": prompt_id,
                "language": sys.intern(language),
                "task": sys.intern(task),
                "teacher": sys.intern(teacher),
                "reason": reason,
                **extra,
            }
        )

    def drop_rows(rows: Kept, reason: str, extra: Sequence[dict[str, str]] = ()) -> None:
        """Drop ``rows`` (``extra``: more keys for each), their prompt ids read again
        from ``outcomes``, in one pass."""
        more = iter(extra)
        for meta, prompt_id in zip(rows, _ids(outcomes, rows.position), strict=True):
            drop(prompt_id, meta.language, meta.task, meta.teacher, reason, **next(more, {}))

    def live_rows() -> Iterator[dict[str, Any]]:
        return iter(OutcomeRows(outcomes, live.position, _row))

    def winners(found: Iterable[tuple[int, Outcome]]) -> tuple[Kept, bool]:
        """The rows whose answer passes the answer checks, and whether an outcome was a
        turn of a conversation."""
        live = Kept()
        turns = False
        for i, outcome in found:
            prompt = outcome.prompt
            turns = turns or "turn" in prompt.meta
            row = mixture_row(outcome)
            best = outcome.best
            if row is None or best is None:
                drop(prompt.id, prompt.language, prompt.task, "", "no_winner")
                continue
            text = best.generation.text
            reason = best.generation.status if not best.generation.ok else None
            reason = reason or answer_check(
                text,
                finish_reason=best.generation.finish_reason,
                min_chars=cfg.min_chars,
                max_chars=cfg.max_chars,
                refusals=cfg.drop_refusals,
                boilerplate=cfg.drop_boilerplate,
            )
            if reason is None and cfg.min_language_fidelity is not None:
                score = fidelity_of(text, prompt.language, best.reward_details, fidelity)
                if score < cfg.min_language_fidelity:
                    reason = "language"
            if reason is not None:
                drop(prompt.id, prompt.language, prompt.task, best.teacher, reason)
                continue
            live.append(RowMeta.of(i, row))
        return live, turns

    live, turns = winners(enumerate(outcomes))
    positions: Sequence[int] = range(len(outcomes))
    if turns:  # a conversation's row is its deepest turn with a winner: those, again
        dropped.clear()
        reasons.clear()
        positions = final_turn_indices(outcomes) or []
        live, _ = winners(zip(positions, subset(outcomes, positions), strict=True))

    eval_sets: dict[str, dict[str, int]] = {}
    if cfg.decontaminate:
        from arbitrage.outputs.decontam import contaminated, load_indexes

        n = cfg.decontaminate_ngram
        indexes = load_indexes(cfg.decontaminate, n)
        eval_sets = {i.name: {"items": i.items, "short": i.short} for i in indexes}
        messages = ([m["content"] for m in row["messages"]] for row in live_rows())
        sets = contaminated(messages, indexes, n)
        hit = [i for i, name in enumerate(sets) if name is not None]
        drop_rows(live.select(hit), "contaminated", [{"eval_set": sets[i] or ""} for i in hit])
        live = live.select(i for i, name in enumerate(sets) if name is None)

    # Near-duplicates: the higher-reward row of a duplicate set is the one kept. Each
    # kind's texts, from one pass; those too short to compare are never held.
    kinds = [k for k, on in (("prompt", cfg.dedup.prompts), ("answer", cfg.dedup.answers)) if on]
    short = cfg.dedup.min_chars
    sides: dict[str, list[str]] = {kind: [] for kind in kinds}
    for row in live_rows() if kinds else ():
        for kind in kinds:
            text = _side(row["messages"], kind)
            sides[kind].append(text if short == 0 or len(text.strip()) >= short else "")
    for kind in kinds:
        if not live:
            continue
        rewards, languages = live.reward, live.column("language")
        order = sorted(range(len(live)), key=lambda i: -rewards[i])
        texts = [sides[kind][i] for i in order]
        langs = [languages[i] for i in order]
        hits = near_duplicates(texts, langs, threshold=cfg.dedup.threshold, min_chars=short)
        del texts, langs, languages
        gone = {order[j] for j in hits}
        drop_rows(live.select(sorted(gone)), f"duplicate_{kind}")
        live = live.select(i for i in range(len(live)) if i not in gone)
        for other in kinds:
            sides[other] = [t for i, t in enumerate(sides[other]) if i not in gone]
    del sides

    pairs, pairs_dropped = build_pairs(
        outcomes, reasons, min_margin=cfg.preference_pairs.min_margin, order=teacher_order
    )
    if not cfg.preference_pairs.enabled:
        pairs, pairs_dropped = [], Counter()

    rows = live
    shortfall: dict[str, int] = {}
    for key, caps, reason in (
        ("language", cfg.per_language, "quota_language"),
        ("task", cfg.per_task, "quota_task"),
    ):
        if not caps:  # no cap: every row stays
            continue
        keep: set[int] = set()
        values = rows.column(key)
        for value, group in _group(range(len(rows)), values.__getitem__).items():
            cap = caps.get(value)
            if cap is None:
                keep.update(group)
                continue
            if len(group) < cap:
                shortfall[f"{key}:{value}"] = cap - len(group)
            keep.update(_balanced_pick(group, cap, rows))
        rows = _apply(rows, keep, reason, drop_rows)
    if cfg.max_share_per_teacher < 1.0:
        keep = _teacher_share(rows, cfg.max_share_per_teacher, teacher_order)
        rows = _apply(rows, keep, "quota_teacher", drop_rows)
    if targets is not None:
        rows = _apply(rows, _within_targets(rows, targets), "over_target", drop_rows)
    return Mixture(
        rows=MixtureRows(outcomes, rows),
        pairs=pairs,
        dropped=dropped,
        pairs_dropped=pairs_dropped,
        outcomes=len(positions),
        config=cfg,
        shortfall=shortfall,
        eval_sets=eval_sets,
    )


def _row(outcome: Outcome) -> dict[str, Any]:
    row = mixture_row(outcome)
    assert row is not None  # a kept row's outcome has a winner
    return row


def _side(messages: list[dict[str, str]], kind: str) -> str:
    """What near-duplicate removal compares: every user message (a conversation is a
    duplicate only if all its user turns are), or the last answer."""
    if kind == "answer":
        return messages[-1]["content"]
    return "\n".join(m["content"] for m in messages if m["role"] == "user")


def _within_targets(rows: Sequence[RowMeta], targets: int | Mapping[str, int]) -> set[int]:
    """The first rows (pool order) up to each target; rows of a cell without one stay."""
    if isinstance(targets, int):
        return set(range(min(targets, len(rows))))
    seen: Counter[str] = Counter()
    keep: set[int] = set()
    for i, row in enumerate(rows):
        cell = f"{row.language}/{row.task}"
        seen[cell] += 1
        if cell not in targets or seen[cell] <= targets[cell]:
            keep.add(i)
    return keep


def _group(indices: Iterable[int], key: Callable[[int], Any]) -> dict[Any, list[int]]:
    groups: defaultdict[Any, list[int]] = defaultdict(list)
    for i in indices:
        groups[key(i)].append(i)
    return dict(groups)


def _balanced_pick(indices: Sequence[int], k: int, rows: Sequence[RowMeta]) -> set[int]:
    """``k`` of ``indices``: round-robin over language × task × teacher cells, best reward first,
    so a cap thins every cell rather than emptying some."""
    cells = _group(indices, lambda i: (rows[i].language, rows[i].task, rows[i].teacher))
    queues = [sorted(g, key=lambda i: (-rows[i].reward, i)) for _, g in sorted(cells.items())]
    picked: set[int] = set()
    depth = 0
    while len(picked) < k and any(depth < len(q) for q in queues):
        for q in queues:
            if depth < len(q) and len(picked) < k:
                picked.add(q[depth])
        depth += 1
    return picked


def _teacher_share(rows: Sequence[RowMeta], share: float, order: Sequence[str]) -> set[int]:
    """The most rows such that no teacher holds more than ``share`` of them."""
    by_teacher = _group(range(len(rows)), lambda i: rows[i].teacher)
    if share >= 1.0 or not rows:
        return set(range(len(rows)))
    counts = {t: len(g) for t, g in by_teacher.items()}

    def cap(n: int) -> int:
        return math.floor(share * n + 1e-9)

    total = next(
        (n for n in range(len(rows), 0, -1) if sum(min(c, cap(n)) for c in counts.values()) >= n),
        0,
    )
    quota = {t: min(c, cap(total)) for t, c in counts.items()}
    rank = {t: i for i, t in enumerate(order)}
    while sum(quota.values()) > total:  # trim the largest quota; later-listed teachers first
        biggest = max(quota, key=lambda t: (quota[t], rank.get(t, len(rank))))
        quota[biggest] -= 1
    keep: set[int] = set()
    for teacher, group in by_teacher.items():
        keep.update(_balanced_pick(group, quota[teacher], rows))
    return keep


def _apply(rows: Kept, keep: set[int], reason: str, drop_rows: Callable[[Kept, str], None]) -> Kept:
    drop_rows(rows.select(i for i in range(len(rows)) if i not in keep), reason)
    return rows.select(i for i in range(len(rows)) if i in keep)


def _ids(outcomes: Sequence[Outcome], positions: Sequence[int]) -> list[str]:
    """The prompt ids of the outcomes at ``positions``, read in one ordered pass."""
    ordered = sorted(set(positions))
    found = dict(zip(ordered, OutcomeRows(outcomes, ordered, _prompt_id), strict=True))
    return [found[p] for p in positions]


def _prompt_id(outcome: Outcome) -> str:
    return outcome.prompt.id


class MixtureRows(OutcomeRows[dict[str, Any]]):
    """The mixture's rows (``mixture_row`` of each kept outcome, made when read) and
    their ``RowMeta`` (``meta``), which the counts and the card read instead."""

    def __init__(self, outcomes: Sequence[Outcome], meta: Kept) -> None:
        super().__init__(outcomes, meta.position, _row)
        self.meta = meta


def rows_to_dataset(rows: Sequence[dict[str, Any]]) -> Dataset:
    """SFT rows as an HF ``Dataset`` with a fixed schema (so an empty mixture still has columns)."""
    from datasets import Features, List, Value

    message = {"role": Value("string"), "content": Value("string")}
    candidate = {
        "teacher": Value("string"),
        "reward": Value("float64"),
        "status": Value("string"),
        "sample": Value("int64"),
    }
    source = {"teacher": Value("string"), "sample": Value("int64"), "reward": Value("float64")}
    features = Features(
        {
            "messages": List(message),
            "prompt_id": Value("string"),
            "persona": Value("string"),
            "language": Value("string"),
            "task": Value("string"),
            "teacher": Value("string"),
            "model": Value("string"),
            "reward": Value("float64"),
            "routed_by": Value("string"),
            "basis": Value("string"),
            "candidates": List(candidate),
            "sample": Value("int64"),
            "fused_from": List(source),
        }
    )
    return to_dataset(rows, features)


def build_mixture(outcomes: Sequence[Outcome], config: MixtureConfig | None = None) -> Dataset:
    """The SFT mixture as an HF ``Dataset`` with a ``messages`` column (default filters)."""
    return make_mixture(outcomes, config).sft()


def _release_arrow_memory() -> None:
    """Hand the pages of freed Arrow tables back to the system: Arrow's allocator
    (mimalloc, jemalloc) keeps them, and what follows a dataset would start from them."""
    import pyarrow as pa

    pa.default_memory_pool().release_unused()


def save_mixture(data: Dataset | Mixture, out_dir: str | Path) -> dict[str, Path]:
    """Write the mixture under ``out_dir``.

    A ``Dataset`` gives ``dataset/`` (``save_to_disk``), ``mixture.jsonl`` and
    ``mixture.parquet``; a ``Mixture`` adds ``preference/``, ``preference.jsonl``,
    ``preference.parquet``, ``dropped.jsonl`` (every dropped row and its reason) and
    ``mixture.json`` (the counts).
    """
    import json

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    # one set's dataset at a time: each is made when it is written, then let go
    sets: dict[str, Callable[[], Dataset]] = {
        "mixture": data.sft if isinstance(data, Mixture) else lambda: data
    }
    if isinstance(data, Mixture):
        sets["preference"] = data.preference
    paths: dict[str, Path] = {}
    for name, make in sets.items():
        ds = make()
        folder = out / ("dataset" if name == "mixture" else name)
        # An empty set still gets one (empty) shard, else load_from_disk cannot read it.
        ds.save_to_disk(str(folder), num_shards=1 if len(ds) == 0 else None)
        ds.to_json(str(out / f"{name}.jsonl"), lines=True, force_ascii=False)
        ds.to_parquet(str(out / f"{name}.parquet"))
        paths[name if name == "preference" else "dataset"] = folder
        paths[f"{name}_jsonl"] = out / f"{name}.jsonl"
        paths[f"{name}_parquet"] = out / f"{name}.parquet"
        del ds
        _release_arrow_memory()
    paths["jsonl"] = paths["mixture_jsonl"]
    if isinstance(data, Mixture):
        paths["dropped"] = out / "dropped.jsonl"
        paths["dropped"].write_text(
            "".join(json.dumps(d, ensure_ascii=False) + "\n" for d in data.dropped),
            encoding="utf-8",
        )
        paths["counts"] = out / "mixture.json"
        paths["counts"].write_text(json.dumps(data.counts(), indent=2, ensure_ascii=False))
    return paths
