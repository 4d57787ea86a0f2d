"""Run configuration: pydantic models validated at construction; YAML only at the CLI edge.

Unknown keys are rejected with the key's dotted path and the closest valid key;
bad values name the key and the value. Secrets are never part of a config:
teachers and judges name the *environment variable* that holds their API key, a
value shaped like a key is refused there without being repeated, and so is any
``params`` entry named like a secret (``api_key``, ``token``, ``Authorization``...).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from arbitrage.calls.llm import is_local
from arbitrage.errors import ConfigError, DataError
from arbitrage.languages import check_code
from arbitrage.registry import closest_hint

# Model prefixes of the OpenAI-compatible providers that ``transport: direct`` serves.
DIRECT_PREFIXES = ("openai/", "hosted_vllm/")
_REPO_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[A-Za-z0-9][\w.-]*$")
# Prompts a synthesised pool holds unless ``n_prompts`` says otherwise.
DEFAULT_N_PROMPTS = 60


def _yaml_off(value: Any) -> Any:
    # YAML 1.1 (PyYAML) reads a bare ``off`` as false: give such a key its word back.
    return "off" if value is False else value


#: A key whose values include ``off``, written bare in YAML (``mode: off``).
OffSwitch = BeforeValidator(_yaml_off)

# The error type of a bad value that may be a secret: its message never quotes it.
_SECRET_ERROR = "secret_value"
# How providers' keys begin (OpenAI, Anthropic, Hugging Face, Groq, xAI, Google, GitHub,
# GitLab, Replicate, Perplexity, NVIDIA, AWS, Slack, Stripe, Langfuse, Tavily, Fireworks).
_KEY_PREFIXES = (
    "sk-", "sk_", "hf_", "gsk_", "xai-", "AIza", "ghp_", "gho_", "ghs_", "github_pat_",
    "glpat-", "r8_", "pplx-", "nvapi-", "AKIA", "xoxb-", "xoxp-", "rk_live_", "pk-lf-",
    "tvly-", "fw_",
)  # fmt: skip
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_LOOKS_LIKE_A_KEY = (
    "this looks like an API key, not the NAME of an environment variable: put the key "
    "in a variable (export OPENAI_API_KEY=...) and its NAME here"
)
# Param names that say "secret" (split into lower-case words: ``apiKey`` is api, key).
_SECRET_WORDS = frozenset(
    {"secret", "password", "passwd", "bearer", "authorization", "credential", "credentials"}
)
# ``<word>_key`` / ``<word>_token`` names a secret after these words (``api_key``,
# ``access_token``), not after others (``prompt_cache_key``, ``max_tokens``, ``eos_token``).
_KEY_OWNERS = frozenset({"api", "secret", "private", "access", "auth", "subscription", "client"})
_TOKEN_OWNERS = frozenset(
    {"access", "auth", "api", "bearer", "refresh", "id", "session", "hf", "github", "oauth"}
)


def looks_like_key(value: str) -> bool:
    """Whether ``value`` is shaped like an API key rather than a variable's name: it
    starts as providers' keys do, or it is a long token mixing letters and digits as
    names do not (names are words joined by ``_``, conventionally UPPER_CASE)."""
    if len(value) >= 16 and value.startswith(_KEY_PREFIXES):
        return True
    if len(value) < 20 or not any(c.isdigit() for c in value):
        return False
    if not any(c.isalpha() for c in value):
        return False
    mixed_case = any(c.islower() for c in value) and any(c.isupper() for c in value)
    return mixed_case or "_" not in value


def env_name_problem(value: str) -> str | None:
    """Why ``value`` cannot be an ``api_key_env`` (``None``: it can); never quotes it."""
    if looks_like_key(value):
        return _LOOKS_LIKE_A_KEY
    if not _ENV_NAME.match(value):
        return "must be the NAME of an environment variable (e.g. OPENAI_API_KEY), never the key"
    return None


def _words(name: str) -> list[str]:
    spaced = re.sub(r"([a-z0-9])([A-Z])", r"\1_\2", name)
    return [w for w in re.split(r"[^a-z0-9]+", spaced.lower()) if w]


def secret_name(name: str) -> bool:
    """Whether a param's name says it holds a secret: ``api_key``, ``key``, ``token``,
    ``access_token``, ``secret``, ``password``, ``Authorization``, ``x-api-key`` (never
    ``max_tokens``, ``top_k`` or ``prompt_cache_key``)."""
    words = _words(name)
    if not words:
        return False
    if _SECRET_WORDS.intersection(words) or "".join(words) in ("apikey", "accesstoken"):
        return True
    *before, last = words
    owners = {"key": _KEY_OWNERS, "token": _TOKEN_OWNERS}.get(last)
    return owners is not None and (not before or before[-1] in owners)


def secret_param(params: Any, where: str = "") -> str | None:
    """The dotted name of the first param in ``params`` (nested mappings and lists
    included) named like a secret or holding a value shaped like a provider's key."""
    items: Any = ()
    if isinstance(params, dict):
        items = ((f"{where}.{k}" if where else str(k), str(k), v) for k, v in params.items())
    elif isinstance(params, list):
        items = ((f"{where}[{i}]", "", v) for i, v in enumerate(params))
    for path, name, value in items:
        if secret_name(name):
            return path
        if isinstance(value, str) and any(
            len(word) >= 16 and word.startswith(_KEY_PREFIXES) for word in value.split()
        ):
            return path
        found = secret_param(value, path)
        if found is not None:
            return found
    return None


