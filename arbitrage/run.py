"""A whole run from a config: build the pool, run the loop, write the outputs.

Run directory (``config.out``)::

    .lock            held (flock) by the one process writing the directory: pid, host, since
    run.json         config hash and version: a rerun resumes only the same config
    config.yaml      the resolved config (env var names, never keys)
    prompts.jsonl    the pool, written before any teacher is called
    outcomes.jsonl   every prompt's candidates, rewards and winner, appended per batch
    cache.sqlite     every returned teacher call (``cache.path`` moves it)
    dataset/         the SFT mixture (datasets.load_from_disk); also mixture.jsonl, .parquet
    preference/      DPO pairs (prompt / chosen / rejected); also preference.jsonl, .parquet
    mixture.json     rows kept, dropped by reason, pairs, rows per language × task × teacher
    dropped.jsonl    every dropped row: prompt id, language, task, teacher, reason
    README.md        the dataset card
    report.json      wins, win rates, generations, failures, cost, mixture and text stats
    report.html      the report page (figures embedded); figures/*.png

Re-running the same command after an interruption skips every prompt already
in ``outcomes.jsonl``. A second run on the same directory while one is going refuses
at once (``RunLocked``); a killed run's lock dies with it (``arbitrage.run_lock``).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from arbitrage import __version__
from arbitrage.config import LanguageCheckConfig, RunConfig, ScorerConfig
from arbitrage.errors import ConfigError
from arbitrage.pipeline import Arbitrage, RunResult
from arbitrage.records import Outcome, Prompt, dumps, read_jsonl
from arbitrage.run_lock import LOCK_NAME, hold_run_dir
from arbitrage.teachers import Teacher, engine_report, engine_teachers, open_cache

if TYPE_CHECKING:
    from rich.progress import Progress

    from arbitrage.engine.budget import Budget
    from arbitrage.engine.cache import CallCache
    from arbitrage.live import TeacherPanel
    from reward.base import RewardModel


ENGINE_KEYS = (
    "requests_per_minute",
    "tokens_per_minute",
    "input_cost_per_mtok",
    "output_cost_per_mtok",
)


def config_hash(config: RunConfig) -> str:
    """Hash of everything that changes outcomes: ``out`` and ``mixture`` excluded, so a
    rerun with other mixture settings rebuilds the dataset without asking any teacher."""
    data = config.public_dict()
    data.pop("out", None)
    data.pop("mixture", None)
    # How calls are made (cache, budget, breaker, rate limits, prices) never changes results.
    for key in ("cache", "breaker", "budget_usd", "engine", "ray_address", "ray"):
        data.pop(key, None)
    for teacher in data.get("teachers", []):
        for key in ENGINE_KEYS:
            teacher.pop(key, None)
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:16]


def preflight(config: RunConfig) -> RewardModel:
    """Fail fast, before any work is paid for: unknown router, router param, reward kind
    or reward param, or an API key environment variable that is not set. Returns the
    scorer it built to check the reward's params (``build_scorer``)."""
    from arbitrage.config import closest_hint
    from reward import available
    from routers import get_router

    get_router(config.router.name, [t.name for t in config.teachers], **config.router.params)
    if config.engine == "ray":
        from arbitrage.cluster import require_ray

        require_ray()
    kinds = [*available(), "ensemble"]
    for kind in [s.kind for s in config.reward.scorers()]:
        if kind not in kinds:
            raise ConfigError(f"unknown reward kind {kind!r}{closest_hint(kind, kinds)}")
    envs = [(f"teacher {t.name!r}", t.api_key_env) for t in config.teachers]
    envs += [("reward", s.api_key_env) for s in config.reward.scorers()]
    for who, env in envs:
        if env is not None and not os.environ.get(env):
            raise ConfigError(f"{who}: environment variable {env} is not set")
    return build_scorer(config)  # bad reward params fail here, not after the pool is paid for


def build_scorer(config: RunConfig) -> RewardModel:
    """What makes the reward calls: the configured scorer, or an ensemble's ``Panel``."""
    from reward.ensemble import Panel

    if config.reward.kind == "ensemble":
        return Panel({m.label: make_scorer(m) for m in config.reward.members})
    return make_scorer(config.reward)


