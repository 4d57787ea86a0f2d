"""The sample browser of ``report.html``: every prompt's candidates, side by side.

The page stays small at any pool size: ``samples/index.js`` holds one short row per
prompt (language, task, winner, drop reason, teachers, the prompt's first
``SNIPPET`` characters) for the filters and the search, and ``samples/cNNNNN.js``
hold the full prompts and answers, ``CHUNK`` prompts each, loaded only when one of
their prompts is opened. Both are JSONP-style scripts (``arbitrageIndex(...)``,
``arbitrageChunk(n, [...])``): a browser loads them from ``file://``, where it would
refuse a ``fetch``. Nothing is loaded from the network.

    samples/index.js    {teachers, languages, tasks, reasons, chunk,
                         prompts: [[l, t, w, r, mask, text], ...]}
    samples/c00000.js   the first CHUNK prompts: id, text, winner, reason, candidates (reward parts)

``w`` and ``r`` index ``teachers`` and ``reasons`` (``-1``: no winner, kept);
``mask`` has bit ``i`` set when ``teachers[i]`` answered the prompt.
"""

from __future__ import annotations

import itertools
import json
import shutil
from collections.abc import Sequence
from importlib.resources import files
from pathlib import Path
from typing import Any

from arbitrage.records import Candidate, Outcome

CHUNK = 200
SNIPPET = 300
SAMPLES_DIR = "samples"


def _candidate(cand: Candidate) -> dict[str, Any]:
    gen = cand.generation
    return {
        "teacher": gen.teacher,
        "model": gen.model,
        "text": gen.text,
        "status": gen.status,
        "finish_reason": gen.finish_reason,
        "error": gen.error,
        "reward": cand.reward,
        "parts": cand.reward_details,
        "tokens": [gen.usage.prompt_tokens, gen.usage.completion_tokens],
        "latency_s": round(gen.latency_s, 3),
        "cost_usd": gen.cost_usd,
    }