def _check_env_name(value: str | None) -> str | None:
    if value is None:
        return None
    problem = env_name_problem(value)
    if problem is not None:
        raise PydanticCustomError(_SECRET_ERROR, problem)
    return value


def _check_params(value: dict[str, Any]) -> dict[str, Any]:
    found = secret_param(value)
    if found is not None:
        raise PydanticCustomError(
            _SECRET_ERROR,
            f"'{found}' holds a secret: keys never go in the config (config.yaml and "
            "report.html are written from it); put it in an environment variable and "
            "name that variable in api_key_env",
        )
    return value


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class _Caller(_Strict):
    """What a model that makes calls (a teacher, an LLM judge) checks of its call
    settings: its fields are declared where it is, these checks once here."""

    @field_validator("api_key_env", check_fields=False)
    @classmethod
    def _env_name(cls, value: str | None) -> str | None:
        return _check_env_name(value)

    @field_validator("params", check_fields=False)
    @classmethod
    def _params(cls, value: dict[str, Any]) -> dict[str, Any]:
        return _check_params(value)

    @field_validator("transport", check_fields=False)
    @classmethod
    def _direct(cls, value: str, info: ValidationInfo) -> str:
        return _direct(value, info)


class PoolConfig(_Strict):
    """Where prompts come from.

    ``personas``: ``bundled``, ``personahub`` (the HF dataset), ``nemotron`` /
    ``nemotron:<locale or local copy>`` (NVIDIA's Nemotron-Personas), a path to a
    .jsonl/.json/.csv/.parquet file or a ``save_to_disk`` folder, or ``hf:<dataset id>``.
    ``writer``: ``template`` (no model) or the name of a configured teacher, which
    then writes each instruction from persona × task × language.
    ``prompts``: a JSONL of ready prompts (``text``, ``language``, ``task``) to use
    instead of synthesising them.
    ``n_prompts``: how many prompts to synthesise (default 60); with ``prompts``, how
    many of the file's rows to take, from the top (default: all of them).
    ``constraints``: how many verifiable instruction constraints (0–3) to attach to
    each synthesised prompt, for the ``constraints`` reward (0: none).
    ``write_tests``: the writer also writes tests for each synthesised coding prompt,
    for the ``code`` reward (needs a ``writer`` model).
    """

    personas: str = "bundled"
    persona_column: str = "persona"
    n_prompts: int | None = Field(None, ge=1)
    languages: list[str] = Field(default_factory=lambda: ["en", "fr", "sw"], min_length=1)
    tasks: list[str] = Field(default_factory=lambda: ["open_qa", "coding", "math"], min_length=1)
    writer: str = "template"
    writer_max_tokens: int = Field(160, ge=16)
    prompts: str | None = None
    constraints: int = Field(0, ge=0, le=3)
    write_tests: bool = False

    @model_validator(mode="after")
    def _tests_need_a_writer(self) -> PoolConfig:
        if self.write_tests and self.writer == "template":
            raise ValueError("write_tests needs a writer model: set writer to a teacher's name")
        return self

    @model_validator(mode="before")
    @classmethod
    def _size(cls, data: Any) -> Any:
        # Filled in, so that config.yaml says how many prompts a synthesised pool holds
        # and its config hash stays what it was before prompts files were taken whole.
        if isinstance(data, dict) and data.get("prompts") is None and data.get("n_prompts") is None:
            return {**data, "n_prompts": DEFAULT_N_PROMPTS}
        return data

    @field_validator("languages")
    @classmethod
    def _languages(cls, value: list[str]) -> list[str]:
        for code in value:
            try:
                check_code(code)
            except ConfigError as exc:
                raise ValueError(str(exc)) from None
        if len(set(value)) != len(value):
            raise ValueError("languages are listed twice")
        return value

    @field_validator("tasks")
    @classmethod
    def _tasks(cls, value: list[str]) -> list[str]:
        from arbitrage.prompts.tasks import TASKS

        for name in value:
            if name not in TASKS:
                raise ValueError(
                    f"unknown task {name!r}{closest_hint(name, TASKS)}; tasks: {', '.join(TASKS)}"
                )
        return value

    @model_validator(mode="after")
    def _frames(self) -> PoolConfig:
        # The template writer writes whole user turns in-language from bundled frames;
        # a language without them needs a writer model (which also translates).
        if self.writer == "template" and self.prompts is None:
            from arbitrage.prompts.frames import check_template_languages

            try:
                check_template_languages(self.languages)
            except ConfigError as exc:
                raise ValueError(str(exc)) from None
        return self