def wrap_reward(config: RunConfig, scorer: RewardModel) -> RewardModel:
    """The scorer with what the config adds, in this order: the language gate (``gate``
    mode: wrong-language answers are unscored before any statistics see them), the
    ensemble's weighted sum, length control, per-language normalisation, and the
    language penalty (``penalty`` mode, in the final score's units). The stateful
    steps run where this is called: on the driver in a cluster run."""
    from reward.calibrate import LanguageNormalised, LengthControl
    from reward.ensemble import WeightedSum

    cfg = config.reward
    reward = scorer
    if cfg.language.mode == "gate":
        reward = _language(cfg.language, reward)
    if cfg.kind == "ensemble":
        reward = WeightedSum(reward, {m.label: m.weight for m in cfg.members})
    if cfg.length.mode != "off":
        reward = LengthControl(
            reward,
            cfg.length.mode,
            per_1k_chars=cfg.length.per_1k_chars,
            min_samples=cfg.length.min_samples,
        )
    if cfg.normalise == "language":
        reward = LanguageNormalised(reward)
    if cfg.language.mode == "penalty":
        reward = _language(cfg.language, reward)
    return reward


def _language(cfg: LanguageCheckConfig, inner: RewardModel) -> RewardModel:
    from reward.gate import LanguageGate

    return LanguageGate(
        inner,
        "gate" if cfg.mode == "gate" else "penalty",
        threshold=cfg.threshold,
        penalty=cfg.penalty,
        per_language=cfg.per_language,
    )


def build_reward(config: RunConfig) -> RewardModel:
    """The reward model a config names, with everything the config wraps around it."""
    return wrap_reward(config, build_scorer(config))


def make_scorer(cfg: ScorerConfig) -> RewardModel:
    """One scorer (a reward kind with its model, endpoint and params)."""
    from reward import get_reward

    params: dict[str, Any] = dict(cfg.params)
    if cfg.model is not None:
        params.setdefault("judge_model" if cfg.kind == "local" else "model", cfg.model)
    if cfg.kind in ("judge", "pairwise"):
        params.setdefault("api_base", cfg.api_base)
        params.setdefault("api_key_env", cfg.api_key_env)
    elif cfg.api_base or cfg.api_key_env:
        raise ConfigError(
            f"reward api_base / api_key_env apply to kinds 'judge' and 'pairwise', not {cfg.kind!r}"
        )
    return get_reward(cfg.kind, **params)


def attach_reward(reward: RewardModel, cache: CallCache | None, budget: Budget | None) -> None:
    """Give each part of the reward that makes calls (judges, HF models) the run's cache,
    and each paid one the run's budget."""
    for part in reward.parts():
        if hasattr(part, "cache"):
            part.cache = cache
        if hasattr(part, "budget") and budget is not None:
            part.budget = budget


def reward_spent(reward: RewardModel) -> float:
    """USD the reward's judges have spent."""
    return sum(float(getattr(part, "spent_usd", 0.0)) for part in reward.parts())


async def abuild_pool(config: RunConfig, teachers: Sequence[Teacher]) -> tuple[list[Prompt], str]:
    """The prompt pool a config describes, and where it came from, in words (for
    ``pool_line``)."""
    from arbitrage.config import DEFAULT_N_PROMPTS
    from arbitrage.personas import load_personas
    from arbitrage.pool import awrite, plan, take_prompts

    pool = config.pool
    if pool.prompts:
        return take_prompts(pool.prompts, pool.n_prompts)
    personas = load_personas(pool.personas, column=pool.persona_column)
    n_prompts = pool.n_prompts or DEFAULT_N_PROMPTS
    slots = plan(personas, pool.languages, pool.tasks, n_prompts, seed=config.seed)
    writer = None
    if pool.writer != "template":
        writer = next(t for t in teachers if t.name == pool.writer)
    origin = f"written from {pool.personas} personas (writer: {pool.writer})"
    return await awrite(slots, writer, seed=config.seed), origin


def pool_line(prompts: Iterable[Prompt], origin: str) -> str:
    """A run's start-up line for its pool: the languages and tasks it really holds, then
    where they came from (``"pool: 805 prompts × 1 language (en) × 8 tasks, from
    prompts.jsonl"``)."""
    from arbitrage.pool import describe

    return f"pool: {describe(prompts)}, {origin}"


