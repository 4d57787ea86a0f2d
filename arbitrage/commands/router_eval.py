"""``arbitrage eval-routers`` and ``arbitrage train-router``: routers measured on a scored run.

``eval-routers`` replays routers over a run in which every teacher answered (see
``arbitrage.commands.evaluate``). The lineup, by default: the run's own router with the params
of its ``config.yaml`` (unless it is the oracle), ``learned``, and ``bandit`` and
``content`` at 1.5 and 2.0 generations per prompt. Always beside it, the baselines:
random, each single teacher, the oracle, and two fixed choices made in hindsight
(after seeing every reward, which no router can do in advance): the best teacher per
task (1 generation) and the best pair of teachers (2).
"""

from __future__ import annotations

import inspect
import itertools
import json
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from arbitrage.commands.evaluate import (
    Replay,
    apgr,
    baselines,
    fully_scored,
    gap_closed,
    hindsight,
    replay,
    sample_baselines,
)
from arbitrage.errors import ArbitrageError, ConfigError, DataError
from arbitrage.records import Outcome, Prompt
from arbitrage.rundir import load_run
from routers.base import Route, Router

if TYPE_CHECKING:
    from rich.console import Console

BUDGETS = (1.0, 1.1, 1.2, 1.4, 1.7, 2.0, 2.5, 3.0)  # the bandit curve behind APGR
DEFAULT_BUDGETS = (1.5, 2.0)
LINEUP = ("learned", "bandit", "content")
BUDGET = "max_generations_per_prompt"
COLUMNS = (
    "router",
    "mean reward",
    "% of oracle",
    "win vs best",
    "regret",
    "gens/prompt",
    "G",
    "cost $",
    "$/prompt",
)
NOTE = (
    "G: share of the gap from the best single teacher to the oracle closed. win vs best: "
    "against the best single teacher, ties half.\nhindsight: a fixed choice made after "
    "seeing every reward, which no router could make in advance."
)


@dataclass(frozen=True)
class RouterSpec:
    """One router to replay: its registry name, constructor params and table label
    (``hindsight``: a baseline chosen after seeing every reward)."""

    name: str
    params: dict[str, Any] = field(default_factory=dict)
    label: str = ""
    hindsight: bool = False


class _Always(Router):
    """Every prompt to the same teachers (the hindsight pair)."""

    name = "always"

    def __init__(self, teachers: Sequence[str], chosen: Sequence[str]) -> None:
        super().__init__(teachers)
        self.chosen = list(chosen)

    def route(self, prompts: Sequence[Prompt]) -> list[Route]:
        return [Route(list(self.chosen), "hindsight") for _ in prompts]


def parse_params(items: Sequence[str]) -> dict[str, Any]:
    """``["warmup=40", "explore=0.2"]`` as ``{"warmup": 40, "explore": 0.2}`` (values read as
    YAML: ints, floats, bools, strings)."""
    import yaml

    params: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        key = key.strip()
        if not sep or not key or not value.strip():
            raise ConfigError(f"--param expects KEY=VALUE (e.g. warmup=40), got {item!r}")
        try:
            params[key] = yaml.safe_load(value)
        except yaml.YAMLError:
            raise ConfigError(f"--param {key}: {value!r} is not a YAML value") from None
    return params


def _takes_budget(name: str) -> bool:
    from routers import registry

    return BUDGET in inspect.signature(registry.get(name)).parameters


def _show(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:g}"
    return json.dumps(value, default=str) if isinstance(value, dict | list) else str(value)


def _spec(
    name: str, params: dict[str, Any], shown: Mapping[str, Any], this_run: bool
) -> RouterSpec:
    label = name
    if BUDGET in params:
        label += f" ≤{_show(params[BUDGET])}"
    label += "".join(f" {k}={_show(v)}" for k, v in shown.items() if k != BUDGET)
    return RouterSpec(name, params, label + (" (this run)" if this_run else ""))