class TeacherConfig(_Caller):
    """One teacher: a litellm model string and its call parameters.

    ``transport``: ``litellm`` (any provider), or ``direct`` for an OpenAI-compatible
    ``api_base`` with an ``openai/`` or ``hosted_vllm/`` model: one shared aiohttp
    session instead of litellm's per-call work (docs/long-runs.md, "Throughput").
    ``timeout_s`` bounds one attempt in all (connect, wait, read), on every transport
    (not the bundled ``local/`` models, which answer in this process);
    ``max_reply_chars``: a longer answer is a failed call ("reply too long").
    """

    name: str = Field(min_length=1)
    model: str = Field(min_length=1)
    api_base: str | None = None
    api_key_env: str | None = None
    transport: Literal["litellm", "direct"] = "litellm"
    #: ``batch``: through the provider's batch API (``batch:``; docs/long-runs.md).
    mode: Literal["online", "batch"] = "online"
    #: Which batch API (default: ``anthropic`` for ``anthropic/`` models, else ``openai``).
    batch_api: Literal["openai", "anthropic"] | None = None
    temperature: float = Field(0.7, ge=0.0, le=2.0)
    max_tokens: int = Field(512, ge=1)
    #: Answers asked of this teacher per prompt (each its own seed and cache row).
    samples: int = Field(1, ge=1, le=64)
    #: How ``samples`` > 1 are asked for: ``n`` (one request, litellm's ``n``), ``calls``
    #: (one call a sample), ``auto`` (``n`` where the provider takes it, online).
    samples_via: Literal["auto", "n", "calls"] = "auto"
    max_concurrency: int = Field(8, ge=1)
    timeout_s: float = Field(120.0, gt=0)
    retries: int = Field(2, ge=0)
    max_reply_chars: int = Field(1_000_000, ge=1)
    params: dict[str, Any] = Field(default_factory=dict)
    requests_per_minute: float | None = Field(None, gt=0)
    tokens_per_minute: float | None = Field(None, gt=0)
    input_cost_per_mtok: float | None = Field(None, ge=0)
    output_cost_per_mtok: float | None = Field(None, ge=0)

    @model_validator(mode="after")
    def _batch(self) -> TeacherConfig:
        if self.mode == "batch" and is_local(self.model):
            raise ValueError(
                f"mode: batch needs a provider's batch API; {self.model!r} is a bundled "
                "local model (use mode: online)"
            )
        if self.samples_via == "n":
            from arbitrage.calls.llm import takes_n

            why = (
                "a batch job sends one request a sample (use auto or calls)"
                if self.mode == "batch"
                else None
                if takes_n(self.model, self.transport)
                else f"{self.model!r} takes no n (use auto or calls)"
            )
            if why is not None:
                raise ValueError(f"samples_via: n asks for the samples in one request; {why}")
        return self


class BatchConfig(_Strict):
    """How teachers with ``mode: batch`` use the provider batch APIs (docs/long-runs.md,
    "Batch mode"). ``round_prompts``: prompts in flight together (``windows: auto``
    covers them); a job goes out ``linger_s`` after the last call queued, or when the
    round is full; ``max_requests`` / ``max_bytes`` split it to the provider's limits.
    Polls start at ``poll_s`` and double to ``max_poll_s``. Past ``deadline_s`` a job is
    cancelled and its open requests go ``online`` or ``fail``; a request expired,
    cancelled or failed retryably goes into a new job at most ``resubmits`` times.
    ``discount``: the batch price as a share of the online one where litellm's price
    map has no batch price."""

    round_prompts: int = Field(1000, ge=1)
    linger_s: float = Field(2.0, ge=0)
    poll_s: float = Field(10.0, gt=0)
    max_poll_s: float = Field(300.0, gt=0)
    deadline_s: float = Field(86400.0, gt=0)
    on_deadline: Literal["online", "fail"] = "fail"
    max_requests: int = Field(50_000, ge=1)
    max_bytes: int = Field(200_000_000, ge=1024)
    resubmits: int = Field(2, ge=0)
    discount: float = Field(0.5, gt=0, le=1)


