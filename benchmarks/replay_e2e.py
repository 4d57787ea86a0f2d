"""End-to-end replay of a routing corpus: the real ``arbitrage run``, answers and rewards replayed.

    outcomes = run_end_to_end(rows, "bandit", {}, seed=0, out_dir=Path("out/e2e"))
    results = prompt_results(rows, outcomes)          # true reward of each winner
    assert not reward_mismatches(rows, outcomes)      # the run saw the corpus rewards

A corpus row is ``{"id", "text", "task", "language", "models": {alias: {"answer",
"reward"}}}`` (``/work/shared/realdata/README.md``). ``ReplayServer`` is an
OpenAI-compatible server on 127.0.0.1: model ``teacher-<alias>`` answers a prompt with
that alias's recorded answer, and model ``judge`` replies ``Score: <reward>``, so the
run's judge (scale ``[0, 1]``) recovers the recorded reward bit for bit. Everything
between them is the real pipeline: litellm's ``openai/`` path, the engine, the router,
the reward model, the run directory.

``offline_outcomes`` gives the same rows as a fully scored run, with the same prompt
ids and teacher names, for ``arbitrage.commands.evaluate.replay``: the offline replay to
compare the end-to-end run with.

Where the pipeline and the corpus differ, by design: an empty answer is unscored (it
never wins; the corpus still holds a reward for it), and a teacher's answer is
stripped of surrounding whitespace. Two models that gave one prompt the same answer
get one judge reply; if the corpus scored them differently, only the first model's
reward can come back (``Recordings.ambiguous``).
"""

from __future__ import annotations

import json
import math
import os
import re
import threading
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from arbitrage.records import Candidate, Generation, Outcome, Prompt, Usage, pick_winner

TEACHER_PREFIX = "teacher-"
JUDGE_MODEL = "judge"
KEY_ENV = "REPLAY_KEY"
# The judge's scale: a reply of the recorded reward itself, mapped by (s - 0) / (1 - 0).
JUDGE_SCALE = (0, 1)
# High enough that no recorded answer (the longest, ~24,000 characters) is cut.
TEACHER_MAX_TOKENS = 32768

Row = Mapping[str, Any]

_SCALE_LINE = re.compile(r"integer from (-?\d+) \(worst\) to (-?\d+) \(best\)")
_LANGUAGE_LINE = re.compile(r"\n\(The user's language: [^\n]*\)\n\Z")


def teacher_name(alias: str) -> str:
    """The teacher (and served model) name of a corpus alias."""
    return TEACHER_PREFIX + alias


def alias_of(teacher: str) -> str:
    """The corpus alias of a teacher name."""
    return teacher.removeprefix(TEACHER_PREFIX)


def corpus_prompt(row: Row) -> Prompt:
    """The ``Prompt`` a run builds from a row of the prompts file (so the same id)."""
    return Prompt(text=str(row["text"]), language=str(row["language"]), task=str(row["task"]))


def tokens(text: str) -> int:
    """A token count for ``usage``: UTF-8 bytes / 4 (about 4 characters a token in
    English, 1-2 in Cyrillic and Hangul)."""
    return math.ceil(len(text.encode("utf-8")) / 4)


class Recordings:
    """The corpus as the server looks it up: answers by (prompt text, alias), rewards by
    (prompt text, stripped answer).

    ``ambiguous`` holds the (row id, alias) of each answer that repeats another alias's
    answer to the same prompt with another reward: the judge sees only the answer, so
    it replies with the first alias's.
    """

    def __init__(self, rows: Sequence[Row]) -> None:
        self.answers: dict[str, dict[str, str]] = {}
        self.rewards: dict[tuple[str, str], float] = {}
        self.ambiguous: set[tuple[str, str]] = set()
        for row in rows:
            text = str(row["text"])
            if text in self.answers:
                raise ValueError(f"the text of row {row['id']!r} repeats an earlier row's")
            self.answers[text] = {}
            for alias, rec in row["models"].items():
                answer, reward = str(rec["answer"]), float(rec["reward"])
                self.answers[text][alias] = answer
                key = (text, answer.strip())  # a teacher strips its answer before scoring
                if key in self.rewards and self.rewards[key] != reward:
                    self.ambiguous.add((str(row["id"]), alias))
                self.rewards.setdefault(key, reward)
        self._stripped = {t.strip(): t for t in self.answers}

    def answer(self, alias: str, prompt: str) -> str | None:
        """The recorded answer of ``alias`` to the prompt ``prompt``, if any."""
        text = prompt if prompt in self.answers else self._stripped.get(prompt.strip())
        return None if text is None else self.answers[text].get(alias)

    def reward(self, judge_prompt: str) -> float | None:
        """The recorded reward of the (prompt, answer) pair a judge request is about."""
        # reward/judge.py's template: rubric, "[Instruction]", the prompt, the language
        # line, "[Answer]", the answer, "[End of answer]", the ending. A prompt or answer
        # may itself hold "[Answer]": every split is tried against the recorded pairs.
        start = judge_prompt.find("\n[Instruction]\n")
        end = judge_prompt.rfind("\n[End of answer]\n")
        if start < 0 or end < start:
            return None
        body = judge_prompt[start + len("\n[Instruction]\n") : end]
        at = body.find("\n[Answer]\n") + 1
        while at > 0:
            # head: the prompt, "\n", the language line (or nothing), "\n"
            head, answer = body[: at - 1], body[at + len("[Answer]\n") :]
            line = _LANGUAGE_LINE.search(head)
            for prompt in ([head[: line.start()]] if line else []) + [head[:-1]]:
                reward = self.rewards.get((prompt, answer))
                if reward is not None:
                    return reward
            at = body.find("\n[Answer]\n", at) + 1
        return None


