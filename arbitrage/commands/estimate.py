"""What a run will cost, before it runs: ``arbitrage estimate CONFIG`` (no call is made).

Calls per teacher follow from the router (reward routing: every teacher answers every
prompt; learned: every teacher during the warm-up, then about one); output tokens
are counted at ``max_tokens``, so the figure is an upper bound for the answers.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from arbitrage.calls.budget import (
    PER_MTOK,
    batch_price_per_token,
    price_per_token,
    teacher_prices,
    text_tokens,
)
from arbitrage.config import RunConfig
from routers.cascade import CASCADES, DEFAULT_BUDGET

PROMPT_TOKENS = 60  # a persona + task frame, measured on the bundled pool
WRITER_PROMPT_TOKENS = 130
JUDGE_RUBRIC_TOKENS = 250
SIMULATOR_PROMPT_TOKENS = 170  # arbitrage.prompts.conversation.SIMULATOR_PROMPT and a persona
FUSE_PROMPT_TOKENS = 230  # arbitrage.fusion.FUSE_TEMPLATE's frame, by the budget's bound: 212


def pool_size(config: RunConfig) -> int:
    """Prompts the pool will hold: ``pool.n_prompts``, or the rows a prompts file gives
    (the first ``n_prompts`` where it is set); with ``target_rows``, the most its rounds
    may draw (``max_prompts``, default 10 × the target): the worst case."""
    from arbitrage.config import DEFAULT_N_PROMPTS
    from arbitrage.prompts.pool import take_prompts

    if config.target_rows is not None:
        return config.prompt_limit()
    if config.pool.prompts:
        return len(take_prompts(config.pool.prompts, config.pool.n_prompts)[0])
    return config.pool.n_prompts or DEFAULT_N_PROMPTS


def generations_per_prompt(config: RunConfig, n: int | None = None) -> float:
    """Expected answers per prompt *per teacher*, from the router's name and params, over
    ``n`` prompts (default: ``pool_size``)."""
    n_teachers = len(config.teachers)
    n = pool_size(config) if n is None else n
    params = config.router.params
    if config.router.name == "reward":
        return 1.0
    if config.router.name == "learned":
        warmup = min(int(params.get("warmup", 20)), n)
        explore = float(params.get("explore", 0.1))
        extra = explore * (int(params.get("explore_teachers", 2)) - 1)
        return (warmup + (n - warmup) * (1 + extra) / n_teachers) / n
    if config.router.name in CASCADES:
        budget = float(params.get("max_generations_per_prompt", DEFAULT_BUDGET))
        return min(budget, n_teachers) / n_teachers
    return 1.0 / n_teachers  # random, fixed (an even split assumed), custom routers


def _prompt_tokens(config: RunConfig) -> int:
    if config.pool.prompts and Path(config.pool.prompts).is_file():
        lines = Path(config.pool.prompts).read_text(encoding="utf-8").splitlines()[:500]
        texts = [json.loads(x).get("text", "") for x in lines if x.strip()]
        if texts:  # the budget's bound: 4 ASCII characters a token, 1 for every other
            return sum(text_tokens(t) for t in texts) // len(texts) + 4
    return PROMPT_TOKENS


def estimate(config: RunConfig) -> list[dict[str, Any]]:
    """One row per teacher (and the writer and judge where they are models)."""
    pool = pool_size(config)
    turns = config.conversation.turns if config.conversation is not None else 1
    n = pool * turns  # prompts answered, at most: every conversation to its last turn
    per = generations_per_prompt(config, n)
    answer = max(t.max_tokens for t in config.teachers)
    first = _prompt_tokens(config)
    # a later turn carries the conversation before it: the mean over a conversation's turns
    prompt_tokens = first + (turns - 1) * (first + answer) // 2
    rows = []
    total_calls = 0.0
    for t in config.teachers:
        calls = n * per * t.samples  # each sample is its own call
        total_calls += calls
        rows.append(_row(t.name, t.model, calls, prompt_tokens, t.max_tokens, teacher_prices(t)))
    if config.fusion is not None:  # at most one fusion a prompt, shown top_k answers
        t = next(t for t in config.teachers if t.name == config.fusion.model)
        tok_in = FUSE_PROMPT_TOKENS + prompt_tokens + config.fusion.top_k * answer
        rows.append(_row(f"{t.name} (fusion)", t.model, n, tok_in, t.max_tokens, teacher_prices(t)))
        total_calls += n  # the judge scores each fused answer too
    writer = config.pool.writer
    if writer != "template" and not config.pool.prompts:
        t = next(t for t in config.teachers if t.name == writer)
        max_out = config.pool.writer_max_tokens
        usd = teacher_prices(t)
        rows.append(_row(f"{t.name} (writer)", t.model, pool, WRITER_PROMPT_TOKENS, max_out, usd))
    if turns > 1 and config.conversation is not None and config.conversation.simulator:
        sim = config.conversation.simulator
        tok_in = SIMULATOR_PROMPT_TOKENS + turns * (first + answer) // 2
        calls = pool * (turns - 1)
        rows.append(_row(sim.name, sim.model, calls, tok_in, sim.max_tokens, teacher_prices(sim)))
    for scorer in config.reward.scorers():
        if scorer.kind not in ("judge", "pairwise") or not scorer.model:
            continue
        max_out = int(scorer.params.get("max_tokens", 512))
        tok_in = JUDGE_RUBRIC_TOKENS + prompt_tokens + answer
        calls = total_calls
        if scorer.kind == "pairwise":  # both orders of every pair of a prompt's answers
            calls = pairwise_calls(config, n)
            tok_in += answer
        label = getattr(scorer, "label", scorer.kind)
        rows.append(
            _row(label, scorer.model, calls, tok_in, max_out, _judge_prices(scorer.model, scorer))
        )
    return with_batch_prices(rows, config)


def with_batch_prices(rows: list[dict[str, Any]], config: RunConfig) -> list[dict[str, Any]]:
    """Each row with ``usd_batch``, its cost through a batch API (litellm's batch
    prices where it has them, else ``batch.discount`` of the row's price), and ``mode``:
    ``batch`` for a teacher with ``mode: batch``, which ``usd_run`` counts at batch price."""
    batch = {t.name for t in config.teachers if t.mode == "batch"}
    batch |= {getattr(s, "label", s.kind) for s in config.reward.scorers() if s.mode == "batch"}
    for r in rows:
        online = (r["usd_per_mtok"][0] / PER_MTOK, r["usd_per_mtok"][1] / PER_MTOK)
        unit = tuple(p * config.batch.discount for p in online)
        if online == price_per_token(r["model"]):  # no override: litellm's own batch price
            unit = batch_price_per_token(model=r["model"], discount=config.batch.discount)
        r["usd_batch"] = r["input_tokens"] * unit[0] + r["output_tokens"] * unit[1]
        r["mode"] = "batch" if r["who"] in batch else "online"
        r["usd_run"] = r["usd_batch"] if r["mode"] == "batch" else r["usd"]
    return rows


def pairwise_calls(config: RunConfig, n: int | None = None) -> float:
    """Expected pairwise-judge calls over ``n`` prompts (default: ``pool_size``),
    Σ k(k − 1) over prompts with k answers each: every teacher on reward-routed (and
    warm-up) prompts, two on explored ones, fractional budgets as a mix of the two
    nearest whole counts."""
    n = pool_size(config) if n is None else n
    t = len(config.teachers)
    params = config.router.params

    def pairs(k: float) -> float:  # E[k(k-1)] for k spread over the two nearest integers
        low = math.floor(k)
        frac = k - low
        return frac * (low + 1) * low + (1 - frac) * low * (low - 1)

    if config.router.name == "reward":
        return n * t * (t - 1)
    if config.router.name == "learned":
        warmup = min(int(params.get("warmup", 20)), n)
        explored = (n - warmup) * float(params.get("explore", 0.1))
        k = min(int(params.get("explore_teachers", 2)), t)
        return warmup * t * (t - 1) + explored * k * (k - 1)
    if config.router.name in CASCADES:
        budget = float(params.get("max_generations_per_prompt", DEFAULT_BUDGET))
        return n * pairs(min(budget, t))
    return 0.0  # one answer a prompt


def _judge_prices(model: str, scorer: Any) -> tuple[float, float]:
    params = scorer.params
    return price_per_token(
        model, params.get("input_cost_per_mtok"), params.get("output_cost_per_mtok")
    )


def _row(
    who: str, model: str, calls: float, tok_in: int, tok_out: int, prices: tuple[float, float]
) -> dict[str, Any]:
    calls = round(calls)
    cost = calls * (tok_in * prices[0] + tok_out * prices[1])
    return {
        "who": who,
        "model": model,
        "calls": calls,
        "input_tokens": calls * tok_in,
        "output_tokens": calls * tok_out,
        "usd_per_mtok": (round(prices[0] * 1e6, 4), round(prices[1] * 1e6, 4)),
        "usd": cost,
    }


def estimate_table(rows: list[dict[str, Any]]) -> Any:
    """A rich table of ``estimate`` rows with a total."""
    from rich.table import Table

    table = Table(title="Estimated cost (output at max_tokens: an upper bound; * this run)")
    cols = ("", "model", "calls", "input tok", "output tok", "$/Mtok in/out", "$", "$ batch")
    for col in cols:
        table.add_column(col, justify="left" if col in ("", "model") else "right")
    for r in rows:
        price = (
            "unknown"
            if r["usd_per_mtok"] == (0.0, 0.0)
            else "{:g} / {:g}".format(*r["usd_per_mtok"])
        )
        table.add_row(
            r["who"],
            r["model"],
            f"{r['calls']:,}",
            f"{r['input_tokens']:,}",
            f"{r['output_tokens']:,}",
            price,
            f"{r['usd']:.4f}" + ("" if r.get("mode") == "batch" else " *"),
            f"{r['usd_batch']:.4f}" + (" *" if r.get("mode") == "batch" else ""),
        )
    online = f"{sum(r['usd'] for r in rows):.4f}"
    batch = f"{sum(r['usd_batch'] for r in rows):.4f}"
    table.add_row("total", "", "", "", "", "", online, batch, style="bold")
    run = sum(r["usd_run"] for r in rows)
    table.add_row("this run (*)", "", "", "", "", "", "", f"{run:.4f}", style="bold")
    return table