def _direct(value: str, info: ValidationInfo) -> str:
    """``transport: direct`` needs an ``api_base`` and an OpenAI-compatible model."""
    if value != "direct":
        return value
    if not info.data.get("api_base"):
        raise ValueError(
            "'direct' needs api_base (an OpenAI-compatible endpoint, e.g. http://host:8000/v1)"
        )
    model = str(info.data.get("model") or "")
    if not model.startswith(DIRECT_PREFIXES):
        raise ValueError(
            f"'direct' speaks the OpenAI chat API only: model {model!r} does not start "
            f"with {' or '.join(DIRECT_PREFIXES)}"
        )
    return value


class ScorerConfig(_Caller):
    """One scorer: ``local`` (offline proxy), ``judge`` / ``pairwise`` (LLM via litellm) or
    ``hf`` (a sequence-classification reward model). ``model`` is the judge or reward
    model; ``api_base`` / ``api_key_env`` reach an LLM judge; ``params`` go to its class.

    An LLM judge's calls go the way a teacher's do: ``transport`` (``litellm`` or
    ``direct``), ``timeout_s`` for one attempt in all, ``retries`` of rate limits, 5xx,
    timeouts and dropped connections (``Retry-After`` honoured), ``max_reply_chars``."""

    kind: str = "local"
    model: str | None = None
    api_base: str | None = None
    api_key_env: str | None = None
    params: dict[str, Any] = Field(default_factory=dict)
    transport: Literal["litellm", "direct"] = "litellm"
    #: ``batch``: a judge's calls through the provider's batch API, as a teacher's.
    mode: Literal["online", "batch"] = "online"
    batch_api: Literal["openai", "anthropic"] | None = None
    timeout_s: float = Field(120.0, gt=0)
    retries: int = Field(2, ge=0)
    max_reply_chars: int = Field(1_000_000, ge=1)


class MemberConfig(ScorerConfig):
    """An ensemble member: a scorer, its ``weight`` and a ``name`` (default: its kind)."""

    weight: float = Field(1.0, gt=0)
    name: str | None = None

    @property
    def label(self) -> str:
        return self.name or self.kind


class LanguageCheckConfig(_Strict):
    """Language fidelity of each answer (lingua, offline).

    ``gate``: an answer whose fidelity is below ``threshold`` is left unscored (it
    cannot win); ``penalty``: the score loses ``penalty × (1 − fidelity)``; ``off``.
    ``per_language`` maps a language to its own threshold (gate) or penalty; 0 turns
    the check off for that language.
    """

    mode: Annotated[Literal["gate", "penalty", "off"], OffSwitch] = "gate"
    threshold: float = Field(0.5, ge=0.0, le=1.0)
    penalty: float = Field(1.0, ge=0.0)
    per_language: dict[str, float] = Field(default_factory=dict)

    @field_validator("per_language")
    @classmethod
    def _levels(cls, value: dict[str, float]) -> dict[str, float]:
        for code, level in value.items():
            check_code(code)
            if not isinstance(level, int | float) or level < 0:
                raise ValueError(f"the level for {code!r} must be a number >= 0 (got {level!r})")
        return value

    @model_validator(mode="after")
    def _thresholds(self) -> LanguageCheckConfig:
        if self.mode == "gate" and any(v > 1 for v in self.per_language.values()):
            raise ValueError("gate thresholds in per_language must lie in [0, 1]")
        return self


class LengthConfig(_Strict):
    """Length-bias control: ``regress`` takes the per-language slope of score on log length
    out (after ``min_samples`` answers); ``penalty`` subtracts ``per_1k_chars`` per 1,000
    characters; ``off``."""

    mode: Annotated[Literal["off", "regress", "penalty"], OffSwitch] = "off"
    per_1k_chars: float = Field(0.1, ge=0.0)
    min_samples: int = Field(20, ge=2)