class ReplayServer:
    """Serves the recorded answers and rewards of ``rows`` at ``url``; ``close()`` it when
    done (or use ``with``). ``requests`` counts the requests per model."""

    def __init__(self, rows: Sequence[Row]) -> None:
        self.recordings = Recordings(rows)
        self.requests: dict[str, int] = {}
        self._lock = threading.Lock()
        self._httpd = _Server(("127.0.0.1", 0), _Handler)
        self._httpd.replay = self
        host, port = self._httpd.server_address[:2]
        self.url = f"http://{host!s}:{port}/v1"
        self._thread = threading.Thread(
            target=self._httpd.serve_forever,
            kwargs={"poll_interval": 0.05},
            name="replay-openai-server",
            daemon=True,
        )
        self._thread.start()

    def close(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=5)

    def __enter__(self) -> ReplayServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def complete(self, body: Mapping[str, Any]) -> tuple[int, dict[str, Any]]:
        """The status and JSON body of one chat completion request."""
        model = str(body.get("model", ""))
        messages = list(body.get("messages") or [])
        with self._lock:
            self.requests[model] = self.requests.get(model, 0) + 1
        user: Mapping[str, Any] = next(
            (m for m in reversed(messages) if m.get("role") == "user"), {}
        )
        content = str(user.get("content") or "")
        if model == JUDGE_MODEL:
            text = self._verdict(content, structured="response_format" in body)
        elif model.startswith(TEACHER_PREFIX):
            text = self.recordings.answer(alias_of(model), content)
        else:
            text = None
        if text is None:
            what = f"no recorded reply of model {model!r} to this request"
            return 404, {"error": {"message": what, "type": "not_found_error", "code": "404"}}
        prompt_tokens = sum(tokens(str(m.get("content") or "")) + 4 for m in messages) + 3
        completion_tokens = tokens(text)
        return 200, {
            "id": f"chatcmpl-{uuid.uuid4().hex[:24]}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": model,
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": text},
                    "finish_reason": "stop",
                }
            ],
            "usage": {
                "prompt_tokens": prompt_tokens,
                "completion_tokens": completion_tokens,
                "total_tokens": prompt_tokens + completion_tokens,
            },
        }

    def _verdict(self, content: str, *, structured: bool) -> str | None:
        """The judge's reply: the recorded reward on the scale the request asks for."""
        reward = self.recordings.reward(content)
        if reward is None:
            return None
        found = _SCALE_LINE.search(content)
        low, high = (int(found[1]), int(found[2])) if found else (1, 10)
        score = low + (high - low) * reward
        if structured:
            return json.dumps({"reason": "Replayed from the corpus.", "score": score})
        # Positional, never "1e-05" (which no prose parser reads), and exactly repr's digits.
        return f"Replayed from the corpus.\nScore: {Decimal(repr(score)):f}"


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 256  # many concurrent connects must not be refused
    replay: ReplayServer


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as the OpenAI client expects
    server: _Server

    def do_POST(self) -> None:
        raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        if not self.path.rstrip("/").endswith("/chat/completions"):
            self._send(404, {"error": {"message": f"no route {self.path}", "type": "not_found"}})
            return
        try:
            status, payload = self.server.replay.complete(json.loads(raw or b"{}"))
        except Exception as exc:  # a bad request is a 500 the client sees, not a hung socket
            status, payload = 500, {"error": {"message": repr(exc), "type": "server_error"}}
        self._send(status, payload)

    def _send(self, status: int, payload: dict[str, Any]) -> None:
        data = json.dumps(payload).encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:
        pass


