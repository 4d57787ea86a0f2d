"""The providers' batch endpoints, spoken over one aiohttp session (``calls/batch.py``
drives them).

    openai     Files + Batches (``{api_base}/files``, ``{api_base}/batches``): what
               OpenAI serves, and OpenAI-compatible servers (vLLM, OpenRouter)
    anthropic  Message Batches (``{api_base}/messages/batches``)

Our own small client rather than litellm's ``acreate_batch``: litellm's is the OpenAI
SDK behind a file on disk, with an Anthropic side that cannot be pointed at any
``api_base``; ours is four requests a provider. Each provider turns its statuses and
its per-request results into one shape (``Job``, ``Result``). The key goes in a header
only; it never reaches an error message (``scrub``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from arbitrage.calls.llm import scrub
from arbitrage.calls.transport import ChatReply, MalformedReply, chat_reply
from arbitrage.records import Usage

Api = Literal["openai", "anthropic"]
DEFAULT_BASES: dict[str, str] = {
    "openai": "https://api.openai.com/v1",
    "anthropic": "https://api.anthropic.com/v1",
}
_PREFIXES = ("openai/", "hosted_vllm/", "openrouter/", "anthropic/")
# What a request carries that the provider's body does not take.
_NOT_IN_BODY = frozenset({"model", "api_base", "api_key", "timeout", "max_retries"})


class BatchApiError(Exception):
    """An HTTP failure of a batch endpoint (the key scrubbed from it)."""

    def __init__(self, message: str, status_code: int | None = None) -> None:
        super().__init__(message)
        self.status_code = status_code


@dataclass(frozen=True)
class Result:
    """One request's outcome: ``reply``, or ``error`` and whether another batch may
    get past it (expired, cancelled, 429, 5xx)."""

    reply: ChatReply | None = None
    error: str = ""
    retryable: bool = False


@dataclass
class Job:
    """A batch as the provider reports it."""

    id: str
    status: str  # the provider's own word (validating, in_progress, ended, ...)
    ended: bool  # nothing more will change: its results can be read
    failed: bool = False  # ended without results (validation failed)
    reason: str = ""
    counts: dict[str, int] = field(default_factory=dict)
    raw: dict[str, Any] = field(default_factory=dict)


class BatchApi(Protocol):
    """What ``calls/batch.py`` needs of a provider."""

    name: str

    def line(self, custom_id: str, request: dict[str, Any]) -> dict[str, Any]: ...
    async def close(self) -> None: ...
    async def prepare(self, lines: list[dict[str, Any]], key: str | None) -> str: ...
    async def create(self, ref: str, lines: list[dict[str, Any]], key: str | None) -> str: ...
    async def find(self, ref: str, key: str | None) -> str | None: ...
    async def retrieve(self, batch_id: str, key: str | None) -> Job: ...
    async def results(self, job: Job, key: str | None) -> dict[str, Result]: ...
    async def cancel(self, batch_id: str, key: str | None) -> None: ...


def bare_model(model: str) -> str:
    """The provider's own model name: ``openai/gpt-4o-mini`` → ``gpt-4o-mini``."""
    for prefix in _PREFIXES:
        if model.startswith(prefix):
            return model[len(prefix) :]
    return model


def line_bytes(line: dict[str, Any]) -> int:
    """The bytes a request takes in the batch (its JSONL line)."""
    return len(json.dumps(line, ensure_ascii=False).encode("utf-8")) + 1


class _Http:
    """A session a request (a batch job makes a few: none is left open between polls);
    every failure a ``BatchApiError`` without the key."""

    def __init__(self, base: str) -> None:
        self.base = base.rstrip("/")

    def headers(self, key: str | None) -> dict[str, str]:
        raise NotImplementedError

    async def request(
        self, method: str, path: str, key: str | None, *, raw: bool = False, **kwargs: Any
    ) -> Any:
        import aiohttp

        url = f"{self.base}{path}"
        timeout = aiohttp.ClientTimeout(total=300)
        try:
            async with (
                aiohttp.ClientSession(timeout=timeout) as session,
                session.request(method, url, headers=self.headers(key), **kwargs) as resp,
            ):
                body = await resp.read()
                if resp.status >= 400:
                    text = scrub(body.decode("utf-8", "replace"), [key or ""])[:300]
                    raise BatchApiError(f"{method} {path}: HTTP {resp.status}: {text}", resp.status)
        except aiohttp.ClientError as exc:
            raise BatchApiError(f"{method} {path}: {type(exc).__name__}: {exc}") from None
        if raw:
            return body
        try:
            return json.loads(body)
        except ValueError:
            raise BatchApiError(f"{method} {path}: the reply is not JSON") from None

    async def close(self) -> None:
        return None  # no session outlives its request


