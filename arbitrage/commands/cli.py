"""The ``arbitrage`` command line.

Every ``ArbitrageError`` becomes one line on stderr and exit code 2, and so does an
``OSError`` (a full disk says that a rerun with space resumes); an interrupted run
exits 130 and says how to resume; a run that kept no row exits 2 and says why. A
traceback is a bug.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from arbitrage import __version__
from arbitrage.calls.llm import is_local
from arbitrage.commands.run_log import INTERVAL_S, banner_lines
from arbitrage.errors import NO_SPACE, ArbitrageError, DataError, DiskFull

if TYPE_CHECKING:
    from arbitrage.config import RunConfig
    from arbitrage.factories import RunParts
    from arbitrage.pipeline import RunResult


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="arbitrage", description="Multi-teacher instruction-data arbitrage."
    )
    parser.add_argument("--version", action="version", version=f"data-arbitrage {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="run a config (no config: the embedded offline default)")
    run.add_argument("config", nargs="?", help="YAML config; omit for the embedded default")
    run.add_argument("--out", help="run directory (overrides the config's 'out')")
    run.add_argument("--n-prompts", type=int, help="override pool.n_prompts")
    run.add_argument("--seed", type=int, help="override seed")
    run.add_argument(
        "--engine", choices=["local", "ray"], help="override engine (ray: docs/cluster.md)"
    )
    run.add_argument(
        "--progress-every",
        type=float,
        default=INTERVAL_S,
        metavar="SECONDS",
        help=f"stderr not a terminal: a progress line every SECONDS (default {INTERVAL_S:g})",
    )
    sub.add_parser("default-config", help="print the embedded default config as YAML")
    rf = sub.add_parser("retry-failed", help="re-request only the failed calls of a run")
    rf.add_argument("run_dir")
    est = sub.add_parser("estimate", help="estimate a config's cost per teacher (calls no model)")
    est.add_argument("config", nargs="?", help="YAML config; omit for the embedded default")
    est.add_argument("--n-prompts", type=int, help="override pool.n_prompts")
    ev = sub.add_parser(
        "eval-routers", help="replay routers on a reward-routed run: quality vs cost"
    )
    ev.add_argument("run_dir")
    ev.add_argument(
        "--router",
        action="append",
        default=[],
        metavar="NAME",
        help="replay this router instead of the default lineup (the run's own router, learned, "
        "bandit, content); repeatable",
    )
    ev.add_argument(
        "--param",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a param of the --router routers (VALUE read as YAML), over the run's config; "
        "repeatable",
    )
    ev.add_argument(
        "--budget",
        action="append",
        type=float,
        metavar="G",
        help="generations per prompt of the budgeted routers (bandit, content); repeatable "
        "(default: 1.5 and 2.0)",
    )
    ev.add_argument("--embedding", action="store_true", help="also cross-fit the embedding router")
    ev.add_argument("--seed", type=int, default=0, help="seed of the routers' draws (default 0)")
    er = sub.add_parser(
        "eval-reward", help="agreement of a second reward with a run's reward, per language"
    )
    er.add_argument("run_dir")
    er.add_argument(
        "--kind", required=True, help="reward kind of the second scorer (pairwise, judge, hf, ...)"
    )
    er.add_argument("--model", help="its model (litellm string for judges)")
    er.add_argument("--api-base", help="its endpoint, for OpenAI-compatible servers")
    er.add_argument("--api-key-env", help="environment variable holding its API key")
    er.add_argument(
        "--param",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="another constructor param (VALUE read as JSON if it parses); repeatable",
    )
    er.add_argument("--max-prompts", type=int, help="evaluate a random sample of this many prompts")
    er.add_argument("--seed", type=int, default=0, help="seed of that sample (default 0)")
    er.add_argument(
        "--min-agreement",
        type=float,
        default=0.7,
        help="flag languages below this agreement as unreliable (default 0.7)",
    )
    tr = sub.add_parser("train-router", help="fit the embedding router on a reward-routed run")
    tr.add_argument("run_dir")
    tr.add_argument("--out", help="where to save it (default: RUN_DIR/router)")
    tr.add_argument(
        "--model", default="bundled", help="sentence-transformers model (default: bundled)"
    )
    tr.add_argument("--k", type=int, default=15, help="neighbours per prompt")
    rep = sub.add_parser(
        "report", help="tables, figures and an HTML page for a run directory (rebuilt from it)"
    )
    rep.add_argument("run_dir")
    rep.add_argument(
        "--open", action="store_true", help="open report.html in the web browser ($BROWSER)"
    )
    return parser


def _load(args: argparse.Namespace) -> tuple[RunConfig, RunParts]:
    """The config the flags describe, checked (``preflight``), with what checking built."""
    from arbitrage.config import default_config, load_config, parse_config
    from arbitrage.factories import preflight

    config = load_config(args.config) if args.config else default_config()
    data = config.public_dict()
    if args.out:
        data["out"] = args.out
    if args.seed is not None:
        data["seed"] = args.seed
    if getattr(args, "engine", None):
        data["engine"] = args.engine
    if args.n_prompts is not None:
        data["pool"]["n_prompts"] = args.n_prompts
    config = parse_config(data)
    return config, preflight(config)


def _run(args: argparse.Namespace) -> int:
    import asyncio

    from rich.console import Console, Group
    from rich.live import Live
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        SpinnerColumn,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    from arbitrage.commands.live import TeacherPanel
    from arbitrage.commands.run import arun_config

    console = Console(stderr=True)
    config, parts = _load(args)
    # The pool's own line follows once it is built: a prompts file or a writer model
    # decides what it holds, not pool.n_prompts and pool.languages.
    for line in banner_lines(config, __version__):
        console.print(line, markup=False, highlight=False, soft_wrap=True)
    if any(is_local(t.model) for t in config.teachers):
        console.print(
            "local models load on first use (the first run converts them: about a minute each)"
        )
    if not console.is_terminal:  # a log: plain lines, no redrawn bar (run_log.py)
        return _finish(config, _run_logged(config, parts, console, args.progress_every))
    progress = Progress(
        SpinnerColumn(),
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=console,
    )
    panel = TeacherPanel()
    _freeze_imports()
    with Live(Group(progress, panel), console=console, refresh_per_second=4):
        run = arun_config(
            config,
            progress=progress,
            panel=panel,
            on_pool=lambda line: console.print(line, markup=False, soft_wrap=True),
            parts=parts,
        )
        result = asyncio.run(run)
    return _finish(config, result)


def _run_logged(config: RunConfig, parts: RunParts, console: Any, every_s: float) -> RunResult:
    """The run for a log (stderr not a terminal): a plain progress line every
    ``every_s`` seconds instead of the live panel."""
    import asyncio

    from rich.progress import Progress

    from arbitrage.commands.live import TeacherPanel
    from arbitrage.commands.run import arun_config
    from arbitrage.commands.run_log import ProgressLog

    def write(line: str) -> None:
        console.print(line, markup=False, highlight=False, soft_wrap=True)

    progress = Progress(console=console, disable=True)  # counts; never drawn
    panel = TeacherPanel()
    _freeze_imports()
    with ProgressLog(progress, lambda: panel.teachers, write, interval_s=every_s):
        run = arun_config(config, progress=progress, panel=panel, on_pool=write, parts=parts)
        return asyncio.run(run)


def _finish(config: RunConfig, result: RunResult) -> int:
    """The end of ``arbitrage run``: the tables on stdout, and where everything is."""
    from rich.console import Console

    from arbitrage.outputs.report import (
        mixture_table,
        samples_fusion_lines,
        scoring_line,
        teachers_table,
        wins_table,
    )
    from arbitrage.outputs.report_files import mixture_counts

    summary = result.summary()
    out = Console()
    out.print(wins_table(summary))
    out.print(teachers_table(summary))
    rows = summary["with_winner"]
    out.print(
        f"{rows} rows from {summary['prompts']} prompts "
        f"({summary['generations_per_prompt']} generations per prompt, "
        f"${summary['cost_usd']:.4f}) in {result.elapsed_s:.0f} s"
    )
    if line := scoring_line(summary):
        out.print(line)
    for line in samples_fusion_lines(summary):
        out.print(line, markup=False)
    mixture = mixture_counts(config.out)
    out.print(mixture_table(mixture))
    out.print(
        f"dataset: {config.out}/dataset (datasets.load_from_disk), "
        f"pairs: {config.out}/preference, card: {config.out}/README.md, "
        f"report: {config.out}/report.html",
        markup=False,
        soft_wrap=True,  # a path cut at the console's width is no path to copy
    )
    if not mixture["rows"]:
        raise DataError(_no_rows(config.out, summary, mixture))
    return 0


def _no_rows(out: str, summary: dict[str, Any], mixture: dict[str, Any]) -> str:
    """Why a finished run's dataset is empty, in one line."""
    if not summary["with_winner"]:
        answers = ", ".join(f"{n} {status}" for status, n in sorted(summary["statuses"].items()))
        return (
            f"the run kept no row: no prompt of {summary['prompts']} has a winning answer "
            f"(answers: {answers or 'none'}); see {out}/report.html for why"
        )
    dropped = ", ".join(f"{n} {why}" for why, n in sorted(mixture["dropped"].items()))
    return (
        f"the run kept no row: the mixture dropped every winner ({dropped}); "
        f"see {out}/dropped.jsonl for why"
    )


