"""From a config to the objects a run is made of: the router, the reward, the pool.

``preflight`` checks a config before anything is paid for or created and builds the
router and the scorer once; the run uses what it built (``RunParts``).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from arbitrage.config import LanguageCheckConfig, MemberConfig, RunConfig, ScorerConfig
from arbitrage.errors import ConfigError
from arbitrage.records import Prompt

if TYPE_CHECKING:
    from arbitrage.calls.budget import Budget
    from arbitrage.calls.cache import CallCache
    from arbitrage.calls.teachers import Teacher
    from reward.base import RewardModel
    from routers.base import Router


@dataclass(frozen=True)
class RunParts:
    """What ``preflight`` built, for one run: its router (not yet routed, so with no
    state) and its scorer (``build_scorer``, before ``wrap_reward``)."""

    router: Router
    scorer: RewardModel


def preflight(config: RunConfig) -> RunParts:
    """Fail fast, before any work is paid for and before the run directory is created
    (a config fixed after a failure here is no "different config"): an ``out`` that
    cannot be written, a prompts file that is not a pool, an unknown router, router
    param, reward kind or reward param, a model litellm knows no provider for, or an
    API key environment variable that is not set. Returns the router and the scorer it
    built to check them."""
    from arbitrage.registry import closest_hint
    from reward import available

    check_out(config.out)
    check_pool(config)
    router = build_router(config)
    if config.engine == "ray":
        from arbitrage.executors.ray.session import require_ray

        require_ray()
    kinds = [*available(), "ensemble"]
    for kind in [s.kind for s in config.reward.scorers()]:
        if kind not in kinds:
            raise ConfigError(f"unknown reward kind {kind!r}{closest_hint(kind, kinds)}")
    check_providers(config)
    envs = [(f"teacher {t.name!r}", t.api_key_env) for t in config.teachers]
    envs += [("reward", s.api_key_env) for s in config.reward.scorers()]
    for who, env in envs:
        if env is not None and not os.environ.get(env):
            raise ConfigError(f"{who}: environment variable {env} is not set")
    # bad reward params fail here, not after the pool is paid for
    return RunParts(router=router, scorer=build_scorer(config))


def check_out(out: str | Path) -> None:
    """``out`` is a directory this process may write, or can be made one."""
    path = Path(out)
    if path.exists() and not path.is_dir():
        raise ConfigError(f"out {path} is a file, not a directory; use another --out")
    existing = next(p for p in (path, *path.parents) if p.exists())
    if not existing.is_dir():
        raise ConfigError(f"out {path}: {existing} is a file, not a directory; use another --out")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise ConfigError(
            f"out {path}: cannot write to {existing} (read-only, or no permission); "
            "use another --out"
        )


def check_pool(config: RunConfig) -> None:
    """A prompts file is read and checked row by row now, unless the run directory
    already holds the pool it was read into (a resumed run never reads it again)."""
    from arbitrage.prompts.pool import take_prompts
    from arbitrage.rundir import RunDir

    if config.pool.prompts and not RunDir(config.out).has_pool():
        take_prompts(config.pool.prompts, config.pool.n_prompts)


def check_providers(config: RunConfig) -> None:
    """Every model that makes calls names a provider litellm knows (``openai/...``)."""
    from arbitrage.calls.client import known_provider, no_provider

    models = [(f"teacher {t.name!r}", t.model, t.api_base) for t in config.teachers]
    scorers = config.reward.scorers()
    for s in scorers:
        if s.kind in ("judge", "pairwise") and s.model:
            who = f"reward member {s.label!r}" if isinstance(s, MemberConfig) else "reward"
            models.append((who, s.model, s.api_base))
    for who, model, api_base in models:
        if not known_provider(model, api_base):
            raise ConfigError(f"{who}: {no_provider(model)}")


def build_router(config: RunConfig) -> Router:
    """The configured router over the configured teachers, seeded with the run's seed."""
    from routers import get_router

    names = [t.name for t in config.teachers]
    return get_router(config.router.name, names, seed=config.seed, **config.router.params)