def lineup(
    prompts: int,
    *,
    run_router: tuple[str, Mapping[str, Any]] = ("reward", {}),
    names: Sequence[str] = (),
    params: Mapping[str, Any] | None = None,
    budgets: Sequence[float] | None = None,
) -> list[RouterSpec]:
    """The routers to replay besides the baselines, for a run of ``prompts`` scored prompts.

    ``names`` (``--router``) replace the default lineup. A named router's params: the
    lineup's defaults (``learned`` warms up on a tenth of the prompts), then the run's
    config if it is the run's router, then ``params`` (``--param``). A router that takes
    ``max_generations_per_prompt`` is replayed once per budget in ``budgets`` (default 1.5
    and 2.0) unless ``params``, or the run's config with no ``budgets`` given, fix one.
    """
    cli = dict(params or {})
    if cli and not names:
        raise ConfigError("--param needs --router NAME: the router(s) its params are for")
    run_name, run_params = run_router[0], dict(run_router[1])
    specs = []
    if not names and run_name != "reward":  # the oracle is a baseline row anyway
        specs.append(_spec(run_name, run_params, {}, this_run=True))
    for name in names or LINEUP:
        mine = run_params if names and name == run_name else {}
        merged = {**({"warmup": prompts // 10} if name == "learned" else {}), **mine, **cli}
        if not _takes_budget(name) or BUDGET in cli or (budgets is None and BUDGET in mine):
            specs.append(_spec(name, merged, cli, this_run=bool(mine)))
            continue
        for budget in budgets or DEFAULT_BUDGETS:
            specs.append(_spec(name, {**merged, BUDGET: budget}, cli, this_run=bool(mine)))
    return specs


def _build(spec: RouterSpec, teachers: Sequence[str], seed: int) -> Router:
    from routers import get_router

    try:
        return get_router(spec.name, teachers, seed=seed, **spec.params)
    except ArbitrageError:
        raise
    except (TypeError, ValueError) as exc:  # e.g. warmup=abc reaching a comparison
        shown = ", ".join(f"{k}={_show(v)}" for k, v in spec.params.items())
        raise ConfigError(f"router {spec.name!r}: bad params ({shown}): {exc}") from None


def _hindsight(full: list[Outcome], teachers: list[str]) -> list[tuple[RouterSpec, Replay]]:
    """The best teacher per task and the best pair, chosen after seeing every reward."""
    from routers.fixed import FixedRouter

    by_task: dict[str, list[Outcome]] = {}
    for outcome in full:
        by_task.setdefault(outcome.prompt.task, []).append(outcome)
    best = {}
    for task, group in by_task.items():
        values = baselines(group, teachers)
        best[f"*/{task}"] = max(teachers, key=values.__getitem__)
    spec = RouterSpec("fixed", {"map": best}, "best per task (hindsight)", hindsight=True)
    rows = [(spec, replay(FixedRouter(teachers, map=best), full, name=spec.label))]
    pairs = []
    for pair in itertools.combinations(teachers, 2):
        label = f"best pair {'+'.join(pair)} (hindsight)"
        spec = RouterSpec("always", {"teachers": list(pair)}, label, hindsight=True)
        pairs.append((spec, replay(_Always(teachers, pair), full, name=label)))
    if pairs:
        rows.append(max(pairs, key=lambda row: row[1].mean_reward))
    return rows


def _key(spec: RouterSpec) -> str:
    return json.dumps([spec.name, spec.params], sort_keys=True, default=str)


def _replay(
    spec: RouterSpec, router: Router, full: list[Outcome], teachers: list[str], seed: int
) -> Replay:
    if spec.name == "embedding" and "path" not in spec.params:  # not trained: cross-fit it
        return _cross_fitted_embedding(full, teachers, spec, seed)
    return replay(router, full, name=spec.label)


def evaluate_routers(
    outcomes: list[Outcome],
    teachers: list[str],
    *,
    seed: int = 0,
    embedding: bool = False,
    specs: Sequence[RouterSpec] | None = None,
) -> dict[str, Any]:
    """Replay ``specs`` (default: ``lineup``) and the baselines over a fully scored run."""
    full = fully_scored(outcomes, teachers)
    base = baselines(full, teachers)
    best_single = max(teachers, key=base.__getitem__)
    oracle = base["oracle"]
    first = [
        RouterSpec("random", {}, "random"),
        *(RouterSpec("fixed", {"default": t}, f"only {t}") for t in teachers),
    ]
    last = [RouterSpec("reward", {}, "reward (oracle)")]
    if embedding:
        last.append(RouterSpec("embedding", {}, "embedding"))
    middle: list[RouterSpec] = []
    seen = {_key(s) for s in first + last}
    for spec in lineup(len(full)) if specs is None else specs:
        if _key(spec) not in seen:  # a router already in the table keeps its first row
            seen.add(_key(spec))
            middle.append(spec)
    built = [(s, _build(s, teachers, seed)) for s in [*first, *middle, *last]]  # bad params: now
    replays = [(s, _replay(s, router, full, teachers, seed)) for s, router in built]
    split = len(first) + len(middle)
    rows = [*replays[:split], *_hindsight(full, teachers), *replays[split:]]
    curve = [
        replay(_build(RouterSpec("bandit", {BUDGET: b}), teachers, seed), full)
        for b in BUDGETS
        if b <= len(teachers)
    ]
    points = [(r.generations_per_prompt, r.mean_reward) for r in curve]
    return {
        "prompts": len(full),
        "teachers": teachers,
        "oracle": oracle,
        "best_single": base[best_single],
        "best_single_teacher": best_single,
        "hindsight": hindsight(full, teachers),
        # with samples, "only <t>" rows are t × k samples; this adds × 1 beside them
        "samples": sample_baselines(full, teachers),
        "routers": [
            {
                **asdict(r),
                "name": spec.name,
                "params": spec.params,
                "hindsight": spec.hindsight,
                "gap_closed": gap_closed(r.mean_reward, base[best_single], oracle),
                "cost_per_prompt_usd": r.cost_usd / r.prompts,
            }
            for spec, r in rows
        ],
        "bandit_curve": points,
        "apgr": apgr(points, base[best_single], oracle, len(teachers)),
    }


def _cross_fitted_embedding(
    full: list[Outcome], teachers: list[str], spec: RouterSpec, seed: int
) -> Replay:
    """Two-fold: fit on one half, route the other, so no prompt is routed by its own label."""
    half = len(full) // 2
    if half < 2:
        raise DataError("too few fully scored prompts to cross-fit the embedding router")
    parts = []
    for train, test in ((full[:half], full[half:]), (full[half:], full[:half])):
        router = _build(spec, teachers, seed).fit(train)  # type: ignore[attr-defined]
        parts.append((replay(router, test), len(test)))
    n = sum(k for _, k in parts)

    def avg(attr: str) -> float:
        return sum(getattr(r, attr) * k for r, k in parts) / n

    return Replay(
        router=f"{spec.label} (2-fold)",
        mean_reward=avg("mean_reward"),
        win_rate_vs_best_single=avg("win_rate_vs_best_single"),
        regret=avg("regret"),
        generations_per_prompt=avg("generations_per_prompt"),
        cost_usd=sum(r.cost_usd for r, _ in parts),
        prompts=n,
    )


def plot(result: dict[str, Any], path: Path) -> Path:
    """Quality vs generations per prompt: every router as a point, the bandit as a curve."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.5, 4.2), dpi=120)
    xs, ys = zip(*result["bandit_curve"], strict=True)
    label = f"bandit budgets (APGR {result['apgr']:.2f})"
    ax.plot(xs, ys, "-", color="tab:blue", alpha=0.6, label=label)
    for r in result["routers"]:
        point = (r["generations_per_prompt"], r["mean_reward"])
        if r.get("hindsight"):  # bounds, not routers: hollow markers
            ax.scatter(*point, zorder=3, facecolors="none", edgecolors="grey")
        else:
            ax.scatter(*point, zorder=3)
        ax.annotate(r["router"], point, fontsize=7, xytext=(4, -3), textcoords="offset points")
    ax.axhline(result["oracle"], color="grey", ls="--", lw=0.8, label="oracle")
    ax.axhline(result["best_single"], color="grey", ls=":", lw=0.8, label="best single teacher")
    ax.set_xlabel("generations per prompt")
    ax.set_ylabel("mean reward")
    ax.set_title("Routers replayed on a scored run: quality vs cost")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def _title(result: dict[str, Any]) -> str:
    return (
        f"Routers on {result['prompts']} fully scored prompts: best single "
        f"{result['best_single_teacher']} {result['best_single']:.3f}{_samples(result)}, "
        f"oracle {result['oracle']:.3f}, bandit APGR {result['apgr']:.3f}"
    )


def _samples(result: dict[str, Any]) -> str:
    """With several samples per teacher: the best single teacher is "× k samples" (every
    row sees all of a chosen teacher's samples), and × 1 sample for comparison."""
    samples = result.get("samples") or {}
    many = [k for k in samples if k.startswith("best single × ") and not k.endswith("teacher")]
    if len(many) < 2:
        return ""
    one, k = many
    return f" ({k.removeprefix('best single ')}; × 1 sample: {samples[one]:.3f})"


def _cells(result: dict[str, Any]) -> list[list[str]]:
    """One row of formatted cells per replay, in ``COLUMNS`` order."""
    oracle, gap = result["oracle"], result["oracle"] > result["best_single"]
    return [
        [
            r["router"],
            f"{r['mean_reward']:.3f}",
            f"{r['mean_reward'] / oracle:.1%}" if oracle else "-",
            f"{r['win_rate_vs_best_single']:.1%}",
            f"{r['regret']:.3f}",
            f"{r['generations_per_prompt']:.2f}",
            f"{r['gap_closed']:.2f}" if gap else "-",
            f"{r['cost_usd']:.4f}",
            f"{r['cost_per_prompt_usd']:.6f}",
        ]
        for r in result["routers"]
    ]


def table(result: dict[str, Any]) -> Any:
    """A rich table of the replays (for a terminal)."""
    from rich import box
    from rich.table import Table

    out = Table(title=_title(result), caption=NOTE, box=box.SIMPLE_HEAD)
    for col in COLUMNS:
        out.add_column(col, justify="left" if col == "router" else "right", no_wrap=True)
    for r, cells in zip(result["routers"], _cells(result), strict=True):
        out.add_row(*cells, style="italic" if r.get("hindsight") else None)
    return out


def text_table(result: dict[str, Any]) -> str:
    """The same table as plain fixed-width text: no colours, nothing cut, one line a router."""
    rows = [list(COLUMNS), *_cells(result)]
    widths = [max(len(row[i]) for row in rows) for i in range(len(COLUMNS))]

    def line(cells: list[str]) -> str:
        return "  ".join(
            c.ljust(w) if i == 0 else c.rjust(w)
            for i, (c, w) in enumerate(zip(cells, widths, strict=True))
        )

    rule = ["-" * w for w in widths]
    return "\n".join([_title(result), line(rows[0]), line(rule), *map(line, rows[1:]), NOTE])


def show(result: dict[str, Any], console: Console) -> None:
    """Print the table: rich on a terminal wide enough for all of it, else plain text
    (piped, rich would wrap or cut it to 80 columns)."""
    rich = table(result)
    natural = console.measure(rich, options=console.options.update_width(10_000)).maximum
    if console.is_terminal and natural <= console.width:
        console.print(rich)
    else:
        console.file.write(text_table(result) + "\n")


def eval_routers(
    run_dir: str | Path,
    *,
    routers: Sequence[str] = (),
    params: Mapping[str, Any] | None = None,
    budgets: Sequence[float] | None = None,
    embedding: bool = False,
    seed: int = 0,
) -> tuple[dict[str, Any], Path]:
    """Evaluate (see ``lineup`` for ``routers``, ``params`` and ``budgets``), and write
    ``router_eval.json`` and ``router_eval.png`` into the run directory."""
    config, outcomes = load_run(run_dir)
    teachers = [t.name for t in config.teachers]
    specs = lineup(
        len(fully_scored(outcomes, teachers)),
        run_router=(config.router.name, config.router.params),
        names=routers,
        params=params,
        budgets=budgets,
    )
    result = evaluate_routers(outcomes, teachers, seed=seed, embedding=embedding, specs=specs)
    out = Path(run_dir)
    (out / "router_eval.json").write_text(json.dumps(result, indent=2, default=str))
    png = plot(result, out / "router_eval.png")
    return result, png


def train_router(
    run_dir: str | Path, out: str | Path | None = None, *, model: str = "bundled", k: int = 15
) -> Path:
    """Fit the embedding router on a scored run and save it (default: ``RUN_DIR/router``)."""
    from routers.embedding import EmbeddingRouter

    config, outcomes = load_run(run_dir)
    teachers = [t.name for t in config.teachers]
    router = EmbeddingRouter(teachers, model=model, k=k).fit(outcomes)
    return router.save(Path(out) if out else Path(run_dir) / "router")