def aliases(rows: Sequence[Row]) -> list[str]:
    """The corpus's model aliases, in the first row's order (the run's teacher order,
    which breaks reward ties)."""
    return list(rows[0]["models"])


def replay_config(
    rows: Sequence[Row],
    router: str,
    params: Mapping[str, Any],
    *,
    seed: int,
    prompts: Path,
    out: Path,
    url: str,
    batch_size: int = 16,
    transport: str = "litellm",
) -> dict[str, Any]:
    """The run config: every prompt of ``prompts``, teachers and judge at ``url``, and
    nothing that would move a reward off the recorded one."""
    served = {"api_base": url, "api_key_env": KEY_ENV}
    return {
        "out": str(out),
        "seed": seed,
        "batch_size": batch_size,
        "pool": {
            "prompts": str(prompts),
            "n_prompts": len(rows),  # never a default cut of the file
            "languages": sorted({str(r["language"]) for r in rows}),
        },
        "teachers": [
            {
                "name": teacher_name(alias),
                "model": f"openai/{teacher_name(alias)}",
                **served,
                "transport": transport,
                "temperature": 0.0,
                "max_tokens": TEACHER_MAX_TOKENS,
                "max_concurrency": 32,
            }
            for alias in aliases(rows)
        ],
        "reward": {
            "kind": "judge",
            "model": f"openai/{JUDGE_MODEL}",
            **served,
            "params": {"scale": list(JUDGE_SCALE), "structured": False, "max_concurrency": 64},
            "length": {"mode": "off"},
            "normalise": "none",
            "language": {"mode": "off"},
        },
        "router": {"name": router, "params": dict(params)},
        # The mixture never changes outcomes; without filters it keeps every winner.
        "mixture": {
            "drop_refusals": False,
            "drop_boilerplate": False,
            "dedup": {"prompts": False, "answers": False},
        },
    }


def run_end_to_end(
    rows: Sequence[Row],
    router: str,
    params: Mapping[str, Any],
    *,
    seed: int,
    out_dir: Path,
    batch_size: int = 16,
    windows: int = 1,
    transport: str = "litellm",
) -> list[Outcome]:
    """Run ``arbitrage run`` on ``rows`` against a ``ReplayServer``; the outcomes in pool order.

    Writes ``out_dir/prompts.jsonl``, ``out_dir/config.yaml`` and the run directory
    ``out_dir/run`` (which must not exist yet: a new server port is a new config).
    ``transport``: the teachers' (``direct`` skips litellm: about 3× faster a run;
    the judge always goes through litellm).
    """
    import yaml

    from arbitrage.commands.run import run_config
    from arbitrage.config import load_config
    from arbitrage.rundir import RunDir

    if not rows:
        raise ValueError("no rows to replay")
    ids = [corpus_prompt(r).id for r in rows]
    if len(set(ids)) != len(ids):
        raise ValueError("two rows have the same text, language and task: one prompt id")
    out_dir = Path(out_dir)
    if (out_dir / "run").exists():
        raise FileExistsError(f"{out_dir / 'run'} exists: replay into a new out_dir")
    out_dir.mkdir(parents=True, exist_ok=True)
    prompts = out_dir / "prompts.jsonl"
    # load_prompts keeps text, language and task (and persona); a row id would be dropped.
    prompts.write_text(
        "".join(
            json.dumps(
                {"text": r["text"], "language": r["language"], "task": r["task"]},
                ensure_ascii=False,
            )
            + "\n"
            for r in rows
        ),
        encoding="utf-8",
    )
    os.environ.setdefault(KEY_ENV, "sk-replay")
    with ReplayServer(rows) as server:
        config = replay_config(
            rows,
            router,
            params,
            seed=seed,
            prompts=prompts,
            out=out_dir / "run",
            url=server.url,
            batch_size=batch_size,
            transport=transport,
        )
        config["windows"] = windows
        path = out_dir / "config.yaml"
        path.write_text(yaml.safe_dump(config, sort_keys=False, allow_unicode=True))
        run_config(load_config(path))
    by_id = {o.prompt.id: o for o in RunDir(out_dir / "run").load_outcomes()}
    missing = [i for i in ids if i not in by_id]
    if missing:
        raise RuntimeError(f"the run left {len(missing)} of {len(ids)} prompts without an outcome")
    return [by_id[i] for i in ids]


