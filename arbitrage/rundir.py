"""The run directory: its files, and the one way every command opens an existing one.

Layout (``config.out``)::

    .lock            held (flock) by the one process writing the directory: pid, host, since
    run.json         config hash and version: a rerun resumes only the same config
    config.yaml      the resolved config (env var names, never keys)
    prompts.jsonl    the pool, written before any teacher is called
    outcomes.jsonl   every prompt's candidates, rewards and winner, appended per batch
    checkpoint.pkl   what a rerun relearns from outcomes.jsonl, up to a byte offset (resume)
    turns.jsonl      multi-turn runs: each follow-up turn's prompt (arbitrage.prompts.conversation)
    cache.sqlite     every returned teacher call (``cache.path`` moves it)
    dataset/         the SFT mixture (datasets.load_from_disk); also mixture.jsonl, .parquet
    preference/      DPO pairs (prompt / chosen / rejected); also preference.jsonl, .parquet
    mixture.json     rows kept, dropped by reason, pairs, rows per language × task × teacher
    dropped.jsonl    every dropped row: prompt id, language, task, teacher, reason
    README.md        the dataset card
    report.json      wins, win rates, generations, failures, cost, mixture and text stats
    report.html      the report page (figures embedded); figures/*.png
    samples/         the report's sample browser data: index.js, c00000.js, ... (outputs/browser.py)

Every command that opens an existing run (``report``, ``retry-failed``, ``eval-routers``,
``eval-reward``, ``train-router``) goes through ``RunDir.open``, which refuses a folder
that is not a run directory with one ``DataError`` line; ``load_run`` adds the config
and the outcomes. ``arbitrage run`` itself creates or resumes one (``RunDir.prepare``).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from arbitrage import __version__
from arbitrage.config import RunConfig
from arbitrage.errors import NO_SPACE, ArbitrageError, ConfigError, DataError, DiskFull
from arbitrage.records import Outcome, Prompt, dumps, end_whole_line, read_jsonl, replacing
from arbitrage.run_lock import LOCK_NAME

if TYPE_CHECKING:
    from arbitrage.pipeline import RunResult
    from arbitrage.run_outcomes import RunOutcomes

ENGINE_KEYS = (
    "requests_per_minute",
    "tokens_per_minute",
    "input_cost_per_mtok",
    "output_cost_per_mtok",
    "max_reply_chars",
    "mode",  # online or through a batch API: the same answers
    "batch_api",
    # One request with n, or a call a sample: a real provider's n-th choice is not the
    # answer a call with the n-th seed gets, but both are draws from the same model at
    # the same temperature (a seed pins nothing across providers or servers), and both
    # are stored under the same per-sample cache key, so a switch resumes the run from
    # its cache instead of paying for every sample again.
    "samples_via",
)
#: How a judge's calls are made: never what it answers.
JUDGE_ENGINE_KEYS = ("transport", "timeout_s", "retries", "max_reply_chars", "mode", "batch_api")


def config_hash(config: RunConfig) -> str:
    """Hash of everything that changes outcomes: ``out`` and ``mixture`` excluded, so a
    rerun with other mixture settings rebuilds the dataset without asking any teacher."""
    data = config.public_dict()
    data.pop("out", None)
    data.pop("mixture", None)
    # How calls are made (cache, budget, breaker, rate limits, prices) never changes results.
    # Nor do row targets: rounds only append prompts, so a raised target resumes the run.
    for key in ("cache", "breaker", "budget_usd", "engine", "ray_address", "ray",
                "target_rows", "max_prompts", "batch"):  # fmt: skip
        data.pop(key, None)
    # One turn is no conversation: the hash of every single-turn run stays what it was.
    conversation = data.pop("conversation", None)
    if conversation is not None and conversation["turns"] > 1:
        data["conversation"] = conversation
    simulator = conversation.get("simulator") if conversation else None
    own = [simulator] if isinstance(simulator, dict) else []  # a model of its own
    for teacher in [*data.get("teachers", []), *own]:
        for key in ENGINE_KEYS:
            teacher.pop(key, None)
        if teacher.get("samples") == 1:  # the default: a run from before samples keeps its hash
            teacher.pop("samples")
    if data.get("fusion") is None:
        data.pop("fusion", None)
    for key, default in (("constraints", 0), ("write_tests", False)):
        if data.get("pool", {}).get(key, default) == default:  # older runs keep their hash
            data["pool"].pop(key, None)
    reward = data.get("reward", {})
    if reward.get("verify", 0) is None:  # no verifier gate: older runs keep their hash
        reward.pop("verify")
    for scorer in [reward, *reward.get("members", [])]:
        for key in JUDGE_ENGINE_KEYS:
            scorer.pop(key, None)
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:16]


@contextlib.contextmanager
def writing(path: Path) -> Iterator[None]:
    """A write to ``path``; a full disk is ``DiskFull`` (what was written before stays)."""
    try:
        yield
    except OSError as exc:
        if exc.errno in NO_SPACE:
            raise DiskFull(path) from None
        raise


class RunDir:
    """The files of one run; appends are flushed and fsynced, so a kill loses at most a
    batch, and a full disk (``DiskFull``) loses nothing written before it."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    @classmethod
    def open(cls, path: str | Path) -> RunDir:
        """An existing run directory; ``DataError`` if ``path`` is not one."""
        path = Path(path)
        if not path.is_dir():
            raise DataError(f"{path} is not a run directory: no such run directory exists")
        if not ((path / "run.json").is_file() and (path / "config.yaml").is_file()):
            raise DataError(f"{path} is not a run directory (no run.json / config.yaml)")
        return cls(path)

    def config(self) -> RunConfig:
        """The config the run was started with (``config.yaml``), its ``out`` this folder
        (where the run is now, wherever it was first written)."""
        from arbitrage.config import load_config, parse_config

        config_file = self.path / "config.yaml"
        try:
            data = load_config(config_file).public_dict()
        except ArbitrageError as exc:
            raise DataError(f"{config_file}: unreadable run config ({exc})") from None
        data["out"] = str(self.path)
        return parse_config(data)

    def prepare(self, config: RunConfig) -> None:
        """Create the directory, or check that it holds a run of the same config."""
        marker = self.path / "run.json"
        digest = config_hash(config)
        if marker.exists():
            previous = json.loads(marker.read_text()).get("config_hash")
            if previous != digest:
                raise ConfigError(
                    f"{self.path} holds a run of a different config (or of a version with "
                    "other defaults); use another --out or delete that directory"
                )
            return
        if self.path.exists() and any(p.name != LOCK_NAME for p in self.path.iterdir()):
            raise ConfigError(f"{self.path} exists and is not a run directory; use another --out")
        self.path.mkdir(parents=True, exist_ok=True)
        self._write_config(config)
        with writing(marker):
            marker.write_text(json.dumps({"config_hash": digest, "version": __version__}) + "\n")

    def _write_config(self, config: RunConfig) -> None:
        import yaml

        path = self.path / "config.yaml"
        with writing(path):
            path.write_text(
                yaml.safe_dump(config.public_dict(), sort_keys=False, allow_unicode=True)
            )

    def has_pool(self) -> bool:
        """Whether the pool is saved (``prompts.jsonl``): a resumed run reads it back."""
        return (self.path / "prompts.jsonl").exists()

    def load_prompts(self) -> list[Prompt] | None:
        """The saved pool, or ``None`` before it is written."""
        if not self.has_pool():
            return None
        return list(self.iter_prompts())

    def iter_prompts(self, start: int = 0) -> Iterator[Prompt]:
        """The saved pool, a line at a time (never held in memory at once), from its
        ``start``-th prompt on."""
        return read_jsonl(self.path / "prompts.jsonl", Prompt.from_dict, "prompt", start=start)

    def save_prompts(self, prompts: Sequence[Prompt]) -> None:
        path = self.path / "prompts.jsonl"
        with writing(path), replacing(path) as fh:  # a full disk keeps no half of it
            fh.write("".join(dumps(p) + "\n" for p in prompts).encode())

    @property
    def outcomes_path(self) -> Path:
        return self.path / "outcomes.jsonl"

    def load_outcomes(self) -> list[Outcome]:
        """Outcomes written so far; a torn last line (killed mid-write) is dropped."""
        return list(self.iter_outcomes())

    def iter_outcomes(self, offset: int = 0) -> Iterator[Outcome]:
        """Outcomes written so far (from byte ``offset``: a row's start), a line at a time
        (never held in memory at once); a torn last line is dropped, any other bad line is
        a ``DataError`` naming it."""
        if not self.outcomes_path.exists():
            return iter(())
        return read_jsonl(self.outcomes_path, Outcome.from_dict, "outcome", offset=offset)

    def final_outcomes(self) -> RunOutcomes:
        """The run's result: each prompt's last outcome written, in pool order (then the
        follow-up turns'), read from ``outcomes.jsonl`` at each pass, never held."""
        from arbitrage.prompts.conversation import iter_run_prompts
        from arbitrage.run_outcomes import RunOutcomes

        def prompt_ids() -> Iterator[str]:
            return (prompt.id for prompt in iter_run_prompts(self))

        return RunOutcomes(self.outcomes_path, prompt_ids)

    def mend_outcomes(self) -> None:
        """Before a resumed run appends: cut a torn last line off ``outcomes.jsonl`` in place
        (the rows before it are not rewritten), so the next row starts on a line of its own.
        A started run has an ``outcomes.jsonl``, if an empty one."""
        self.outcomes_path.touch()
        end_whole_line(self.outcomes_path)

    def append_outcomes(self, outcomes: Sequence[Outcome]) -> int:
        """Append a window's outcomes; the file's size after them. A full disk may leave a
        torn last line, which the next run cuts off (``mend_outcomes``) before it appends."""
        with writing(self.outcomes_path), self.outcomes_path.open("ab") as fh:
            fh.write("".join(dumps(o) + "\n" for o in outcomes).encode())
            fh.flush()
            os.fsync(fh.fileno())
            return fh.tell()

    @property
    def turns_path(self) -> Path:
        return self.path / "turns.jsonl"

    def iter_turns(self) -> Iterator[Prompt]:
        """A multi-turn run's follow-up prompts (``arbitrage.prompts.conversation``), a line at a
        time, as ``iter_outcomes`` reads its file; none for a single-turn run."""
        if not self.turns_path.exists():
            return iter(())
        return read_jsonl(self.turns_path, Prompt.from_dict, "turn")

    def append_turn(self, prompt: Prompt) -> None:
        """Append a follow-up prompt, before it is answered (a torn last line is cut off
        first, as ``mend_outcomes`` does for outcomes)."""
        if self.turns_path.exists():
            end_whole_line(self.turns_path)
        with writing(self.turns_path), self.turns_path.open("a", encoding="utf-8") as fh:
            fh.write(dumps(prompt) + "\n")
            fh.flush()
            os.fsync(fh.fileno())

    def rewrite_outcomes(self, outcomes: Iterable[Outcome]) -> None:
        """Replace ``outcomes.jsonl`` at once (a temporary file, fsynced, then renamed):
        a kill leaves either the old file or the new one, never part of either. The resume
        checkpoint (``arbitrage.checkpoint``), which describes the old file, goes first."""
        from arbitrage.checkpoint import drop

        drop(self.path)
        with writing(self.outcomes_path), replacing(self.outcomes_path) as fh:
            for outcome in outcomes:
                fh.write((dumps(outcome) + "\n").encode())

    def write_outputs(
        self, config: RunConfig, result: RunResult, *, extra: dict[str, Any] | None = None
    ) -> None:
        """The mixture, its card and the report (``extra`` joins ``report.json``); then the
        Hub, if the config names a repo. Each part makes its passes over
        ``result.outcomes`` (``final_outcomes()`` for ``arbitrage run``: read from disk at
        each pass) and keeps what it needs of them, never every outcome."""
        from arbitrage.outputs.card import push_to_hub, write_card
        from arbitrage.outputs.mixture import make_mixture, save_mixture
        from arbitrage.outputs.report_files import write_report

        # this run's mixture settings (not part of the config hash, so they may have changed)
        self._write_config(config)
        mixture = make_mixture(
            result.outcomes,
            config.mixture,
            teacher_order=result.teachers,
            targets=config.target_rows,
        )
        save_mixture(mixture, self.path)
        extra = {
            "router": {"name": result.router, "state": result.router_state},
            "elapsed_s": round(result.elapsed_s, 2),
            **(extra or {}),
        }
        report = write_report(
            self.path, result.outcomes, result.teachers, mixture, config=config, extra=extra
        )
        write_card(self.path, config, mixture, report.summary)
        repo = config.mixture.push_to_hub
        if repo:
            push_to_hub(self.path, mixture, repo, private=config.mixture.private)


def load_run(path: str | Path) -> tuple[RunConfig, list[Outcome]]:
    """The config and outcomes of a run directory, every row held (what the evaluations
    replay); ``DataError`` if it is not one or holds no outcomes yet."""
    run = RunDir.open(path)
    config = run.config()
    outcomes = run.load_outcomes()
    if not outcomes:
        raise DataError(f"{run.path} holds no outcomes yet")
    return config, outcomes


def open_result(path: str | Path) -> tuple[RunConfig, RunOutcomes]:
    """The config and the result of a run directory (``RunDir.final_outcomes``: what
    ``arbitrage run`` writes its outputs from, read from disk at each pass, never held);
    ``DataError`` if it is not one or holds no outcomes yet."""
    run = RunDir.open(path)
    config = run.config()
    outcomes = run.final_outcomes()
    if not len(outcomes):
        raise DataError(f"{run.path} holds no outcomes yet")
    return config, outcomes
