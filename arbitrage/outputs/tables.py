"""HF datasets built from rows a batch at a time (the mixture's SFT rows, the preference
pairs): the Arrow table grows, never a Python list per column of every row."""

from __future__ import annotations

import itertools
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from datasets import Dataset, Features

#: Rows per batch when a dataset is built: its Arrow table grows, not a list per column.
BATCH_ROWS = 10_000


def to_dataset(rows: Iterable[dict[str, Any]], features: Features) -> Dataset:
    """``rows`` as a ``Dataset`` of ``features``, built ``BATCH_ROWS`` rows at a time."""
    from datasets import Dataset, concatenate_datasets

    parts = []
    it = iter(rows)
    while batch := list(itertools.islice(it, BATCH_ROWS)):
        columns = {name: [r[name] for r in batch] for name in features}
        parts.append(Dataset.from_dict(columns, features=features))
    if not parts:
        return Dataset.from_dict({name: [] for name in features}, features=features)
    return parts[0] if len(parts) == 1 else concatenate_datasets(parts)
