"""Teachers: a litellm model string plus its call parameters; where a prompt is sent.

A teacher never raises on a failed call: the failure becomes a ``Generation``
with ``error`` set, so a failed request is data, never a silent empty row.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Sequence
from typing import Any

from tenacity import (
    AsyncRetrying,
    retry_if_exception_type,
    stop_after_attempt,
    wait_random_exponential,
)

from arbitrage.config import TeacherConfig
from arbitrage.errors import ConfigError
from arbitrage.llm import CompletionFn, completion_fn, retryable_errors, scrub
from arbitrage.records import Generation, Prompt, Usage, content_id


class Teacher:
    """One teacher model.

    Args:
        config: Model string and parameters.
        completion_fn: Anything with ``litellm.acompletion``'s signature; defaults
            to litellm (with the ``local/`` provider registered when needed).
    """

    def __init__(self, config: TeacherConfig, *, completion_fn: CompletionFn | None = None) -> None:
        self.config = config
        self.name = config.name
        self._completion_fn = completion_fn
        self._semaphore: asyncio.Semaphore | None = None

    @classmethod
    def from_model(cls, name: str, model: str, **params: Any) -> Teacher:
        """Shorthand: ``Teacher.from_model("gpt", "openai/gpt-4o-mini", max_tokens=256)``."""
        return cls(TeacherConfig(name=name, model=model, **params))

    def _api_key(self) -> str | None:
        env = self.config.api_key_env
        if env is None:
            return None
        key = os.environ.get(env)
        if not key:
            raise ConfigError(f"teacher {self.name!r}: environment variable {env} is not set")
        return key

    def request(
        self, messages: list[dict[str, str]], *, max_tokens: int | None = None, key: str = ""
    ) -> dict[str, Any]:
        """The keyword arguments of the litellm call (without the API key).

        ``seed`` is derived from ``key`` (the prompt id) and the teacher name, so a
        rerun asks for the same sample; providers without a seed ignore it.
        """
        cfg = self.config
        kwargs: dict[str, Any] = {
            "model": cfg.model,
            "messages": messages,
            "temperature": cfg.temperature,
            "max_tokens": max_tokens or cfg.max_tokens,
            "timeout": cfg.timeout_s,
            "seed": int(content_id(key, self.name, length=8), 16) % 2**31,
            **cfg.params,
        }
        if cfg.api_base:
            kwargs["api_base"] = cfg.api_base
        return kwargs

    async def acomplete(
        self, messages: list[dict[str, str]], *, prompt_id: str = "", max_tokens: int | None = None
    ) -> Generation:
        """Send ``messages``; return the answer or the reason there is none."""
        if self._semaphore is None:
            self._semaphore = asyncio.Semaphore(self.config.max_concurrency)
        fn = self._completion_fn or completion_fn(self.config.model)
        key = self._api_key()
        kwargs = self.request(messages, max_tokens=max_tokens, key=prompt_id)
        if key is not None:
            kwargs["api_key"] = key
        start = time.perf_counter()
        async with self._semaphore:
            try:
                response = await self._call(fn, kwargs)
            except Exception as exc:  # every failure becomes data, never a crash
                message = scrub(f"{type(exc).__name__}: {exc}", [key or ""])
                return Generation(
                    prompt_id=prompt_id,
                    teacher=self.name,
                    model=self.config.model,
                    latency_s=time.perf_counter() - start,
                    error=message[:500],
                )
        return self._to_generation(response, prompt_id, time.perf_counter() - start)

    async def agenerate(self, prompt: Prompt) -> Generation:
        """Answer one prompt."""
        return await self.acomplete(prompt.messages(), prompt_id=prompt.id)

    async def _call(self, fn: CompletionFn, kwargs: dict[str, Any]) -> Any:
        retry_on = retryable_errors() if self._completion_fn is None else (ConnectionError,)
        retrying = AsyncRetrying(
            retry=retry_if_exception_type(retry_on),
            stop=stop_after_attempt(self.config.retries + 1),
            wait=wait_random_exponential(multiplier=0.5, max=20),
            reraise=True,
        )
        async for attempt in retrying:
            with attempt:
                return await fn(**kwargs)
        raise AssertionError("unreachable")  # pragma: no cover

    def _to_generation(self, response: Any, prompt_id: str, latency: float) -> Generation:
        choice = response.choices[0]
        text = (getattr(choice.message, "content", None) or "").strip()
        usage = getattr(response, "usage", None)
        return Generation(
            prompt_id=prompt_id,
            teacher=self.name,
            model=self.config.model,
            text=text,
            finish_reason=str(choice.finish_reason or ""),
            usage=Usage(
                prompt_tokens=int(getattr(usage, "prompt_tokens", 0) or 0),
                completion_tokens=int(getattr(usage, "completion_tokens", 0) or 0),
            ),
            cost_usd=self._cost(response),
            latency_s=latency,
        )

    def _cost(self, response: Any) -> float:
        if self.config.model.startswith("local/"):
            return 0.0
        try:
            return float(completion_cost(response) or 0.0)
        except Exception:  # unknown model in the price map: cost unknown, not an error
            return 0.0


def completion_cost(response: Any) -> float:
    from arbitrage.llm import litellm

    return float(litellm().completion_cost(completion_response=response))


def make_teachers(configs: Sequence[TeacherConfig]) -> list[Teacher]:
    """Teachers for a list of configs."""
    return [Teacher(c) for c in configs]
