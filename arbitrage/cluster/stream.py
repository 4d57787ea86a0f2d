"""The pool, streamed: ``prompts.jsonl`` read by Ray Data a batch at a time, in order."""

from __future__ import annotations

import inspect
import json
import logging
from collections.abc import Container, Generator, Iterator
from contextlib import contextmanager
from pathlib import Path

from arbitrage.cluster.session import require_ray
from arbitrage.records import Prompt


@contextmanager
def quiet_ray_data() -> Iterator[None]:
    """Ray Data logs every execution at INFO on stderr, over our progress bar."""
    require_ray()  # importing ray.data sets up its logger: after that, or it undoes ours
    logger = logging.getLogger("ray.data")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)


def stream_prompts(path: str | Path, batch_size: int) -> Generator[list[Prompt], None, None]:
    """The prompts of a ``prompts.jsonl``, in order, read by Ray Data a batch at a time
    (the file is never held in memory at once)."""
    ray = require_ray()
    # Reading is light: it must never wait behind actors that hold every CPU.
    cpus = (
        {"num_cpus": 0}
        if "num_cpus" in inspect.signature(ray.data.read_text).parameters
        else {"ray_remote_args": {"num_cpus": 0}}
    )
    ds = ray.data.read_text(str(Path(path).resolve()), **cpus)
    context = getattr(ds, "context", None) or ray.data.DataContext.get_current()
    context.execution_options.preserve_order = True
    context.enable_progress_bars = False
    for batch in ds.iter_batches(batch_size=batch_size, batch_format="pyarrow"):
        yield [Prompt.from_dict(json.loads(line)) for line in batch.column("text").to_pylist()]


def todo_batches(
    blocks: Iterator[list[Prompt]], done: Container[str], batch_size: int, seen: list[str]
) -> Generator[list[Prompt], None, None]:
    """The prompts not yet done, in ``batch_size`` batches: the batches a single-process run
    of the same pool forms. Every prompt id read is appended to ``seen`` (pool order)."""
    todo: list[Prompt] = []
    for block in blocks:
        for prompt in block:
            seen.append(prompt.id)
            if prompt.id in done:
                continue
            todo.append(prompt)
            if len(todo) == batch_size:
                yield todo
                todo = []
    if todo:
        yield todo


def count_lines(path: Path) -> int:
    with path.open("rb") as fh:
        return sum(1 for line in fh if line.strip())