@dataclass(frozen=True)
class PromptResult:
    """One prompt of a run, in corpus terms (aliases, recorded rewards).

    ``reward`` is the recorded reward of the winner's answer (0 without a winner, as
    ``arbitrage.commands.evaluate`` counts it); ``oracle`` the best recorded reward of a
    non-empty answer; ``generations`` how many teachers answered.
    """

    row_id: str
    answered: tuple[str, ...]
    winner: str | None
    reward: float
    oracle: float
    generations: int
    routed_by: str


def _by_prompt(rows: Sequence[Row], outcomes: Sequence[Outcome]) -> list[tuple[Row, Outcome]]:
    rows_by_id = {corpus_prompt(r).id: r for r in rows}
    pairs = []
    for outcome in outcomes:
        row = rows_by_id.get(outcome.prompt.id)
        if row is None:
            raise ValueError(f"outcome of prompt {outcome.prompt.id} matches no row")
        pairs.append((row, outcome))
    return pairs


def prompt_results(rows: Sequence[Row], outcomes: Sequence[Outcome]) -> list[PromptResult]:
    """Each outcome mapped back to its row, scored with the corpus's rewards."""
    results = []
    for row, outcome in _by_prompt(rows, outcomes):
        models = row["models"]
        winner = None if outcome.winner is None else alias_of(outcome.winner)
        results.append(
            PromptResult(
                row_id=str(row["id"]),
                answered=tuple(alias_of(c.teacher) for c in outcome.candidates),
                winner=winner,
                reward=0.0 if winner is None else float(models[winner]["reward"]),
                oracle=max(
                    (float(m["reward"]) for m in models.values() if str(m["answer"]).strip()),
                    default=0.0,
                ),
                generations=outcome.n_generations,
                routed_by=outcome.routed_by,
            )
        )
    return results


@dataclass(frozen=True)
class Mismatch:
    """A candidate whose text or reward is not the corpus's; ``ambiguous``: its answer
    repeats another model's, which the corpus scored differently."""

    row_id: str
    alias: str
    recorded: float | None
    got: float | None
    what: str
    ambiguous: bool = False


def reward_mismatches(
    rows: Sequence[Row], outcomes: Sequence[Outcome], *, tol: float = 1e-9
) -> list[Mismatch]:
    """Every candidate whose answer is not the recorded one, or whose reward is more than
    ``tol`` off the recorded reward (an empty answer is expected unscored)."""
    ambiguous = Recordings(rows).ambiguous
    found = []
    for row, outcome in _by_prompt(rows, outcomes):
        for cand in outcome.candidates:
            alias = alias_of(cand.teacher)
            rec = row["models"][alias]
            answer = str(rec["answer"]).strip()
            recorded = float(rec["reward"]) if answer else None
            gen = cand.generation
            key = (str(row["id"]), alias)
            if gen.error or gen.text != answer:
                what = gen.error or "answer differs from the recorded one"
                found.append(Mismatch(key[0], alias, recorded, cand.reward, what))
            elif (recorded is None) != (cand.reward is None) or (
                recorded is not None
                and cand.reward is not None
                and abs(recorded - cand.reward) > tol
            ):
                what = "reward differs from the recorded one"
                found.append(Mismatch(key[0], alias, recorded, cand.reward, what, key in ambiguous))
    return found


def offline_outcomes(rows: Sequence[Row]) -> list[Outcome]:
    """The rows as a fully scored run (every teacher answered, the recorded rewards; an
    empty answer unscored, and two models' identical answers one reward, as in a run),
    for ``arbitrage.commands.evaluate.replay``."""
    order = [teacher_name(a) for a in aliases(rows)]
    outcomes = []
    for row in rows:
        prompt = corpus_prompt(row)
        cands = []
        first: dict[str, float] = {}  # one judge reply per (prompt, answer), as in a run
        for alias, model in row["models"].items():
            # a model's further samples, where a corpus records them: {"samples": [{answer,
            # reward}, ...]} beside its first answer (none of the shared corpora does)
            for i, rec in enumerate([model, *model.get("samples", [])]):
                text = str(rec["answer"]).strip()
                reward = first.setdefault(text, float(rec["reward"]))
                gen = Generation(
                    prompt_id=prompt.id,
                    teacher=teacher_name(alias),
                    model=f"openai/{teacher_name(alias)}",
                    text=text,
                    finish_reason="stop",
                    usage=Usage(tokens(prompt.text) + 7, tokens(text)),  # as the server counts
                    sample=i,
                )
                cands.append(Candidate(gen, reward if text else None))
        outcomes.append(Outcome(prompt, tuple(cands), pick_winner(tuple(cands), order), "reward"))
    return outcomes
