"""The report on disk: ``report.json``, ``figures/*.png`` and ``report.html`` (figures embedded).

``report.html`` ends in the sample browser, whose data is ``samples/``
(``arbitrage.outputs.browser``).

``arbitrage report RUN_DIR`` rebuilds them from a run directory (``report_run``);
``arbitrage run`` writes them at the end of a run (``RunDir.write_outputs``).
"""

from __future__ import annotations

import base64
import html
import json
import time
from array import array
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from arbitrage.config import RunConfig
from arbitrage.errors import DataError
from arbitrage.outputs.browser import browser_html, heat_table, write_samples
from arbitrage.outputs.mixture import Mixture, make_mixture
from arbitrage.outputs.report import WinCells, samples_fusion_lines, summarise, text_stats
from arbitrage.records import Outcome

FIGURES = ("win_rate_language", "win_rate_task", "rewards", "cost_tokens")


@dataclass
class Report:
    """What a report holds: the summary written to ``report.json`` and the files written."""

    summary: dict[str, Any]
    paths: dict[str, Path]


def report_run(
    run_dir: str | Path, config: RunConfig, outcomes: Sequence[Outcome]
) -> tuple[Report, Mixture]:
    """Rebuild the report files of a run directory from its config and outcomes
    (``arbitrage.rundir.open_result``); the dataset files are left as they are."""
    teachers = [t.name for t in config.teachers]
    mixture = make_mixture(
        outcomes, config.mixture, teacher_order=teachers, targets=config.target_rows
    )
    return write_report(run_dir, outcomes, teachers, mixture, config=config), mixture


def write_report(
    run_dir: str | Path,
    outcomes: Sequence[Outcome],
    teachers: Sequence[str],
    mixture: Mixture,
    *,
    config: RunConfig | None = None,
    extra: dict[str, Any] | None = None,
) -> Report:
    """Write ``report.json``, the figures and ``report.html`` into ``run_dir``.

    ``extra`` (e.g. router state, elapsed time) is merged into ``report.json``; keys
    an earlier ``report.json`` holds and this call does not recompute are kept.
    ``outcomes`` is read in passes that keep counters and the rewards the figures
    plot, never the outcomes themselves (a run's ``RunOutcomes`` is read from disk).
    """
    from arbitrage.outputs import plots

    start = time.perf_counter()
    out = Path(run_dir)
    figures = out / "figures"
    figures.mkdir(parents=True, exist_ok=True)
    previous = out / "report.json"
    summary: dict[str, Any] = {}
    if previous.is_file():
        try:
            summary = json.loads(previous.read_text(encoding="utf-8"))
        except json.JSONDecodeError:
            summary = {}
    summary.update(summarise(outcomes, teachers))
    summary.update(extra or {})
    tokens, by_teacher, cells = _per_candidate(outcomes)
    for name, row in summary["teachers"].items():
        row.update(tokens.get(name, {}))
    summary["win_rate"] = cells
    summary["mixture"] = mixture.counts()
    summary["text"] = text_stats(mixture.rows)

    paths: dict[str, Path] = {}
    names = list(summary["teachers"])
    for by in ("language", "task"):
        cells = {
            k: {t: (c[0], c[1]) for t, c in v.items()} for k, v in summary["win_rate"][by].items()
        }
        paths[f"win_rate_{by}"] = plots.heatmap(
            cells,
            names,
            figures / f"win_rate_{by}.png",
            axis=by,
            title=f"Win rate per {by} × teacher\n(prompts with two or more scored answers)",
        )
    by_language: defaultdict[str, list[float]] = defaultdict(list)
    for row in mixture.kept():
        by_language[row.language].append(row.reward)
    paths["rewards"] = plots.rewards(
        {t: by_teacher.get(t, []) for t in names}, by_language, figures / "rewards.png"
    )
    paths["cost_tokens"] = plots.cost_tokens(summary["teachers"], figures / "cost_tokens.png")
    summary["report_s"] = round(time.perf_counter() - start, 2)
    paths["json"] = previous
    previous.write_text(json.dumps(summary, indent=2, ensure_ascii=False), encoding="utf-8")
    paths["samples"] = write_samples(out, outcomes, names, mixture.dropped)
    paths["html"] = out / "report.html"
    paths["html"].write_text(render_html(summary, paths, config), encoding="utf-8")
    return Report(summary=summary, paths=paths)


def _per_candidate(
    outcomes: Iterable[Outcome],
) -> tuple[dict[str, dict[str, int]], dict[str, array[float]], dict[str, Any]]:
    """From one pass: tokens per teacher, every scored answer's reward per teacher (the
    rewards figure), and the win cells per language and per task (``report.win_cells``)."""
    tokens: defaultdict[str, dict[str, int]] = defaultdict(
        lambda: {"prompt_tokens": 0, "completion_tokens": 0}
    )
    by_teacher: defaultdict[str, array[float]] = defaultdict(lambda: array("d"))
    wins = WinCells(("language", "task"))
    for outcome in outcomes:
        for cand in outcome.candidates:
            usage = cand.generation.usage
            tokens[cand.teacher]["prompt_tokens"] += usage.prompt_tokens
            tokens[cand.teacher]["completion_tokens"] += usage.completion_tokens
            if cand.reward is not None:
                by_teacher[cand.teacher].append(cand.reward)
        wins.add(outcome)
    return dict(tokens), by_teacher, wins.result()


