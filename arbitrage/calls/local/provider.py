"""The litellm provider ``local/``: bundled models answering in-process, micro-batched.

Concurrent ``acompletion`` calls for one model are collected for ``BATCH_WINDOW_S``
(or while the model is busy) and generated together, up to ``MAX_BATCH`` at a
time, in a worker thread: on CPU a batch of 8 gives ~4x the tokens per second of
one request at a time. Requests are grouped by (max_tokens, temperature); a
batch is sampled with a seed derived from its requests' seeds.
"""

from __future__ import annotations

import asyncio
import time
import weakref
from dataclasses import dataclass, field
from typing import Any

from arbitrage.calls.llm import LOCAL_PROVIDER, litellm
from arbitrage.calls.local.backends import LocalResult, Messages, get_model

PROVIDER = LOCAL_PROVIDER
MAX_BATCH = 8
BATCH_WINDOW_S = 0.03
DEFAULT_MAX_TOKENS = 256
DEFAULT_TEMPERATURE = 0.7


@dataclass
class _Request:
    messages: Messages
    max_tokens: int
    temperature: float
    seed: int | None
    future: asyncio.Future[LocalResult] = field(repr=False)

    @property
    def key(self) -> tuple[int, float]:
        return (self.max_tokens, self.temperature)


def _batch_seed(seeds: list[int | None]) -> int | None:
    given = [s for s in seeds if s is not None]
    return None if not given else hash(tuple(given)) % (2**31)


class _Batcher:
    """Queue and worker task for one model on one event loop."""

    def __init__(self, model: str) -> None:
        self.model = model
        self.queue: list[_Request] = []
        self.worker: asyncio.Task[None] | None = None

    async def submit(self, request: _Request) -> LocalResult:
        self.queue.append(request)
        if self.worker is None or self.worker.done():
            self.worker = asyncio.get_running_loop().create_task(self._work())
        return await request.future

    async def _work(self) -> None:
        model = await asyncio.to_thread(get_model, self.model)
        while self.queue:
            if len(self.queue) < MAX_BATCH:
                await asyncio.sleep(BATCH_WINDOW_S)  # let concurrent callers join
            key = self.queue[0].key
            batch = [r for r in self.queue if r.key == key][:MAX_BATCH]
            self.queue = [r for r in self.queue if r not in batch]
            batch = [r for r in batch if not r.future.done()]  # drop cancelled callers
            if not batch:
                continue
            try:
                results = await asyncio.to_thread(
                    model.generate_batch,
                    [r.messages for r in batch],
                    max_tokens=key[0],
                    temperature=key[1],
                    seed=_batch_seed([r.seed for r in batch]),
                )
            except Exception as exc:
                for r in batch:
                    if not r.future.done():
                        r.future.set_exception(exc)
            else:
                for r, result in zip(batch, results, strict=True):
                    if not r.future.done():
                        r.future.set_result(result)


def _response(model: str, result: LocalResult) -> Any:
    lm = litellm()
    return lm.ModelResponse(
        model=f"{PROVIDER}/{model}",
        created=int(time.time()),
        choices=[
            {
                "index": 0,
                "finish_reason": result.finish_reason,
                "message": {"role": "assistant", "content": result.text},
            }
        ],
        usage=lm.Usage(
            prompt_tokens=result.prompt_tokens,
            completion_tokens=result.completion_tokens,
            total_tokens=result.prompt_tokens + result.completion_tokens,
        ),
    )


def _params(optional_params: dict[str, Any]) -> tuple[int, float, int | None]:
    max_tokens = optional_params.get("max_tokens") or optional_params.get("max_completion_tokens")
    temperature = optional_params.get("temperature")
    seed = optional_params.get("seed")
    return (
        int(max_tokens or DEFAULT_MAX_TOKENS),
        float(DEFAULT_TEMPERATURE if temperature is None else temperature),
        None if seed is None else int(seed),
    )


def _provider_class() -> type:
    from litellm import CustomLLM

    class LocalProvider(CustomLLM):  # type: ignore[misc]
        """litellm handler for ``local/<model>``; see the module docstring."""

        def __init__(self) -> None:
            super().__init__()
            self._batchers: weakref.WeakKeyDictionary[
                asyncio.AbstractEventLoop, dict[str, _Batcher]
            ] = weakref.WeakKeyDictionary()

        def completion(self, model: str, messages: list, optional_params: dict, **_: Any) -> Any:  # type: ignore[override]
            max_tokens, temperature, seed = _params(optional_params)
            result = get_model(model).generate_batch([messages], max_tokens, temperature, seed)
            return _response(model, result[0])

        async def acompletion(  # type: ignore[override]
            self, model: str, messages: list, optional_params: dict, **_: Any
        ) -> Any:
            max_tokens, temperature, seed = _params(optional_params)
            loop = asyncio.get_running_loop()
            batchers = self._batchers.setdefault(loop, {})
            batcher = batchers.setdefault(model, _Batcher(model))
            request = _Request(messages, max_tokens, temperature, seed, loop.create_future())
            return _response(model, await batcher.submit(request))

    return LocalProvider


def register() -> None:
    """Add the ``local`` provider to ``litellm.custom_provider_map`` once."""
    lm = litellm()
    if any(item["provider"] == PROVIDER for item in lm.custom_provider_map):
        return
    lm.custom_provider_map = [
        *lm.custom_provider_map,
        {"provider": PROVIDER, "custom_handler": _provider_class()()},
    ]