def _freeze_imports() -> None:
    """Import litellm now and move every object alive to the collector's permanent
    generation: a full collection otherwise re-walks litellm's ~370,000 import-time
    objects (0.2-0.3 s each time, every few hundred calls). +32% calls/s at
    concurrency 256 (benchmarks/throughput.py)."""
    import gc

    from arbitrage.calls.llm import litellm

    litellm()
    gc.collect()
    gc.freeze()


def _report(args: argparse.Namespace) -> int:
    from rich.console import Console

    from arbitrage.outputs.report import (
        mixture_table,
        samples_fusion_lines,
        scoring_line,
        teachers_table,
        text_table,
        wins_table,
    )
    from arbitrage.outputs.report_files import report_run
    from arbitrage.rundir import open_result

    config, outcomes = open_result(args.run_dir)  # read at each pass, as a run's outputs
    report, _ = report_run(args.run_dir, config, outcomes)
    out = Console()
    for table in (wins_table, teachers_table):
        out.print(table(report.summary))
    out.print(mixture_table(report.summary["mixture"]))
    out.print(text_table(report.summary["text"]))
    if line := scoring_line(report.summary):
        out.print(line)
    for line in samples_fusion_lines(report.summary):
        out.print(line, markup=False)
    figures = ", ".join(str(p) for k, p in report.paths.items() if p.suffix == ".png")
    out.print(f"report: {report.paths['html']}  figures: {figures}")
    out.print(f"written in {report.summary['report_s']:.1f} s")
    if args.open:
        import webbrowser

        if not webbrowser.open(report.paths["html"].resolve().as_uri()):
            out.print("no web browser found: open the report's path above")
    return 0