class VerifyConfig(_Strict):
    """A verifier as a gate (``reward.verifiers.gate``): an answer it scores below
    ``threshold`` is left unscored, whatever the reward says; ``params`` go to its class."""

    kind: Literal["math", "code", "constraints"]
    threshold: float = Field(1.0, ge=0.0, le=1.0)
    params: dict[str, Any] = Field(default_factory=dict)

    @field_validator("params")
    @classmethod
    def _params(cls, value: dict[str, Any]) -> dict[str, Any]:
        return _check_params(value)


class RewardConfig(ScorerConfig):
    """The reward: one scorer, or ``kind: ensemble`` with two or more ``members``; then
    length control, per-language normalisation and the language gate, in that order.
    ``verify``: a verifier that gates the scorer's answers (``None``: no gate)."""

    members: list[MemberConfig] = Field(default_factory=list)
    normalise: Literal["none", "language"] = "none"
    length: LengthConfig = Field(default_factory=LengthConfig)
    language: LanguageCheckConfig = Field(default_factory=LanguageCheckConfig)
    verify: VerifyConfig | None = None

    @model_validator(mode="after")
    def _members(self) -> RewardConfig:
        if self.kind == "ensemble":
            if len(self.members) < 2:
                raise ValueError("kind 'ensemble' needs at least two members")
            if self.model or self.api_base or self.api_key_env or self.params:
                raise ValueError(
                    "kind 'ensemble' takes model / api_base / api_key_env / params per member"
                )
            labels = [m.label for m in self.members]
            if len(set(labels)) != len(labels):
                raise ValueError(f"ensemble members need distinct names, got {labels}")
            if "ensemble" in {m.kind for m in self.members}:
                raise ValueError("an ensemble member cannot itself be an ensemble")
        elif self.members:
            raise ValueError(f"members apply to kind 'ensemble', not {self.kind!r}")
        return self

    def scorers(self) -> list[ScorerConfig]:
        """The scorers that make calls: the members of an ensemble, else this one."""
        return list(self.members) if self.kind == "ensemble" else [self]


class RouterConfig(_Strict):
    """The router by registry name, with its constructor parameters."""

    name: str = "learned"
    params: dict[str, Any] = Field(default_factory=dict)


class CacheConfig(_Strict):
    """The durable call cache: ``path`` defaults to ``<out>/cache.sqlite``."""

    enabled: bool = True
    path: str | None = None


class BreakerConfig(_Strict):
    """Circuit breaker: ``failures`` retryable failures in a row open a teacher."""

    failures: int = Field(5, ge=1)
    cooldown_s: float = Field(60.0, gt=0)


class RayConfig(_Strict):
    """How a Ray run is spread (``engine: ray``; see docs/cluster.md).

    ``workers``: generation actors; ``reward_workers``: reward actors, each with
    ``reward_gpus`` GPUs (``null``: one where the cluster has GPUs and the reward is a
    model, else none); ``num_cpus``: CPUs of a local instance (``null``: all).
    """

    workers: int = Field(2, ge=1)
    reward_workers: int = Field(1, ge=1)
    reward_gpus: float | None = Field(None, ge=0)
    num_cpus: int | None = Field(None, ge=1)


class DedupConfig(_Strict):
    """Near-duplicate removal (MinHash over character 5-grams, within each language)."""

    prompts: bool = True
    answers: bool = True
    threshold: float = Field(0.8, gt=0.0, le=1.0)
    min_chars: int = Field(50, ge=0)


class PreferenceConfig(_Strict):
    """Chosen/rejected pairs for DPO: a prompt's highest- vs lowest-reward answer."""

    enabled: bool = True
    min_margin: float = Field(0.1, ge=0.0)


class EvalSetConfig(_Strict):
    """One eval set to decontaminate against: ``source`` is a local .jsonl/.json/.csv/
    .parquet file or a Hugging Face dataset id (``config``, ``split`` for the hub);
    ``column`` holds the item text; ``name`` labels it in counts (default: the source)."""

    source: str = Field(min_length=1)
    column: str = Field("text", min_length=1)
    name: str | None = None
    split: str = "test"
    config: str | None = None

    @property
    def label(self) -> str:
        return self.name or self.source

    @field_validator("source")
    @classmethod
    def _source(cls, value: str) -> str:
        from arbitrage.outputs.decontam import FILE_TYPES

        # a hub id has no file suffix; these are files we cannot read
        if Path(value).suffix.lower() in (".txt", ".tsv", ".xlsx", ".xls", ".gz", ".zip"):
            raise ValueError(
                f"{value!r}: unsupported eval set file type (use {', '.join(FILE_TYPES)})"
            )
        return value