class OpenAIBatches(_Http):
    """The OpenAI Batch API: a JSONL file uploaded (``purpose=batch``), a batch made of
    it; statuses validating → in_progress → finalizing → completed, or failed, expired,
    cancelling → cancelled; results in ``output_file_id``, failures in ``error_file_id``."""

    name = "openai"
    _ENDED = frozenset({"completed", "failed", "expired", "cancelled"})

    def headers(self, key: str | None) -> dict[str, str]:
        return {"Authorization": f"Bearer {key}"} if key else {}

    def line(self, custom_id: str, request: dict[str, Any]) -> dict[str, Any]:
        body = {k: v for k, v in request.items() if k not in _NOT_IN_BODY}
        body["model"] = bare_model(str(request["model"]))
        return {
            "custom_id": custom_id,
            "method": "POST",
            "url": "/v1/chat/completions",
            "body": body,
        }

    async def prepare(self, lines: list[dict[str, Any]], key: str | None) -> str:
        """Upload the requests as a JSONL file (``purpose=batch``): its id."""
        import aiohttp

        data = "".join(json.dumps(x, ensure_ascii=False) + "\n" for x in lines).encode("utf-8")
        form = aiohttp.FormData()
        form.add_field("purpose", "batch")
        form.add_field("file", data, filename="batch.jsonl", content_type="application/jsonl")
        uploaded = await self.request("POST", "/files", key, data=form)
        return str(uploaded["id"])

    async def create(self, ref: str, lines: list[dict[str, Any]], key: str | None) -> str:
        """Make a batch of the uploaded file ``ref``: its id."""
        body = {
            "input_file_id": ref,
            "endpoint": "/v1/chat/completions",
            "completion_window": "24h",
        }
        batch = await self.request("POST", "/batches", key, json=body)
        return str(batch["id"])

    async def find(self, ref: str, key: str | None) -> str | None:
        """The batch made of input file ``ref``, if one was (a run killed between
        creating a batch and recording its id)."""
        after = None
        for _ in range(50):  # 5,000 of the latest batches at most
            query = {"limit": "100", **({"after": after} if after else {})}
            page = await self.request("GET", "/batches", key, params=query)
            for batch in page.get("data") or []:
                if batch.get("input_file_id") == ref:
                    return str(batch["id"])
            if not page.get("has_more") or not page.get("data"):
                return None
            after = page["data"][-1]["id"]
        return None

    async def retrieve(self, batch_id: str, key: str | None) -> Job:
        raw = await self.request("GET", f"/batches/{batch_id}", key)
        status = str(raw.get("status") or "")
        errors = (raw.get("errors") or {}).get("data") or []
        reason = "; ".join(str(e.get("message") or e.get("code")) for e in errors)[:300]
        return Job(
            id=batch_id,
            status=status,
            ended=status in self._ENDED,
            failed=status == "failed",
            reason=reason,
            counts=dict(raw.get("request_counts") or {}),
            raw=raw,
        )

    async def results(self, job: Job, key: str | None) -> dict[str, Result]:
        got: dict[str, Result] = {}
        for name in ("error_file_id", "output_file_id"):
            file_id = job.raw.get(name)
            if not file_id:
                continue
            body = await self.request("GET", f"/files/{file_id}/content", key, raw=True)
            for text in body.decode("utf-8").splitlines():
                if text.strip():
                    row = json.loads(text)
                    got[str(row.get("custom_id"))] = self._result(row, job.status)
        return got

    @staticmethod
    def _result(row: dict[str, Any], status: str) -> Result:
        response = row.get("response") or {}
        code = int(response.get("status_code") or 0)
        error = row.get("error") or (response.get("body") or {}).get("error")
        if code == 200 and not error:
            try:
                return Result(reply=chat_reply(response.get("body")))
            except MalformedReply as exc:
                return Result(error=f"malformed reply: {exc}", retryable=True)
        what = error.get("code") or error.get("message") if isinstance(error, dict) else error
        retryable = code == 429 or code >= 500 or str(what) in ("batch_expired", "batch_cancelled")
        return Result(error=f"HTTP {code or '-'}: {str(what)[:200]}", retryable=retryable)

    async def cancel(self, batch_id: str, key: str | None) -> None:
        await self.request("POST", f"/batches/{batch_id}/cancel", key)