class RunDir:
    """The files of one run; appends are flushed and fsynced, so a kill loses at most a batch."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    def config(self) -> RunConfig:
        """The config the run was started with (``config.yaml``), its ``out`` this folder
        (where the run is now, wherever it was first written)."""
        from arbitrage.config import load_config, parse_config

        data = load_config(self.path / "config.yaml").public_dict()
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
        import yaml

        (self.path / "config.yaml").write_text(
            yaml.safe_dump(config.public_dict(), sort_keys=False, allow_unicode=True)
        )
        marker.write_text(json.dumps({"config_hash": digest, "version": __version__}) + "\n")

    def load_prompts(self) -> list[Prompt] | None:
        if not (self.path / "prompts.jsonl").exists():
            return None
        return list(self.iter_prompts())

    def iter_prompts(self) -> Iterator[Prompt]:
        """The saved pool, a line at a time (never held in memory at once)."""
        return read_jsonl(self.path / "prompts.jsonl", Prompt.from_dict, "prompt")

    def save_prompts(self, prompts: Sequence[Prompt]) -> None:
        tmp = self.path / "prompts.jsonl.tmp"
        tmp.write_text("".join(dumps(p) + "\n" for p in prompts), encoding="utf-8")
        os.replace(tmp, self.path / "prompts.jsonl")

    def load_outcomes(self) -> list[Outcome]:
        """Outcomes written so far; a torn last line (killed mid-write) is dropped."""
        path = self.path / "outcomes.jsonl"
        if not path.exists():
            return []
        return list(read_jsonl(path, Outcome.from_dict, "outcome"))

    def append_outcomes(self, outcomes: Sequence[Outcome]) -> None:
        path = self.path / "outcomes.jsonl"
        with path.open("a", encoding="utf-8") as fh:
            fh.write("".join(dumps(o) + "\n" for o in outcomes))
            fh.flush()
            os.fsync(fh.fileno())

    def rewrite_outcomes(self, outcomes: Sequence[Outcome]) -> None:
        tmp = self.path / "outcomes.jsonl.tmp"
        tmp.write_text("".join(dumps(o) + "\n" for o in outcomes), encoding="utf-8")
        os.replace(tmp, self.path / "outcomes.jsonl")

    def write_outputs(
        self, config: RunConfig, result: RunResult, *, extra: dict[str, Any] | None = None
    ) -> None:
        """The mixture, its card and the report (``extra`` joins ``report.json``); then the
        Hub, if the config names a repo."""
        import yaml

        from arbitrage.card import push_to_hub, write_card
        from arbitrage.mixture import make_mixture, save_mixture
        from arbitrage.report_files import write_report

        # this run's mixture settings (not part of the config hash, so they may have changed)
        (self.path / "config.yaml").write_text(
            yaml.safe_dump(config.public_dict(), sort_keys=False, allow_unicode=True)
        )
        mixture = make_mixture(result.outcomes, config.mixture, teacher_order=result.teachers)
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


async def arun_config(
    config: RunConfig,
    *,
    progress: Progress | None = None,
    reward_model: RewardModel | None = None,
    panel: TeacherPanel | None = None,
    on_pool: Callable[[str], None] | None = None,
) -> RunResult:
    """Run a config end to end and write its run directory; resumes an interrupted run.

    ``on_pool`` is given ``pool_line`` once the pool is built (or, resuming, read back).
    The run directory is locked for the whole run, on either engine (``hold_run_dir``).
    """
    scorer = preflight(config)
    with hold_run_dir(config.out):
        if config.engine == "ray":
            from arbitrage.cluster import arun_ray

            return await arun_ray(
                config, progress=progress, reward_model=reward_model, panel=panel, on_pool=on_pool
            )
        return await _arun_local(
            config,
            reward_model=reward_model if reward_model is not None else scorer,
            progress=progress,
            panel=panel,
            on_pool=on_pool,
        )


async def _arun_local(
    config: RunConfig,
    *,
    reward_model: RewardModel,
    progress: Progress | None,
    panel: TeacherPanel | None,
    on_pool: Callable[[str], None] | None,
) -> RunResult:
    from routers import get_router

    teachers = engine_teachers(config)
    if panel is not None:
        panel.attach(teachers)
    names = [t.name for t in teachers]
    router = get_router(config.router.name, names, seed=config.seed, **config.router.params)
    reward = wrap_reward(config, reward_model)
    run_dir = RunDir(config.out)
    run_dir.prepare(config)
    cache = open_cache(config)
    for teacher in teachers:
        teacher.cache = cache
    attach_reward(reward, cache, teachers[0].budget if teachers else None)

    prompts = run_dir.load_prompts()
    if prompts is None:
        prompts, origin = await abuild_pool(config, teachers)
        run_dir.save_prompts(prompts)
    else:
        origin = f"resumed from {run_dir.path / 'prompts.jsonl'}"
    if on_pool is not None:
        on_pool(pool_line(prompts, origin))
    done = run_dir.load_outcomes()
    run_dir.rewrite_outcomes(done)  # drop a torn last line before appending

    engine = Arbitrage(teachers, reward, router, batch_size=config.batch_size, progress=progress)
    try:
        result = await engine.arun(prompts, done=done, on_outcomes=run_dir.append_outcomes)
    finally:
        if cache is not None:
            cache.close()

    extra = engine_report(teachers, cache)
    extra["engine"]["judge_usd"] = round(reward_spent(reward), 6)
    run_dir.write_outputs(config, result, extra=extra)
    return result


def run_config(config: RunConfig, **kwargs: Any) -> RunResult:
    """Synchronous ``arun_config``."""
    return asyncio.run(arun_config(config, **kwargs))
