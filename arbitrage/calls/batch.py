"""Batch mode: the send step of a teacher or judge with ``mode: batch``.

    LLMClient.complete → ... → BatchSender(**request)      (a future per call)
      │  queued; after ``linger_s`` without a new call (or ``round_prompts`` calls, or
      │  a provider limit on requests or bytes) the queue goes out as batch jobs
      ▼
    journal (``<out>/batches.jsonl``, fsync'd): the job's request ids, then its batch id
      ▼
    poll with backoff (``poll_s`` doubling to ``max_poll_s``) → results downloaded →
    each call's future resolves: the client caches, prices and budgets it like an
    online answer

The loop above is the same as online: windows keep being routed, settled and
committed in ``arbitrage.schedule``'s fixed order, so a batch run writes the mixture
an online run writes; what batch mode changes is that the windows in flight (a
*round*: ``batch.round_prompts`` prompts, which sets ``windows``) go out together.

Each request's id (``custom_id``) is its call-cache key. A rerun finds a call's id in
the journal and re-attaches to the batch that holds it (a finished batch is read
again, at no charge) instead of submitting it again. A request that expired, was
cancelled or failed retryably (429, 5xx) goes into a new batch, at most
``resubmits`` times; past ``deadline_s`` a batch is cancelled and its open requests
go online (``on_deadline: online``) or fail with the reason (``fail``).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import time
import uuid
import weakref
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from arbitrage.calls.batch_api import BatchApi, BatchApiError, Job, Result, line_bytes
from arbitrage.calls.cache import request_key
from arbitrage.calls.transport import ChatReply
from arbitrage.errors import CallRejected, DataError
from arbitrage.records import Generation

if TYPE_CHECKING:
    from arbitrage.config import BatchConfig, RunConfig, ScorerConfig, TeacherConfig

Online = Callable[[dict[str, Any]], Any]  # an online call of a request: a Generation
_OPEN: weakref.WeakValueDictionary[str, BatchJournal] = weakref.WeakValueDictionary()


class BatchFailed(Exception):
    """A request that no batch answered (not retried by the client: the batch retried it)."""


@dataclass
class JobState:
    """One batch job, as the journal and the live panel know it."""

    job: str
    teacher: str
    ids: list[str]
    created: float
    ref: str = ""  # the input file (OpenAI), once uploaded
    batch_id: str = ""
    status: str = "submitting"
    counts: dict[str, int] = field(default_factory=dict)
    ended: bool = False


class BatchJournal:
    """The append-only record of every batch job of a run, fsync'd line by line.

    Args:
        path: The JSONL file (``<out>/batches.jsonl``).
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.jobs: dict[str, JobState] = {}
        self.where: dict[str, str] = {}  # request id → the latest job holding it
        self.tries: dict[str, int] = {}  # request id → jobs it was sent in
        self.submitted = 0  # jobs this process submitted
        if self.path.exists():
            self._read()

    @classmethod
    def shared(cls, path: str | Path) -> BatchJournal:
        """The one journal of ``path`` in this process, which a run's teachers, judges
        and live panel share (each job's live state is in memory only)."""
        key = str(Path(path).resolve())
        journal = _OPEN.get(key)
        if journal is None:
            journal = _OPEN[key] = cls(path)
        return journal

    def _read(self) -> None:
        lines = self.path.read_text(encoding="utf-8").splitlines()
        for n, text in enumerate(lines, 1):
            if not text.strip():
                continue
            try:
                row = json.loads(text)
            except ValueError:  # the last line of a killed write: it was never acted on
                if n == len(lines):
                    continue
                raise DataError(f"{self.path}: line {n} is not JSON") from None
            self._apply(row)

    def _apply(self, row: dict[str, Any]) -> None:
        job = str(row["job"])
        if row["event"] == "submit":
            state = JobState(job, str(row["teacher"]), list(row["ids"]), float(row["time"]))
            state.ref = str(row.get("ref") or "")
            self.jobs[job] = state
            for rid in state.ids:
                self.where[rid] = job
                self.tries[rid] = self.tries.get(rid, 0) + 1
        elif job in self.jobs:
            state = self.jobs[job]
            if row["event"] == "created":
                state.batch_id = str(row["batch"])
                state.status = "submitted"
            elif row["event"] == "ended":
                state.status = str(row["status"])
                state.ended = True

    def write(self, event: str, job: str, **data: Any) -> None:
        """Append one event, on disk before this returns."""
        row = {"event": event, "job": job, "time": time.time(), **data}
        self._apply(row)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
            f.flush()
            os.fsync(f.fileno())

    def summary(self) -> dict[str, Any]:
        """``report.json`` ``batch``: jobs by status, and requests sent more than once."""
        by_status: dict[str, int] = {}
        for state in self.jobs.values():
            by_status[state.status] = by_status.get(state.status, 0) + 1
        return {
            "path": str(self.path),
            "jobs": len(self.jobs),
            "by_status": by_status,
            "requests": len(self.tries),
            "resubmitted": sum(1 for n in self.tries.values() if n > 1),
        }