def _table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    head = "".join(f"<th>{html.escape(str(h))}</th>" for h in header)
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in row) + "</tr>" for row in rows
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _img(path: Path, alt: str) -> str:
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{data}">'


_CSS = """
body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}
table{border-collapse:collapse;margin:.5em 0 1.5em}
td,th{border:1px solid #ccc;padding:.25em .6em;text-align:right}
td:first-child,th:first-child{text-align:left}
th{background:#f3f3f3} img{max-width:100%;margin:.5em 0} code{background:#f3f3f3;padding:0 .2em}
"""


def render_html(summary: dict[str, Any], paths: dict[str, Path], config: RunConfig | None) -> str:
    """One self-contained HTML page: numbers, tables and the figures (embedded as PNG)."""
    mix = summary["mixture"]
    text = summary["text"]
    router = summary.get("router", {}).get("name", config.router.name if config else "?")
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'>",
        f"<title>data-arbitrage report</title><style>{_CSS}</style></head><body>",
        "<h1>data-arbitrage report</h1>",
        f"<p>{summary['prompts']} prompts, {summary['generations']} generations "
        f"({summary['generations_per_prompt']} per prompt), router <code>{html.escape(router)}"
        f"</code>, cost ${summary['cost_usd']:.4f}. Mixture: <b>{mix['rows']}</b> SFT rows, "
        f"<b>{mix['pairs']}</b> preference pairs.</p>",
        *(  # what the answers' rewards rested on (reward.verifiers.basis)
            [
                "<p>Reward basis (prompts): "
                + html.escape(", ".join(f"{k} {v}" for k, v in summary["reward_basis"].items()))
                + ".</p>"
            ]
            if summary.get("reward_basis")
            else []
        ),
        *(
            f"<p class='warning'><b>Warning:</b> {html.escape(w)}</p>"
            for w in summary.get("scoring", {}).get("warnings", [])
        ),
        "<p><a href='#samples'>Read the answers</a>: every candidate, its reward and why a row "
        "was dropped.</p>"
        if "samples" in paths
        else "",
        "<h2>Who wins where</h2>",
        _img(paths["win_rate_language"], "win rate per language"),
        _img(paths["win_rate_task"], "win rate per task"),
        "<p>The same, linked: a cell opens its prompts in the sample browser below.</p>",
        heat_table(summary["win_rate"]["language"], list(summary["teachers"]), "language"),
        heat_table(summary["win_rate"]["task"], list(summary["teachers"]), "task"),
        "<h2>Teachers</h2>",
        _table(
            ["teacher", "generations", "failed", "wins", "prompt tokens", "completion tokens", "$"],
            [
                [
                    name,
                    int(r["generations"]),
                    int(r["failed"]),
                    int(r["wins"]),
                    r.get("prompt_tokens", 0),
                    r.get("completion_tokens", 0),
                    f"{r['cost_usd']:.4f}",
                ]
                for name, r in summary["teachers"].items()
            ],
        ),
        _img(paths["cost_tokens"], "cost and tokens per teacher"),
        "<h2>Rewards</h2>",
        _img(paths["rewards"], "reward distributions"),
        "<h2>Mixture</h2>",
        _table(
            ["", "rows", "pairs"],
            [["kept", mix["rows"], mix["pairs"]]]
            + [
                [f"dropped: {r}", mix["dropped"].get(r, 0), mix["pairs_dropped"].get(r, 0)]
                for r in dict.fromkeys([*mix["dropped"], *mix["pairs_dropped"]])
            ]
            + [[f"contaminated by {e}", n, ""] for e, n in mix.get("contaminated", {}).items()],
        ),
        _table(
            ["language", "task", "teacher", "rows"],
            [[c["language"], c["task"], c["teacher"], c["rows"]] for c in mix["by_cell"]],
        ),
        "<h2>Mixture text</h2>",
        _table(
            ["language", "rows", "share", "words mean", "words median", "distinct-1", "distinct-2"],
            [
                [
                    lang,
                    s["rows"],
                    f"{text['language_mix'].get(lang, 1.0):.0%}",
                    s["words_mean"],
                    s["words_median"],
                    s["distinct_1"],
                    s["distinct_2"],
                ]
                for lang, s in [*text["by_language"].items(), ("all", text["overall"])]
            ],
        ),
    ]
    if lines := samples_fusion_lines(summary):  # arbitrage.outputs.report: the terminal's lines
        parts.append("<h2>Samples and fusion</h2>")
        parts += [f"<p>{html.escape(line)}</p>" for line in lines]
    if "samples" in paths:
        parts.append(browser_html())
    if config is not None:
        import yaml

        cfg = yaml.safe_dump(config.public_dict(), sort_keys=False, allow_unicode=True)
        parts.append(f"<h2>Config</h2><pre>{html.escape(cfg)}</pre>")
    parts.append("</body></html>")
    return "\n".join(parts)


def mixture_counts(run_dir: str | Path) -> dict[str, Any]:
    """The mixture counts a finished run wrote (``mixture.json``)."""
    path = Path(run_dir) / "mixture.json"
    if not path.is_file():
        raise DataError(f"{path} is missing: the run has not finished")
    data: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return data