def _eval_set(value: Any) -> Any:
    # ``- data/gsm8k_test.jsonl`` is short for ``- {source: data/gsm8k_test.jsonl}``.
    return {"source": value} if isinstance(value, str) else value


class MixtureConfig(_Strict):
    """From scored outcomes to training data: filters, quotas, pairs, publishing.

    ``per_language`` / ``per_task`` cap the rows of a language / task (missing ones
    are uncapped); ``max_share_per_teacher`` caps any teacher's share of the rows.
    ``push_to_hub`` is a Hub repo id (``owner/name``) or ``null``.
    ``decontaminate``: eval sets (``EvalSetConfig``, or a bare source); a row sharing a
    ``decontaminate_ngram``-token n-gram with one is dropped as ``contaminated``.
    """

    min_chars: int = Field(1, ge=0)
    max_chars: int | None = Field(None, ge=1)
    drop_refusals: bool = True
    drop_boilerplate: bool = True
    min_language_fidelity: float | None = Field(None, ge=0.0, le=1.0)
    dedup: DedupConfig = Field(default_factory=DedupConfig)
    max_share_per_teacher: float = Field(1.0, gt=0.0, le=1.0)
    per_language: dict[str, int] = Field(default_factory=dict)
    per_task: dict[str, int] = Field(default_factory=dict)
    preference_pairs: PreferenceConfig = Field(default_factory=PreferenceConfig)
    push_to_hub: str | None = None
    private: bool = True
    decontaminate: list[Annotated[EvalSetConfig, BeforeValidator(_eval_set)]] = Field(
        default_factory=list
    )
    decontaminate_ngram: int = Field(13, ge=3, le=64)

    @field_validator("per_language", "per_task")
    @classmethod
    def _caps(cls, value: dict[str, int]) -> dict[str, int]:
        for key, n in value.items():
            if not isinstance(n, int) or n < 0:
                raise ValueError(f"the cap for {key!r} must be an integer >= 0 (got {n!r})")
        return value

    @field_validator("push_to_hub")
    @classmethod
    def _repo_id(cls, value: str | None) -> str | None:
        if value is not None and not _REPO_ID.match(value):
            raise ValueError("must be a Hub dataset repo id such as 'my-org/my-mixture'")
        return value

    @model_validator(mode="after")
    def _bounds(self) -> MixtureConfig:
        if self.max_chars is not None and self.max_chars < self.min_chars:
            raise ValueError(
                f"max_chars ({self.max_chars}) is smaller than min_chars ({self.min_chars})"
            )
        return self


class FusionConfig(_Strict):
    """``fusion``: a teacher (``model``, by name) writes one answer from a prompt's
    ``top_k`` best candidates; kept when it beats the best of them (``keep: better``)
    or whenever it could be scored (``always``). See docs/training-data.md."""

    model: str = Field(min_length=1)
    top_k: int = Field(3, ge=2, le=16)
    keep: Literal["better", "always"] = "better"


def _model_string(value: Any) -> Any:
    # ``simulator: openai/gpt-4o-mini`` is short for ``simulator: {model: openai/gpt-4o-mini}``.
    return {"model": value} if isinstance(value, str) else value


class SimulatorConfig(TeacherConfig):
    """The user simulator's model: a teacher's keys, ``name`` defaulting to ``simulator``
    and ``max_tokens`` to 200 (a user's message is short)."""

    name: str = Field("simulator", min_length=1)
    max_tokens: int = Field(200, ge=1)

    @model_validator(mode="after")
    def _one_sample(self) -> SimulatorConfig:
        if self.samples != 1:
            raise ValueError("the simulator writes one follow-up per turn: samples must be 1")
        return self


class ConversationConfig(_Strict):
    """Multi-turn conversations (``turns`` > 1; see docs/training-data.md).

    ``simulator``: the model that writes each follow-up user turn, as the prompt's
    persona, from the conversation so far: a teacher's keys (``model``, ``api_base``,
    ``api_key_env``, ...), or a bare model string for ``{model: ...}``. ``route``:
    ``every`` routes (and arbitrates) every turn; ``first`` keeps the teacher that won
    the first turn for the whole conversation.
    """

    turns: int = Field(1, ge=1, le=32)
    route: Literal["every", "first"] = "every"
    simulator: Annotated[SimulatorConfig | None, BeforeValidator(_model_string)] = None

    @model_validator(mode="after")
    def _simulator(self) -> ConversationConfig:
        if self.turns > 1 and self.simulator is None:
            raise ValueError(
                "turns > 1 needs a simulator ({model: ...}, any litellm model string "
                "or local/...): the model that writes the user's follow-up turns"
            )
        return self