def _eval_routers(args: argparse.Namespace) -> int:
    from rich.console import Console

    from arbitrage.commands.router_eval import eval_routers, parse_params, show

    result, png = eval_routers(
        args.run_dir,
        routers=args.router,
        params=parse_params(args.param),
        budgets=args.budget,
        embedding=args.embedding,
        seed=args.seed,
    )
    show(result, Console())
    print(f"plot: {png}, numbers: {png.with_suffix('.json')}")
    return 0


def _eval_reward(args: argparse.Namespace) -> int:
    import json

    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    from arbitrage.commands.reward_eval import build_scorer, eval_reward, table
    from arbitrage.config import env_name_problem
    from arbitrage.errors import ConfigError

    problem = args.api_key_env and env_name_problem(args.api_key_env)
    if problem:  # before anything quotes it as a variable's name
        raise ConfigError(f"--api-key-env: {problem}")
    params = {}
    for item in args.param:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"--param expects KEY=VALUE, got {item!r}")
        try:
            params[key] = json.loads(value)
        except json.JSONDecodeError:
            params[key] = value
    scorer = build_scorer(
        args.kind,
        model=args.model,
        api_base=args.api_base,
        api_key_env=args.api_key_env,
        params=params,
    )
    console = Console(stderr=True)
    progress = Progress(
        TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), console=console
    )
    with progress:
        result, png = eval_reward(
            args.run_dir,
            scorer,
            max_prompts=args.max_prompts,
            seed=args.seed,
            min_agreement=args.min_agreement,
            progress=progress,
        )
    out = Console()
    out.print(table(result))
    if result["unreliable"]:
        out.print(f"unreliable: {', '.join(result['unreliable'])}")
    out.print(f"plot: {png}, numbers: {result['run_dir']}/reward_agreement.json")
    return 0


