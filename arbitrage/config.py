"""Run configuration: pydantic models validated at construction; YAML only at the CLI edge.

Unknown keys are rejected with the key's dotted path and the closest valid key;
bad values name the key and the value. Secrets are never part of a config:
teachers name the *environment variable* that holds their API key.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from arbitrage.errors import ConfigError
from arbitrage.languages import check_code


def closest_hint(key: str, valid: Iterable[str]) -> str:
    """``" (did you mean 'x'?)"`` for the closest valid key, or ``""``."""
    match = difflib.get_close_matches(key, list(valid), n=1, cutoff=0.5)
    return f" (did you mean {match[0]!r}?)" if match else ""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class PoolConfig(_Strict):
    """Where prompts come from.

    ``personas``: ``bundled``, ``personahub`` (the HF dataset), a path to a
    .jsonl/.json/.csv/.parquet file or a ``save_to_disk`` folder, or ``hf:<dataset id>``.
    ``writer``: ``template`` (no model) or the name of a configured teacher, which
    then writes each instruction from persona × task × language.
    ``prompts``: a JSONL of ready prompts (``text``, ``language``, ``task``) to use
    instead of synthesising them.
    """

    personas: str = "bundled"
    persona_column: str = "persona"
    n_prompts: int = Field(60, ge=1)
    languages: list[str] = Field(default_factory=lambda: ["en", "fr", "sw"], min_length=1)
    tasks: list[str] = Field(default_factory=lambda: ["open_qa", "coding", "math"], min_length=1)
    writer: str = "template"
    writer_max_tokens: int = Field(160, ge=16)
    prompts: str | None = None

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
        from arbitrage.tasks import TASKS

        for name in value:
            if name not in TASKS:
                raise ValueError(
                    f"unknown task {name!r}{closest_hint(name, TASKS)}; tasks: {', '.join(TASKS)}"
                )
        return value


class TeacherConfig(_Strict):
    """One teacher: a litellm model string and its call parameters."""

    name: str = Field(min_length=1)
    model: str = Field(min_length=1)
    api_base: str | None = None
    api_key_env: str | None = None
    temperature: float = Field(0.7, ge=0.0, le=2.0)
    max_tokens: int = Field(512, ge=1)
    max_concurrency: int = Field(8, ge=1)
    timeout_s: float = Field(120.0, gt=0)
    retries: int = Field(2, ge=0)
    params: dict[str, Any] = Field(default_factory=dict)

    @field_validator("api_key_env")
    @classmethod
    def _env_name(cls, value: str | None) -> str | None:
        if value is not None and (not value or not value.replace("_", "").isalnum()):
            raise ValueError(
                "must be the NAME of an environment variable (e.g. OPENAI_API_KEY), never the key"
            )
        return value


class RewardConfig(_Strict):
    """The reward model: ``local`` (offline proxy), ``judge`` (LLM via litellm) or ``hf``."""

    kind: str = "local"
    model: str | None = None
    api_base: str | None = None
    api_key_env: str | None = None
    params: dict[str, Any] = Field(default_factory=dict)


class RouterConfig(_Strict):
    """The router by registry name, with its constructor parameters."""

    name: str = "learned"
    params: dict[str, Any] = Field(default_factory=dict)


class RunConfig(_Strict):
    """A whole run."""

    out: str = "out/run"
    seed: int = 0
    batch_size: int = Field(16, ge=1)
    pool: PoolConfig = Field(default_factory=PoolConfig)
    teachers: list[TeacherConfig] = Field(min_length=1)
    reward: RewardConfig = Field(default_factory=RewardConfig)
    router: RouterConfig = Field(default_factory=RouterConfig)

    @model_validator(mode="after")
    def _names(self) -> RunConfig:
        names = [t.name for t in self.teachers]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"teacher name {dupes[0]!r} is used twice")
        writer = self.pool.writer
        if writer != "template" and writer not in names:
            raise ValueError(
                f"pool.writer {writer!r} is neither 'template' nor a teacher name "
                f"({', '.join(names)})"
            )
        return self

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
    shown = "" if isinstance(value, dict | list) or value is None else f" (got {value!r})"
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
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        raise ConfigError(f"{path}: not valid YAML{where}") from None
    return parse_config(data)


def default_config() -> RunConfig:
    """The embedded offline default (``arbitrage run`` with no config)."""
    from importlib.resources import files

    import yaml

    text = files("arbitrage").joinpath("data/default.yaml").read_text(encoding="utf-8")
    return parse_config(yaml.safe_load(text))