def _json(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def _jsonp(path: Path, call: str, *args: Any) -> None:
    path.write_text(f"{call}({','.join(_json(a) for a in args)});\n", encoding="utf-8")


def write_samples(
    run_dir: str | Path,
    outcomes: Sequence[Outcome],
    teachers: Sequence[str],
    dropped: Sequence[dict[str, str]],
) -> Path:
    """Write ``samples/`` (the index and the chunks) into ``run_dir``; returns the folder.

    ``dropped`` is the mixture's dropped rows (``Mixture.dropped``): a prompt's first
    reason is the one shown. Two passes over ``outcomes``: one for the index's lists,
    one that writes each chunk and the index's rows as it reads them (neither is held).
    """
    out = Path(run_dir) / SAMPLES_DIR
    if out.exists():  # a smaller rerun must not leave stale chunks behind
        shutil.rmtree(out)
    out.mkdir(parents=True)
    reason_of: dict[str, str] = {}
    for row in dropped:
        reason_of.setdefault(row["prompt_id"], row["reason"])
    names = list(teachers)
    found_languages: set[str] = set()
    found_tasks: set[str] = set()
    for outcome in outcomes:  # a teacher no longer in the config still shows
        names += [c.teacher for c in outcome.candidates if c.teacher not in names]
        found_languages.add(outcome.prompt.language)
        found_tasks.add(outcome.prompt.task)
    col = {t: i for i, t in enumerate(names)}
    languages, tasks = sorted(found_languages), sorted(found_tasks)
    reasons = sorted(set(reason_of.values()))
    lang_i, task_i = {v: i for i, v in enumerate(languages)}, {v: i for i, v in enumerate(tasks)}
    reason_i = {v: i for i, v in enumerate(reasons)}
    head = {
        "teachers": names,
        "languages": languages,
        "tasks": tasks,
        "reasons": reasons,
        "chunk": CHUNK,
    }
    # index.js is _jsonp's call on head + {"prompts": [...]}, its rows written as they come
    with (out / "index.js").open("w", encoding="utf-8") as index:
        index.write(f'arbitrageIndex({_json(head)[:-1]},"prompts":[')
        it = iter(outcomes)
        for chunk in itertools.count():
            rows: list[dict[str, Any]] = []
            for outcome in itertools.islice(it, CHUNK):
                prompt, reason = outcome.prompt, reason_of.get(outcome.prompt.id)
                mask = 0
                for cand in outcome.candidates:
                    mask |= 1 << col[cand.teacher]
                entry = [
                    lang_i[prompt.language],
                    task_i[prompt.task],
                    col[outcome.winner] if outcome.winner is not None else -1,
                    reason_i[reason] if reason is not None else -1,
                    mask,
                    prompt.text[:SNIPPET],
                ]
                index.write(("," if chunk or rows else "") + _json(entry))
                rows.append(
                    {
                        "id": prompt.id,
                        "text": prompt.text,
                        "language": prompt.language,
                        "task": prompt.task,
                        "persona": prompt.persona,
                        "routed_by": outcome.routed_by,
                        "winner": outcome.winner,
                        "reason": reason,
                        "candidates": [_candidate(c) for c in outcome.candidates],
                    }
                )
            if not rows:
                break
            _jsonp(out / f"c{chunk:05d}.js", "arbitrageChunk", chunk, rows)
        index.write("]});\n")
    return out


def _asset(name: str) -> str:
    return files("arbitrage").joinpath(f"data/{name}").read_text(encoding="utf-8")


def browser_html() -> str:
    """The browser's section of ``report.html``: controls, list, detail, and its script
    (inline, so the page needs nothing but ``samples/``)."""
    return f"""<h2 id="samples">Sample browser</h2>
<p>Every prompt with each teacher's answer, its reward and the reward's parts; the winner is
starred and a prompt whose row the mixture dropped says why. Data: <code>samples/</code>
next to this page.</p>
<div id="sb-controls">
<select id="sb-language" aria-label="language"></select>
<select id="sb-task" aria-label="task"></select>
<select id="sb-teacher" aria-label="teacher"></select>
<select id="sb-winner" aria-label="winner"></select>
<select id="sb-reason" aria-label="row"></select>
<input id="sb-search" type="search" placeholder="search prompts" aria-label="search">
<span id="sb-count">loading samples/index.js…</span>
</div>
<div id="sb-listbox"><table id="sb-list"><thead><tr><th>#</th><th>language</th><th>task</th>
<th>winner</th><th>row</th><th>prompt</th></tr></thead><tbody></tbody></table></div>
<div id="sb-pager"><button id="sb-prev">‹ prev</button> <span id="sb-page"></span>
<button id="sb-next">next ›</button></div>
<div id="sb-detail"></div>
<style>{_asset("browser.css")}</style>
<script>{_asset("browser.js")}</script>"""


def heat_table(cells: dict[str, dict[str, list[int]]], teachers: Sequence[str], by: str) -> str:
    """The win-rate heatmap as a table whose cells link to their prompts in the browser
    (``#samples?language=fr&teacher=gemma3``); ``cells`` is ``report.win_cells(..., by)``."""
    from html import escape
    from urllib.parse import urlencode

    head = "".join(f"<th>{escape(t)}</th>" for t in teachers)
    body = []
    for value in sorted(cells):
        tds = []
        for t in teachers:
            wins, n = cells[value].get(t, [0, 0])
            if not n:
                tds.append("<td></td>")
                continue
            share = wins / n
            link = escape("#samples?" + urlencode({by: value, "teacher": t}))
            color = f"hsl(145,55%,{95 - 45 * share:.0f}%)"
            tds.append(
                f'<td style="background:{color}"><a href="{link}">{wins}/{n} ({share:.0%})</a></td>'
            )
        body.append(f"<tr><td>{escape(value)}</td>{''.join(tds)}</tr>")
    return (
        f"<table class='heat'><thead><tr><th>{escape(by)}</th>{head}</tr></thead>"
        f"<tbody>{''.join(body)}</tbody></table>"
    )
