"""One call path for every LLM call: teachers, the prompt writer and the judges.

    LLMClient.complete(request)
      │  the call cache: a call that came back is never paid for twice
      ▼
    attempts (tenacity): retryable failures only (429, 5xx, timeouts, dropped
      │  connections, malformed 200s), exponential backoff with full jitter, or as
      │  long as the server's Retry-After says
      ▼  each attempt
    budget.reserve(worst case) → breaker.allow() → limits.slot() → send(**request),
    at most timeout_s in all → the reply checked (shape, max_reply_chars) and priced
    → breaker and limits told → budget.settle(what it cost)

``LLMClient.complete_samples(requests)`` takes one prompt's samples (requests that
differ only in seed): those the cache lacks go out as ONE request with ``n`` through
the same attempts (the prompt reserved once, ``n`` × ``max_tokens``), and each choice
is stored under its own sample's key (``Teacher.asample``, ``samples_via``).

The send step is the one part that differs (``calls/send.py``):
``litellm.acompletion`` (any provider, ``local/`` models included), the direct
transport (``calls/transport.py``), or any function with acompletion's signature (a
test's fake; a Ray generation worker, which runs this same path on its side:
``executors/ray/remote.py``). A stage given as ``None`` (no cache, budget, breaker or
limits) is skipped.

A failure never escapes as an exception unless it is an ``ArbitrageError`` (an open
circuit, the budget, a missing API key): it becomes a ``Generation`` with ``error``
set, the API key scrubbed from it before it is cut to length. A failure that every
other call of the model would meet too (the key refused: 401, 403; no such model:
404; a model string litellm knows no provider for) raises ``CallRejected`` instead,
naming the caller and never the key: the run stops rather than pay for nothing.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import time
from contextlib import AbstractAsyncContextManager, nullcontext
from dataclasses import dataclass
from typing import Any, Literal

import tenacity

from arbitrage.calls.breaker import CircuitBreaker
from arbitrage.calls.budget import (
    Budget,
    price_per_token,
    prompt_tokens,
    usage_usd,
    worst_case_usd,
)
from arbitrage.calls.cache import CallCache, request_key
from arbitrage.calls.limits import MAX_RETRY_AFTER_S, TeacherLimits
from arbitrage.calls.llm import CompletionFn, is_local, scrub, takes_n
from arbitrage.calls.send import SendPlan, completion_cost, retry_after, send_plan
from arbitrage.calls.transport import (
    MAX_REPLY_CHARS,
    ChatReply,
    MalformedReply,
    ReplyTooLong,
    chat_replies,
    chat_reply,
)
from arbitrage.errors import ArbitrageError, CallRejected, ConfigError, TeacherUnavailable
from arbitrage.records import Generation, Usage

#: The wait before another attempt, unless the server says how long (``Retry-After``):
#: up to 0.5 s, doubling with each attempt, at most 20 s, drawn uniformly (full jitter).
DEFAULT_BACKOFF: tenacity.wait.wait_base = tenacity.wait_random_exponential(
    multiplier=0.5, max=20.0
)
#: The backoff of every client not given its own, read at call time: the test suite
#: sets ``tenacity.wait_none()``.
BACKOFF: tenacity.wait.wait_base = DEFAULT_BACKOFF

Transport = Literal["litellm", "direct"]
_MESSAGE_CHARS = 500  # of a failure's reason, after scrubbing


@dataclass
class CallStats:
    """What one caller (a teacher, a judge) did in this process (``report.json`` ``engine``)."""

    requests: int = 0  # HTTP attempts sent
    cached: int = 0  # answers served from the call cache
    ok: int = 0
    failed: int = 0
    retries: int = 0
    rate_limited: int = 0
    rerouted: int = 0  # calls routed here that met an open circuit and went elsewhere
    tokens: int = 0
    cost_usd: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


class LLMClient:
    """The call path of one model; see the module docstring.

    Args:
        name: Who calls (a teacher's name, ``judge``): in stats, budget messages and
            every ``Generation`` it returns.
        model: litellm model string.
        send: Anything with ``litellm.acompletion``'s signature; ``None``: litellm, or
            the direct transport where ``transport="direct"``.
        transport: ``litellm`` or ``direct`` (an OpenAI-compatible ``api_base``).
        api_key_env: The environment variable holding the API key, read at call time.
        cache: The call cache, or ``None``.
        budget: The budget to reserve against and settle, or ``None``.
        breaker: The circuit breaker, or ``None``.
        limits: Concurrency and rate limits (AIMD), or ``None``.
        retries: Attempts after the first, on retryable failures.
        timeout_s: The most one attempt may take in all, on every transport (``None``:
            no limit; the bundled ``local/`` models, which run in this process, have none).
        max_reply_chars: The longest answer taken; a longer one is a failed call.
        input_cost_per_mtok: USD per million prompt tokens (default: litellm's price map).
        output_cost_per_mtok: USD per million completion tokens (likewise).
        label: How messages name the caller (default: ``repr(name)``).
        backoff: tenacity's wait between attempts (default: ``BACKOFF``).
    """

    def __init__(
        self,
        name: str,
        model: str,
        *,
        send: CompletionFn | None = None,
        transport: Transport = "litellm",
        api_key_env: str | None = None,
        cache: CallCache | None = None,
        budget: Budget | None = None,
        breaker: CircuitBreaker | None = None,
        limits: TeacherLimits | None = None,
        retries: int = 2,
        timeout_s: float | None = 120.0,
        max_reply_chars: int = MAX_REPLY_CHARS,
        input_cost_per_mtok: float | None = None,
        output_cost_per_mtok: float | None = None,
        label: str | None = None,
        backoff: tenacity.wait.wait_base | None = None,
    ) -> None:
        self.name = name
        self.model = model
        self.transport = transport
        self.api_key_env = api_key_env
        self.cache = cache
        self.budget = budget
        self.breaker = breaker
        self.limits = limits
        self.retries = retries
        self.timeout_s = timeout_s
        self.max_reply_chars = max_reply_chars
        self.label = label or repr(name)
        self.stats = CallStats()
        self._send = send
        self._backoff = backoff
        self._overrides = (input_cost_per_mtok, output_cost_per_mtok)
        self._prices: tuple[float, float] | None = None
        self._plan: SendPlan | None = None
        self._takes_n: bool | None = None

    async def complete(self, request: dict[str, Any], *, prompt_id: str = "") -> Generation:
        """The answer to ``request`` (``litellm.acompletion``'s keyword arguments, without
        the API key): from the cache if it came back before, else from ``call``.

        Raises:
            TeacherUnavailable: the circuit is open.
            BudgetExceeded: the call could cross the budget.
            ConfigError: ``api_key_env`` is not set, or holds what looks like a key.
            CallRejected: the key was refused, or there is no such model or provider.
            DiskFull, DataError: the call cache cannot be written, or is corrupt.
        """
        key = request_key(request) if self.cache is not None else ""
        if self.cache is not None:
            hit = self.cache.get(key)
            if hit is not None:
                self.stats.cached += 1
                return dataclasses.replace(hit, prompt_id=prompt_id, teacher=self.name)
        gen = await self.call(request, prompt_id=prompt_id)
        if self.cache is not None:
            self.cache.put(key, gen)  # failed calls are not stored: a rerun retries them
        return gen

    def takes_n(self, via: str = "auto") -> bool:
        """Whether ``complete_samples`` asks for a prompt's samples in one request with
        ``n`` (``via``: a teacher's ``samples_via``): ``calls`` never; ``auto`` where the
        provider takes ``n`` (``llm.takes_n``); ``n`` always. Only through litellm or
        the direct transport: a send step of one's own (a Ray worker, a test's fake)
        answers one sample a request."""
        if via == "calls" or self._send is not None:
            return False
        if self._takes_n is None:
            self._takes_n = takes_n(self.model, self.transport)
        return via == "n" or self._takes_n

    async def complete_samples(
        self, requests: list[dict[str, Any]], *, prompt_id: str = ""
    ) -> list[Generation]:
        """The answers to ``requests``, one prompt's samples (they differ only in
        ``seed``): each from the cache where it came back before, the rest from ONE
        request with ``n`` = how many are missing (the first missing sample's request,
        its seed included). Each answer is stored under its own sample's key, the key
        ``complete`` would give it: a rerun, or a switch to one call a sample, pays for
        none again. Usage and cost are split as ``transport.chat_replies`` says: the
        prompt's tokens on the first answer of the request, each answer its share of
        the completion tokens, so the answers add up to what the server billed. A
        failed request fails every missing sample (its cost on the first; none is
        stored, so a rerun asks again); a reply with fewer choices than asked leaves
        the rest to one call each. Raises as ``complete`` does."""
        keys = [request_key(r) if self.cache is not None else "" for r in requests]
        got: list[Generation | None] = [None] * len(requests)
        if self.cache is not None:
            for i, key in enumerate(keys):
                hit = self.cache.get(key)
                if hit is not None:
                    self.stats.cached += 1
                    got[i] = dataclasses.replace(hit, prompt_id=prompt_id, teacher=self.name)
        missing = [i for i, gen in enumerate(got) if gen is None]
        if len(missing) > 1:
            answers = await self._call({**requests[missing[0]], "n": len(missing)}, prompt_id)
            # one failed Generation for n asked: the request failed (a choice too long
            # among others fails alone, and is not stored)
            failed = answers[0] if len(answers) == 1 and answers[0].error else None
            for j, i in enumerate(missing):
                if failed is not None:  # every sample fails; the request was paid once
                    got[i] = failed if j == 0 else dataclasses.replace(failed, cost_usd=0.0)
                elif j < len(answers):
                    got[i] = answers[j]
                    if self.cache is not None:
                        self.cache.put(keys[i], answers[j])
            missing = [i for i in missing if got[i] is None]
        rest = await asyncio.gather(
            *(self.complete(requests[i], prompt_id=prompt_id) for i in missing),
            return_exceptions=True,  # every call lands first
        )
        for i, result in zip(missing, rest, strict=True):
            if isinstance(result, BaseException):
                raise result
            got[i] = result
        return [gen for gen in got if gen is not None]

    async def call(self, request: dict[str, Any], *, prompt_id: str = "") -> Generation:
        """Send ``request`` past the cache, attempt after attempt; the answer or the
        reason there is none. Raises as ``complete`` does."""
        return (await self._call(request, prompt_id))[0]

    async def _call(self, request: dict[str, Any], prompt_id: str) -> list[Generation]:
        """``call``, for a request that may ask for ``n`` answers: one ``Generation`` a
        choice (one in all for a failure)."""
        if self._plan is None:
            self._plan = send_plan(self.model, self.transport, self._send, self.max_reply_chars)
        plan = self._plan
        api_key = self._api_key()
        send = {**request, **plan.extra}
        if "max_reply_chars" in send:  # the direct transport reads n answers' worth
            send["max_reply_chars"] *= _n(request)
        if api_key is not None:
            send["api_key"] = api_key
        start = time.perf_counter()
        retrying = tenacity.AsyncRetrying(
            stop=tenacity.stop_after_attempt(self.retries + 1),
            wait=self._wait,
            retry=tenacity.retry_if_exception_type(plan.retry_on),
            before_sleep=self._count_retry,
            reraise=True,
        )
        try:
            gens: list[Generation] = await retrying(
                self._attempt, plan, request, send, prompt_id, start
            )
        except ArbitrageError:
            raise
        except Exception as exc:  # retries spent, or not retryable: 4xx, a broken provider
            rejected = self._rejected(exc, request, api_key, prompt_id)
            if rejected is not None:
                self.stats.failed += 1
                raise rejected from None
            gens = [self._failed(prompt_id, self._message(exc, api_key), start)]
        for gen in gens:
            self._count(gen)
        return gens

    def prices(self) -> tuple[float, float]:
        """USD per (input, output) token: the overrides, else litellm's price map."""
        if self._prices is None:
            self._prices = price_per_token(self.model, *self._overrides)
        return self._prices

    def worst_case_usd(self, messages: list[dict[str, str]], max_tokens: int, n: int = 1) -> float:
        """The most a call with ``messages`` may cost (what the budget reserves for it):
        for ``n`` answers in one request, the prompt once and ``n`` × ``max_tokens``."""
        return worst_case_usd(messages, n * max_tokens, self.prices(), self.model)

    async def _attempt(
        self,
        plan: SendPlan,
        request: dict[str, Any],
        send: dict[str, Any],
        prompt_id: str,
        start: float,
    ) -> list[Generation]:
        estimate = self._reserve(request)
        actual = 0.0
        try:
            if self.breaker is not None and not self.breaker.allow():
                raise TeacherUnavailable(
                    f"{self.label} is out of rotation (circuit open)",
                    teacher=self.name,
                    prompt_id=prompt_id,
                )
            async with self._slot(request):
                if self.breaker is not None and self.breaker.state == "open":
                    # it opened while this call waited for a slot: send nothing more
                    raise TeacherUnavailable(
                        f"{self.label} is out of rotation (circuit open)",
                        teacher=self.name,
                        prompt_id=prompt_id,
                    )
                self.stats.requests += 1
                try:
                    reply = await self._timed(plan, send)
                    gens = self._generations(reply, prompt_id, start, _n(request))
                except ReplyTooLong as exc:  # read no further; it may have cost the most
                    cost = self.worst_case_usd(
                        request["messages"], int(request["max_tokens"]), _n(request)
                    )
                    gens = [self._failed(prompt_id, self._message(exc, None), start, cost)]
                except plan.retry_on as exc:
                    if isinstance(exc, plan.overload):
                        # Before the slot is given back, so no waiting call (on any worker)
                        # slips in ahead of the pause.
                        if self.limits is not None:
                            self.limits.overloaded(retry_after(exc))
                        self.stats.rate_limited += 1
                    if self.breaker is not None:
                        self.breaker.failure(type(exc).__name__)
                    raise
                if self.breaker is not None:
                    self.breaker.success()
                if self.limits is not None:
                    self.limits.success()
                actual = sum(gen.cost_usd for gen in gens)
                return gens
        finally:
            if self.budget is not None:
                self.budget.settle(estimate, actual)

    async def _timed(self, plan: SendPlan, send: dict[str, Any]) -> Any:
        """One send, at most ``timeout_s`` in all: an SDK's own timeout bounds each read,
        so a server that drips a byte at a time would hold it for ever."""
        if self.timeout_s is None or not plan.timed:
            return await plan.send(**send)
        try:
            return await asyncio.wait_for(plan.send(**send), self.timeout_s)
        except (asyncio.TimeoutError, TimeoutError):
            raise plan.timed_out(self.timeout_s) from None

    def _generations(
        self, reply: Any, prompt_id: str, start: float, n: int = 1
    ) -> list[Generation]:
        """One ``Generation`` a choice of the reply; several only where the request
        asked for ``n``, the cost split as the usage is (``transport.chat_replies``)."""
        if isinstance(reply, Generation):  # a whole call made elsewhere (a Ray worker)
            return [dataclasses.replace(reply, prompt_id=prompt_id, teacher=self.name)]
        if isinstance(reply, ChatReply):  # the direct transport: parsed, priced by token
            cost = usage_usd(reply.usage, self.prices())
            return [self._generation(reply, cost, prompt_id, start)]
        if isinstance(reply, list):  # the direct transport, n answers
            parts: list[ChatReply] = reply
            total = sum(usage_usd(p.usage, self.prices()) for p in parts)
        elif n > 1:  # litellm's, n answers
            parts = chat_replies(reply)
            whole = Usage(
                prompt_tokens=sum(p.usage.prompt_tokens for p in parts),
                completion_tokens=sum(p.usage.completion_tokens for p in parts),
            )
            total = self._cost(reply, whole)
        else:  # litellm's response, checked as the direct transport checks its body
            parsed = chat_reply(reply)
            return [self._generation(parsed, self._cost(reply, parsed.usage), prompt_id, start)]
        # the total as billed, shared as the tokens are (all on the first if unpriced)
        weights = [usage_usd(p.usage, self.prices()) for p in parts]
        if not sum(weights):
            weights = [1.0] + [0.0] * (len(parts) - 1)
        return [
            self._generation(p, total * w / sum(weights), prompt_id, start)
            for p, w in zip(parts, weights, strict=True)
        ]

    def _generation(
        self, parsed: ChatReply, cost: float, prompt_id: str, start: float
    ) -> Generation:
        gen = Generation(
            prompt_id=prompt_id,
            teacher=self.name,
            model=self.model,
            text=parsed.text.strip(),
            finish_reason=parsed.finish_reason,
            usage=parsed.usage,
            cost_usd=cost,
            latency_s=time.perf_counter() - start,
        )
        if len(parsed.text) > self.max_reply_chars:
            error = (
                f"reply too long: {len(parsed.text):,} characters, more than "
                f"max_reply_chars ({self.max_reply_chars:,})"
            )
            return dataclasses.replace(gen, text="", error=error)
        return gen

    def _cost(self, response: Any, usage: Usage) -> float:
        if self._overrides != (None, None):
            return usage_usd(usage, self.prices())
        if is_local(self.model):
            return 0.0
        # litellm priced the response already (None: not in its price map); pricing it
        # again costs about 1 ms of CPU a call.
        hidden = getattr(response, "_hidden_params", None) or {}
        if "response_cost" in hidden:
            return float(hidden["response_cost"] or 0.0)
        try:
            return completion_cost(response)
        except Exception:  # unknown model in the price map: cost unknown, not an error
            return 0.0

    def _reserve(self, request: dict[str, Any]) -> float:
        """Reserve the attempt's worst case (raises ``BudgetExceeded``); 0 with no limit."""
        if self.budget is None or self.budget.limit_usd is None:
            return 0.0
        estimate = self.worst_case_usd(request["messages"], int(request["max_tokens"]), _n(request))
        self.budget.reserve(estimate, teacher=self.name)
        return estimate

    def _slot(self, request: dict[str, Any]) -> AbstractAsyncContextManager[None]:
        if self.limits is None:
            return nullcontext()
        # What tokens_per_minute counts: the prompt's bound plus (n ×) max_tokens.
        tokens = prompt_tokens(request["messages"]) + _n(request) * int(
            request.get("max_tokens") or 0
        )
        return self.limits.slot(tokens)

    def _wait(self, state: tenacity.RetryCallState) -> float:
        """As long as the server asked (the attempt paused the limits as long), else
        the backoff."""
        exc = state.outcome.exception() if state.outcome is not None else None
        after = retry_after(exc) if exc is not None else None
        if after is not None:
            return min(after, MAX_RETRY_AFTER_S)
        return float((self._backoff or BACKOFF)(state))

    def _count_retry(self, state: tenacity.RetryCallState) -> None:
        self.stats.retries += 1

    def _count(self, gen: Generation) -> None:
        if gen.error:
            self.stats.failed += 1
        else:
            self.stats.ok += 1
        self.stats.tokens += gen.usage.total_tokens
        self.stats.cost_usd += gen.cost_usd

    def _api_key(self) -> str | None:
        env = self.api_key_env
        if env is None:
            return None
        from arbitrage.config import env_name_problem

        problem = env_name_problem(env)
        if problem is not None:  # a key pasted where its variable's name belongs
            raise ConfigError(f"{self.label}: api_key_env: {problem}")
        key = os.environ.get(env)
        if not key:
            raise ConfigError(f"{self.label}: environment variable {env} is not set")
        return key

    def _rejected(
        self, exc: Exception, request: dict[str, Any], api_key: str | None, prompt_id: str
    ) -> CallRejected | None:
        """``CallRejected`` for a failure no retry and no other prompt will get past,
        else ``None``. The server's words are kept only for a missing model (they name
        it), scrubbed of the key; a refused key's reply may quote part of it."""
        from arbitrage.calls.llm import litellm

        errors = litellm().exceptions
        status = getattr(exc, "status_code", None)
        code = f"HTTP {status}" if status else type(exc).__name__
        # litellm raises its own type for a 401 or a 404, but for a 403 only from some
        # providers (openai/ gives a plain APIError, with the status kept on it)
        if status in (401, 403) or isinstance(
            exc, errors.AuthenticationError | errors.PermissionDeniedError
        ):
            where = f"the API key in {self.api_key_env}" if self.api_key_env else "its API key"
            what = f"{where} was refused ({code}); fix it and rerun the same command to resume"
        elif status == 404 or isinstance(exc, errors.NotFoundError):
            reason = " ".join(scrub(str(exc), [api_key or ""]).split())[:200]
            what = f"no such model ({code}: {reason}); check the model name"
        elif isinstance(exc, errors.BadRequestError) and not known_provider(
            self.model, request.get("api_base")
        ):
            what = no_provider(self.model)
        else:
            return None
        who = self.label if self.model in self.label else f"{self.label} ({self.model})"
        return CallRejected(
            f"{who}: {what}", teacher=self.name, prompt_id=prompt_id, status_code=status
        )

    def _failed(self, prompt_id: str, message: str, start: float, cost: float = 0.0) -> Generation:
        return Generation(
            prompt_id=prompt_id,
            teacher=self.name,
            model=self.model,
            cost_usd=cost,
            latency_s=time.perf_counter() - start if start else 0.0,
            error=message,
        )

    def _message(self, exc: BaseException, api_key: str | None) -> str:
        if isinstance(exc, MalformedReply):
            text = f"malformed reply: {exc}"
        elif isinstance(exc, ReplyTooLong):
            text = f"reply too long: {exc} (max_reply_chars: {self.max_reply_chars:,})"
        else:
            text = f"{type(exc).__name__}: {exc}"
        return scrub(text, [api_key or ""])[:_MESSAGE_CHARS]


def _n(request: dict[str, Any]) -> int:
    """How many answers ``request`` asks for (``n``, 1 if unset)."""
    return int(request.get("n") or 1)


def known_provider(model: str, api_base: str | None = None) -> bool:
    """Whether litellm knows which provider serves ``model`` (the bundled ``local/``
    models always have one)."""
    if is_local(model):
        return True
    from arbitrage.calls.llm import litellm

    module = litellm()
    try:
        module.get_llm_provider(model=model, api_base=api_base)
    except module.exceptions.BadRequestError:
        return False
    return True


def no_provider(model: str) -> str:
    """What to say of a model string litellm knows no provider for."""
    return (
        f"litellm knows no provider for model {model!r}; write it as provider/model "
        "(e.g. openai/gpt-4o-mini)"
    )


class OnClient:
    """For what makes its calls through ``self.client`` (a teacher, an LLM judge): the
    client's cache and counters, read and set on the owner (a run sets its own)."""

    client: LLMClient

    @property
    def cache(self) -> CallCache | None:
        """The call cache the client answers from."""
        return self.client.cache

    @cache.setter
    def cache(self, cache: CallCache | None) -> None:
        self.client.cache = cache

    @property
    def stats(self) -> CallStats:
        """The client's counters."""
        return self.client.stats

    @stats.setter
    def stats(self, stats: CallStats) -> None:
        self.client.stats = stats