def build_scorer(config: RunConfig) -> RewardModel:
    """What makes the reward calls: the configured scorer, or an ensemble's ``Panel``;
    behind the verifier gate when ``reward.verify`` names one."""
    from reward.ensemble import Panel
    from reward.fidelity import weigh_against

    weigh_against(config.pool.languages)
    batch = judge_batch(config)
    if config.reward.kind == "ensemble":
        members = config.reward.members
        scorer: RewardModel = Panel({m.label: make_scorer(m, batch) for m in members})
    else:
        scorer = make_scorer(config.reward, batch)
    verify = config.reward.verify
    if verify is None:
        return scorer
    from reward import get_reward
    from reward.verifiers.gate import VerifierGate

    return VerifierGate(scorer, get_reward(verify.kind, **verify.params), verify.threshold)


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


def judge_batch(config: RunConfig) -> Callable[[ScorerConfig], dict[str, Any]] | None:
    """How a judge with ``mode: batch`` sends (``calls/batch.py``), if the run has one."""
    if not any(s.mode == "batch" for s in config.reward.scorers()):
        return None
    import functools

    from arbitrage.calls.batch import BatchJournal, judge_batch_params

    journal = BatchJournal.shared(os.path.join(config.out, "batches.jsonl"))
    return functools.partial(judge_batch_params, settings=config.batch, journal=journal)


def make_scorer(
    cfg: ScorerConfig, batch: Callable[[ScorerConfig], dict[str, Any]] | None = None
) -> RewardModel:
    """One scorer (a reward kind with its model, endpoint and params); ``batch`` gives
    a ``mode: batch`` judge its send step (``judge_batch``)."""
    from reward import get_reward

    params: dict[str, Any] = dict(cfg.params)
    if cfg.mode == "batch":
        if batch is None:
            raise ConfigError("reward mode: batch sends in a run's batch jobs (arbitrage run)")
        if cfg.kind not in ("judge", "pairwise"):
            raise ConfigError(
                f"reward mode: batch applies to kinds 'judge' and 'pairwise', not {cfg.kind!r}"
            )
        params.update(batch(cfg))
    if cfg.model is not None:
        params.setdefault("judge_model" if cfg.kind == "local" else "model", cfg.model)
    call_keys = ("transport", "timeout_s", "retries", "max_reply_chars")
    if cfg.kind in ("judge", "pairwise"):
        params.setdefault("api_base", cfg.api_base)
        params.setdefault("api_key_env", cfg.api_key_env)
        for key in call_keys:
            params.setdefault(key, getattr(cfg, key))
    elif cfg.api_base or cfg.api_key_env:
        raise ConfigError(
            f"reward api_base / api_key_env apply to kinds 'judge' and 'pairwise', not {cfg.kind!r}"
        )
    else:
        # a dumped config (config.yaml) sets every key, so compare with the defaults
        fields = type(cfg).model_fields
        given = [k for k in call_keys if getattr(cfg, k) != fields[k].default]
        if given:
            raise ConfigError(
                f"reward {given[0]} applies to kinds 'judge' and 'pairwise', not {cfg.kind!r}"
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
    from arbitrage.prompts.personas import load_personas
    from arbitrage.prompts.pool import awrite, plan, take_prompts

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
    prompts = await awrite(slots, writer, seed=config.seed, max_tokens=pool.writer_max_tokens)
    if pool.write_tests and writer is not None:
        from reward.verifiers.writer import awrite_tests

        prompts = await awrite_tests(prompts, writer)
        origin += ", tests by the writer"
    if pool.constraints:
        from reward.verifiers.constraints import attach

        prompts = attach(prompts, pool.constraints, seed=config.seed)
        origin += f", {pool.constraints} constraint{'s' * (pool.constraints > 1)} each"
    return prompts, origin


def pool_line(held: str, origin: str) -> str:
    """A run's start-up line for its pool: the languages and tasks it really holds
    (``arbitrage.prompts.pool.describe``), then where they came from (``"pool: 805
    prompts × 1 language (en) × 8 tasks, from prompts.jsonl"``)."""
    return f"pool: {held}, {origin}"