class AnthropicBatches(_Http):
    """Anthropic Message Batches: the requests in one POST; ``processing_status``
    in_progress → canceling → ended; per-request ``result.type`` succeeded, errored,
    canceled or expired, in the JSONL at ``results_url``."""

    name = "anthropic"

    def headers(self, key: str | None) -> dict[str, str]:
        head = {"anthropic-version": "2023-06-01", "content-type": "application/json"}
        if key:
            head["x-api-key"] = key
        return head

    def line(self, custom_id: str, request: dict[str, Any]) -> dict[str, Any]:
        params = {k: v for k, v in request.items() if k not in _NOT_IN_BODY | {"messages", "seed"}}
        system = [m["content"] for m in request["messages"] if m.get("role") == "system"]
        params["messages"] = [m for m in request["messages"] if m.get("role") != "system"]
        if system:
            params["system"] = "\n\n".join(system)
        params["model"] = bare_model(str(request["model"]))
        # Anthropic custom ids are 1-64 characters of [A-Za-z0-9_-]: a hex digest fits
        return {"custom_id": custom_id[:64], "params": params}

    async def prepare(self, lines: list[dict[str, Any]], key: str | None) -> str:
        return ""  # the requests go in the create call itself

    async def create(self, ref: str, lines: list[dict[str, Any]], key: str | None) -> str:
        batch = await self.request("POST", "/messages/batches", key, json={"requests": lines})
        return str(batch["id"])

    async def find(self, ref: str, key: str | None) -> str | None:
        return None  # nothing ties a message batch to what made it before its id is known

    async def retrieve(self, batch_id: str, key: str | None) -> Job:
        raw = await self.request("GET", f"/messages/batches/{batch_id}", key)
        status = str(raw.get("processing_status") or "")
        return Job(
            id=batch_id,
            status=status,
            ended=status == "ended",
            counts=dict(raw.get("request_counts") or {}),
            raw=raw,
        )

    async def results(self, job: Job, key: str | None) -> dict[str, Result]:
        url = job.raw.get("results_url")
        if not url:
            return {}
        path = str(url)[len(self.base) :] if str(url).startswith(self.base) else None
        if path is None:
            raise BatchApiError("results_url is not under api_base")
        body = await self.request("GET", path, key, raw=True)
        got: dict[str, Result] = {}
        for text in body.decode("utf-8").splitlines():
            if text.strip():
                row = json.loads(text)
                got[str(row.get("custom_id"))] = self._result(row.get("result") or {})
        return got

    @staticmethod
    def _result(result: dict[str, Any]) -> Result:
        kind = result.get("type")
        if kind == "succeeded":
            message = result.get("message") or {}
            parts = message.get("content") or []
            text = "".join(str(p.get("text", "")) for p in parts if p.get("type") == "text")
            usage = message.get("usage") or {}
            return Result(
                reply=ChatReply(
                    text=text,
                    finish_reason={"end_turn": "stop", "max_tokens": "length"}.get(
                        str(message.get("stop_reason")), str(message.get("stop_reason") or "")
                    ),
                    usage=Usage(
                        prompt_tokens=int(usage.get("input_tokens") or 0),
                        completion_tokens=int(usage.get("output_tokens") or 0),
                    ),
                )
            )
        if kind == "errored":
            error = (result.get("error") or {}).get("error") or result.get("error") or {}
            what = str(error.get("type") or "error")
            retryable = what in ("overloaded_error", "api_error", "rate_limit_error")
            return Result(
                error=f"{what}: {str(error.get('message') or '')[:200]}", retryable=retryable
            )
        return Result(error=f"request {kind}", retryable=True)  # canceled, expired

    async def cancel(self, batch_id: str, key: str | None) -> None:
        await self.request("POST", f"/messages/batches/{batch_id}/cancel", key)


def batch_api(api: str, api_base: str | None) -> OpenAIBatches | AnthropicBatches:
    """The client of ``api`` at ``api_base`` (default: the provider's own)."""
    base = api_base or DEFAULT_BASES[api]
    return AnthropicBatches(base) if api == "anthropic" else OpenAIBatches(base)


def api_of(model: str) -> Api:
    """Which batch API a model string speaks: ``anthropic/`` models Anthropic's, any
    other the OpenAI one."""
    return "anthropic" if model.startswith("anthropic/") else "openai"