class RunConfig(_Strict):
    """A whole run."""

    out: str = "out/run"
    seed: int = 0
    batch_size: int = Field(16, ge=1)
    #: Windows of ``batch_size`` prompts in flight at once; ``auto`` fills the teachers'
    #: ``max_concurrency`` (``windows_in_flight``). Decides routing, so in the config hash.
    windows: Annotated[int, Field(ge=1)] | Literal["auto"] = "auto"
    pool: PoolConfig = Field(default_factory=PoolConfig)
    teachers: list[TeacherConfig] = Field(min_length=1)
    reward: RewardConfig = Field(default_factory=RewardConfig)
    router: RouterConfig = Field(default_factory=RouterConfig)
    cache: CacheConfig = Field(default_factory=CacheConfig)
    breaker: BreakerConfig = Field(default_factory=BreakerConfig)
    batch: BatchConfig = Field(default_factory=BatchConfig)
    budget_usd: float | None = Field(None, gt=0)
    #: Rows the mixture must end with: a total, or ``{"<language>/<task>": rows}``; the
    #: run draws prompts in rounds until they are met (docs/training-data.md).
    target_rows: int | dict[str, int] | None = None
    #: With ``target_rows``: the most prompts the run may draw (default 10 × the target).
    max_prompts: int | None = Field(None, ge=1)
    mixture: MixtureConfig = Field(default_factory=MixtureConfig)
    fusion: FusionConfig | None = None
    conversation: ConversationConfig | None = None
    engine: Literal["local", "ray"] = "local"
    ray_address: str | None = None
    ray: RayConfig = Field(default_factory=RayConfig)

    def windows_in_flight(self, escalates: bool = False) -> int:
        """``windows``, or for ``auto`` enough windows that their first answers alone
        would fill every teacher's ``max_concurrency`` twice over, times the rounds a
        window passes through when the router ``escalates`` (one per teacher: each
        round has its share of the windows, schedule.py), at most 256; 1 when every
        teacher is a local model (in-process: they share the CPU, not a server)."""
        if self.windows != "auto":
            return self.windows
        if any(t.mode == "batch" for t in self.teachers):  # a round in flight together
            return max(1, -(-self.batch.round_prompts // self.batch_size))
        if all(is_local(t.model) for t in self.teachers):
            return 1
        slots = sum(t.max_concurrency for t in self.teachers)
        rounds = len(self.teachers) if escalates else 1
        return max(1, min(256, rounds * -(-2 * slots // self.batch_size)))

    @model_validator(mode="after")
    def _names(self) -> RunConfig:
        names = [t.name for t in self.teachers]
        batch = [t.mode for t in self.teachers] + [s.mode for s in self.reward.scorers()]
        if self.engine == "ray" and "batch" in batch:
            raise ValueError("mode: batch runs on engine: local (a batch job needs no workers)")
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"teacher name {dupes[0]!r} is used twice")
        writer = self.pool.writer
        if writer != "template" and writer not in names:
            raise ValueError(
                f"pool.writer {writer!r} is neither 'template' nor a teacher name "
                f"({', '.join(names)})"
            )
        if self.fusion is not None and self.fusion.model not in names:
            raise ValueError(
                f"fusion.model {self.fusion.model!r} is not a teacher name ({', '.join(names)})"
                f"{closest_hint(self.fusion.model, names)}"
            )
        self._check_mixture(names)
        self._check_targets()
        return self

    def _check_targets(self) -> None:
        target = self.target_rows
        if target is None:
            if self.max_prompts is not None:
                raise ValueError("max_prompts bounds target_rows: set target_rows too")
            return
        counts = {"": target} if isinstance(target, int) else target
        if not counts:
            raise ValueError("target_rows is an empty mapping: give a total or language/task rows")
        for key, n in counts.items():
            if isinstance(n, bool) or not isinstance(n, int) or n < 1:
                raise ValueError(f"target_rows{f' {key!r}' if key else ''} must be an integer >= 1")
            if not key:
                continue
            lang, _, task = key.partition("/")
            if (
                not task
                or lang not in self.pool.languages
                or (self.pool.prompts is None and task not in self.pool.tasks)
            ):
                raise ValueError(
                    f"target_rows key {key!r} is not '<language>/<task>' of the pool "
                    f"(languages: {', '.join(self.pool.languages)}; tasks: "
                    f"{', '.join(self.pool.tasks)})"
                )
        if self.conversation is not None and self.conversation.turns > 1:
            raise ValueError("target_rows works with single-turn runs (conversation.turns: 1)")
        first = self.pool.n_prompts
        if self.max_prompts is not None and first is not None and self.max_prompts < first:
            raise ValueError(
                f"max_prompts ({self.max_prompts}) is below pool.n_prompts ({first}), "
                "the first round"
            )

    def prompt_limit(self) -> int:
        """The most prompts a ``target_rows`` run draws: ``max_prompts`` or 10 × the target."""
        if self.max_prompts is not None:
            return self.max_prompts
        target = self.target_rows or 0
        total = target if isinstance(target, int) else sum(target.values())
        return max(10 * total, self.pool.n_prompts or 0)

    def _check_mixture(self, names: list[str]) -> None:
        mix = self.mixture
        if mix.max_share_per_teacher * len(names) < 1:
            raise ValueError(
                f"mixture.max_share_per_teacher {mix.max_share_per_teacher} × {len(names)} "
                "teachers is below 1: no mixture can satisfy it"
            )
        if self.pool.prompts is not None:
            return  # ready prompts bring their own languages and tasks
        for key, valid in (("per_language", self.pool.languages), ("per_task", self.pool.tasks)):
            for name in getattr(mix, key):
                if name not in valid:
                    raise ValueError(
                        f"mixture.{key} names {name!r}, which is not in pool.{key[4:]}s"
                        f"{closest_hint(name, valid)}"
                    )

    def public_dict(self) -> dict[str, Any]:
        """The config as plain data (safe to write: it holds env var names, never keys)."""
        return self.model_dump(mode="json")


def _fields_at(model: type[BaseModel], loc: tuple[Any, ...]) -> list[str]:
    """Valid field names of the model that owns the last element of ``loc``."""
    current: Any = model
    for part in loc[:-1]:
        if isinstance(part, int):
            continue
        field = getattr(current, "model_fields", {}).get(part)
        if field is None:
            return []
        annotation = field.annotation
        args = getattr(annotation, "__args__", ())
        current = next(
            (a for a in (annotation, *args) if isinstance(a, type) and issubclass(a, BaseModel)),
            None,
        )
        if current is None:
            return []
    return list(getattr(current, "model_fields", {}))


def _path(loc: tuple[Any, ...]) -> str:
    return "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in loc).lstrip(".")


def format_validation_error(error: ValidationError, model: type[BaseModel]) -> str:
    """One line naming the first bad key or value."""
    first = error.errors()[0]
    loc = tuple(first["loc"])
    where = _path(loc) or "config"
    if first["type"] == "extra_forbidden":
        hint = closest_hint(str(loc[-1]), _fields_at(model, loc))
        return f"unknown config key '{where}'{hint}"
    if first["type"] == "missing":
        return f"missing config key '{where}'"
    msg = first["msg"].removeprefix("Value error, ")
    value = first.get("input")
    hidden = isinstance(value, dict | list) or value is None or first["type"] == _SECRET_ERROR
    shown = "" if hidden else f" (got {value!r})"
    return f"bad value for '{where}': {msg}{shown}"


def parse_config(data: Any) -> RunConfig:
    """Validate a mapping into a ``RunConfig``; raises ``ConfigError`` with one clear line."""
    if not isinstance(data, dict):
        raise ConfigError(f"config must be a mapping of keys, got {type(data).__name__}")
    try:
        return RunConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(format_validation_error(exc, RunConfig)) from None


def load_config(path: str | Path) -> RunConfig:
    """Read and validate a YAML config file."""
    import yaml

    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    try:
        data = yaml.safe_load(read_text(path))
    except DataError as exc:
        raise ConfigError(str(exc)) from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        raise ConfigError(f"{path}: not valid YAML{where}") from None
    return parse_config(data)


def read_text(path: Path) -> str:
    """A UTF-8 text file; ``DataError`` naming the line of the first byte that is not
    UTF-8, or why the file cannot be read."""
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise DataError(f"{path}: cannot be read ({exc.strerror})") from None
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        raise DataError(f"{path}:{line}: not UTF-8 text; save the file as UTF-8") from None


def default_config() -> RunConfig:
    """The embedded offline default (``arbitrage run`` with no config)."""
    from importlib.resources import files

    import yaml

    text = files("arbitrage").joinpath("data/default.yaml").read_text(encoding="utf-8")
    return parse_config(yaml.safe_load(text))