class BatchSender:
    """The send step of one caller in batch mode (``acompletion``'s signature).

    Args:
        name: The caller (a teacher's name, ``judge``).
        api: The provider's batch endpoints (``calls/batch_api.py``).
        journal: The run's journal, shared by every batch caller.
        settings: ``batch:`` of the run config.
        online: How a request goes online after ``deadline_s`` (``on_deadline: online``).
        clock: Seconds since the epoch (the journal's times).
    """

    def __init__(
        self,
        name: str,
        api: BatchApi,
        journal: BatchJournal,
        settings: BatchConfig,
        *,
        online: Online | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.name = name
        self.api = api
        self.journal = journal
        self.settings = settings
        self.online = online
        self._clock = clock
        self._queue: dict[str, dict[str, Any]] = {}  # id → request, waiting to go out
        self._requests: dict[str, dict[str, Any]] = {}  # id → request, until answered
        self._waiting: dict[str, asyncio.Future[Any]] = {}
        self._polls: dict[str, asyncio.Task[None]] = {}
        self._ended: dict[str, tuple[Job, dict[str, Result]]] = {}  # job → what it returned
        self._mine: set[str] = set()  # jobs this process submitted
        self._tries: dict[str, int] = {}  # request id → jobs this process sent it in
        self._flusher: asyncio.Task[None] | None = None
        self._wake: asyncio.Event | None = None
        self._key: str | None = None

    async def __call__(self, **request: Any) -> ChatReply | Generation:
        """The answer to one request, once a batch holding it has ended."""
        self._key = request.get("api_key") or self._key
        rid = request_key(request)
        future = self._waiting.get(rid)
        if future is None:
            future = asyncio.get_running_loop().create_future()
            self._waiting[rid] = future
            self._requests[rid] = request
            job = self.journal.where.get(rid)
            if job is not None and self.journal.jobs[job].teacher == self.name:
                self._attach(job)  # sent before this process: never sent again
            else:
                self._enqueue(rid)
        return await asyncio.shield(future)

    # -- going out ------------------------------------------------------------------

    def _enqueue(self, rid: str) -> None:
        self._queue[rid] = self._requests[rid]
        if self._wake is None:
            self._wake = asyncio.Event()
        self._wake.set()
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.ensure_future(self._flush_loop())

    async def _flush_loop(self) -> None:
        assert self._wake is not None
        while self._queue:
            # linger: go out once no call came for linger_s, or the round is full
            while len(self._queue) < self.settings.round_prompts:
                self._wake.clear()
                try:
                    await asyncio.wait_for(self._wake.wait(), self.settings.linger_s)
                except (asyncio.TimeoutError, TimeoutError):
                    break
            queued, self._queue = self._queue, {}
            for chunk in self._chunks(queued):
                await self._submit(chunk)

    def _chunks(self, queued: dict[str, dict[str, Any]]) -> list[list[tuple[str, dict[str, Any]]]]:
        """The queue cut to the provider's limits on requests and bytes per batch."""
        chunks: list[list[tuple[str, dict[str, Any]]]] = [[]]
        size = 0
        for rid, request in queued.items():
            line = self.api.line(rid, request)
            n = line_bytes(line)
            last = chunks[-1]
            if last and (
                len(last) >= self.settings.max_requests or size + n > self.settings.max_bytes
            ):
                chunks.append([])
                size = 0
            chunks[-1].append((rid, line))
            size += n
        return [c for c in chunks if c]

    async def _submit(self, chunk: list[tuple[str, dict[str, Any]]]) -> None:
        ids = [rid for rid, _ in chunk]
        job = uuid.uuid4().hex[:12]
        lines = [line for _, line in chunk]
        try:
            # An OpenAI upload is free and names the batch made of it: recorded before
            # the batch is made, a rerun finds that batch even if its id never was.
            ref = await self.api.prepare(lines, self._key)
            self.journal.write("submit", job, teacher=self.name, ids=ids, ref=ref)
            batch_id = await self.api.create(ref, lines, self._key)
            self.journal.write("created", job, batch=batch_id)
            self.journal.submitted += 1
            self._mine.add(job)
            for rid in ids:
                self._tries[rid] = self._tries.get(rid, 0) + 1
        except BatchApiError as exc:
            for rid in ids:
                self._fail(rid, f"batch not submitted: {exc}", exc.status_code)
            return
        self._attach(job)

    # -- coming back ----------------------------------------------------------------

    def _attach(self, job: str) -> None:
        if job in self._ended:  # read already: answer from what it returned
            self._deliver(self.journal.jobs[job], *self._ended[job])
        elif job not in self._polls or self._polls[job].done():
            self._polls[job] = asyncio.ensure_future(self._poll(job))

    async def _poll(self, job: str) -> None:
        state = self.journal.jobs[job]
        try:
            if not state.batch_id:  # killed between making the batch and recording it
                found = await self.api.find(state.ref, self._key) if state.ref else None
                if found is None:
                    self.journal.write("ended", job, status="never made")
                    self._requeue(state.ids, "never made")
                    return
                self.journal.write("created", job, batch=found)
            wait = self.settings.poll_s
            while True:
                got = await self.api.retrieve(state.batch_id, self._key)
                state.status, state.counts = got.status, got.counts
                if got.ended:
                    break
                if self._clock() - state.created > self.settings.deadline_s:
                    await self._past_deadline(state)
                    return
                await asyncio.sleep(wait)
                wait = min(wait * 2, self.settings.max_poll_s)
            results = {} if got.failed else await self.api.results(got, self._key)
        except BatchApiError as exc:
            for rid in state.ids:
                self._fail(rid, f"batch {state.batch_id or job}: {exc}")
            return
        if not state.ended:
            self.journal.write("ended", job, status=got.status)
        self._ended[job] = (got, results)
        self._deliver(state, got, results)

    def _deliver(self, state: JobState, got: Job, results: dict[str, Result]) -> None:
        retry: list[str] = []
        for rid in state.ids:
            if rid not in self._waiting:
                continue  # nobody asks for it in this process (yet)
            result = results.get(rid) or results.get(rid[:64])
            if result is not None and result.reply is not None:
                self._resolve(rid, result.reply)
            elif state.job not in self._mine:
                retry.append(rid)  # failed in an earlier process: a rerun asks again
            elif got.failed:
                self._fail(rid, f"batch {got.id} failed: {got.reason or got.status}")
            elif result is not None and not result.retryable:
                self._fail(rid, f"batch {got.id}: {result.error}")
            else:
                retry.append(rid)
        self._requeue(retry, got.status)

    def _requeue(self, ids: list[str], why: str) -> None:
        for rid in ids:
            if rid not in self._waiting:
                continue
            tries = self._tries.get(rid, 0)
            if tries > self.settings.resubmits:
                self._fail(rid, f"no batch answered it ({why}) after {tries} tries")
            else:
                self._enqueue(rid)

    async def _past_deadline(self, state: JobState) -> None:
        """Cancel the batch; its requests go online, or fail with the reason."""
        with contextlib.suppress(BatchApiError):  # it may have ended meanwhile: no matter
            await self.api.cancel(state.batch_id, self._key)
        self.journal.write("ended", state.job, status="past deadline")
        reason = (
            f"batch {state.batch_id} not ended within deadline_s ({self.settings.deadline_s:g})"
        )
        open_ids = [rid for rid in state.ids if rid in self._waiting]
        if self.settings.on_deadline == "online" and self.online is not None:
            gens = await asyncio.gather(*(self.online(self._requests[r]) for r in open_ids))
            for rid, gen in zip(open_ids, gens, strict=True):
                self._resolve(rid, gen)
            return
        for rid in open_ids:
            self._fail(rid, reason)

    def _resolve(self, rid: str, reply: Any) -> None:
        future = self._waiting.pop(rid, None)
        self._requests.pop(rid, None)
        if future is not None and not future.done():
            future.set_result(reply)

    def _fail(self, rid: str, reason: str, status: int | None = None) -> None:
        future = self._waiting.pop(rid, None)
        self._requests.pop(rid, None)
        if future is None or future.done():
            return
        if status in (401, 403):  # every call would meet it: the run stops, as online
            what = f"{self.name}: the API key was refused ({reason}); fix it and rerun"
            future.set_exception(CallRejected(what, teacher=self.name, status_code=status))
        else:
            future.set_exception(BatchFailed(reason))

    async def aclose(self) -> None:
        """Stop polling (the journal keeps every job: a rerun re-attaches)."""
        tasks = [*self._polls.values(), *([self._flusher] if self._flusher else [])]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await self.api.close()


def jobs_of(journal: BatchJournal | None) -> list[JobState]:
    """The jobs to show (the live panel): unfinished first, then the latest ended."""
    if journal is None:
        return []
    states = list(journal.jobs.values())
    return [s for s in states if not s.ended] + [s for s in states if s.ended][-3:]


def batch_sender(teacher: TeacherConfig, config: RunConfig, journal: BatchJournal) -> BatchSender:
    """The send step of a ``mode: batch`` teacher; past ``deadline_s`` with
    ``on_deadline: online`` its open requests go through an online client of the same
    model (no cache: the teacher's client caches what it returns)."""
    from arbitrage.calls.batch_api import api_of, batch_api
    from arbitrage.calls.client import LLMClient

    online = LLMClient(
        teacher.name,
        teacher.model,
        transport=teacher.transport,
        api_key_env=teacher.api_key_env,
        retries=teacher.retries,
        timeout_s=teacher.timeout_s,
        max_reply_chars=teacher.max_reply_chars,
        input_cost_per_mtok=teacher.input_cost_per_mtok,
        output_cost_per_mtok=teacher.output_cost_per_mtok,
        label=f"teacher {teacher.name!r} (online, past the batch deadline)",
    )

    async def go_online(request: dict[str, Any]) -> Generation:
        return await online.call({k: v for k, v in request.items() if k != "api_key"})

    api = batch_api(teacher.batch_api or api_of(teacher.model), teacher.api_base)
    return BatchSender(teacher.name, api, journal, config.batch, online=go_online)


def judge_batch_params(
    cfg: ScorerConfig, *, settings: BatchConfig, journal: BatchJournal
) -> dict[str, Any]:
    """An LLM judge's keyword arguments for ``mode: batch``: the send step, batch
    prices, a concurrency that lets a round's calls queue, and a timeout past the
    batch deadline (the deadline is what bounds a batch call)."""
    from arbitrage.calls.batch_api import api_of, batch_api
    from arbitrage.calls.budget import PER_MTOK, batch_price_per_token

    assert cfg.model is not None
    overrides = (cfg.params.get("input_cost_per_mtok"), cfg.params.get("output_cost_per_mtok"))
    unit = batch_price_per_token(model=cfg.model, overrides=overrides, discount=settings.discount)
    api = batch_api(cfg.batch_api or api_of(cfg.model), cfg.api_base)
    return {
        "completion_fn": BatchSender(f"{cfg.kind} {cfg.model}", api, journal, settings),
        "timeout_s": settings.deadline_s + 3600.0,
        "max_concurrency": settings.max_requests,
        "input_cost_per_mtok": unit[0] * PER_MTOK,
        "output_cost_per_mtok": unit[1] * PER_MTOK,
    }