def _retry_failed(args: argparse.Namespace) -> int:
    import asyncio

    from arbitrage.commands.retry_failed import aretry_failed
    from arbitrage.commands.run import arun_config

    retried, result = asyncio.run(aretry_failed(args.run_dir, resume=arun_config))
    if result is None:
        print(f"{args.run_dir}: no failed calls to retry")
        return 0
    failing = sum(o.has_failed_call for o in result.outcomes)
    print(f"retried {retried} prompts; {failing} still have a failed call; outputs rebuilt")
    return 0


def _estimate(args: argparse.Namespace) -> int:
    from rich.console import Console

    from arbitrage.commands.estimate import estimate, estimate_table
    from arbitrage.config import default_config, load_config, parse_config

    config = load_config(args.config) if args.config else default_config()
    if args.n_prompts is not None:
        data = config.public_dict()
        data["pool"]["n_prompts"] = args.n_prompts
        config = parse_config(data)
    Console().print(estimate_table(estimate(config)))
    return 0


def _train_router(args: argparse.Namespace) -> int:
    from arbitrage.commands.router_eval import train_router

    path = train_router(args.run_dir, args.out, model=args.model, k=args.k)
    print(f"saved: {path}  (use: router: {{name: embedding, params: {{path: {path}}}}})")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``arbitrage`` console script."""
    args = _parser().parse_args(argv)
    if not sys.stderr.isatty():  # a log: tqdm bars (model conversion) would be redrawn into it
        os.environ.setdefault("TQDM_DISABLE", "1")
    # Our own progress bar is the one to watch; HF's per-step bars would interleave with it.
    os.environ.setdefault("HF_DATASETS_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    try:
        if args.command == "run":
            return _run(args)
        if args.command == "retry-failed":
            return _retry_failed(args)
        if args.command == "estimate":
            return _estimate(args)
        if args.command == "eval-routers":
            return _eval_routers(args)
        if args.command == "eval-reward":
            return _eval_reward(args)
        if args.command == "train-router":
            return _train_router(args)
        if args.command == "report":
            return _report(args)
        if args.command == "default-config":
            from importlib.resources import files

            print(
                files("arbitrage").joinpath("data/default.yaml").read_text(encoding="utf-8"), end=""
            )
            return 0
    except ArbitrageError as exc:
        print(f"arbitrage: error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:  # the machine's, not ours: say which file and what happened
        full = exc.errno in NO_SPACE
        print(
            f"arbitrage: error: {DiskFull(exc.filename or 'a file') if full else exc}",
            file=sys.stderr,
        )
        return 2
    except KeyboardInterrupt:
        print(
            "arbitrage: interrupted; finished prompts are saved - rerun the same command to resume",
            file=sys.stderr,
        )
        return 130
    return 2


if __name__ == "__main__":
    sys.exit(main())
