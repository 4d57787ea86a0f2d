"""Persona sources: the bundled set, PersonaHub, Nemotron-Personas, or any file or HF
dataset with a text column."""

from __future__ import annotations

import json
from collections.abc import Iterable
from importlib.resources import files
from pathlib import Path
from typing import Any

from arbitrage.errors import DataError
from arbitrage.records import Persona

PERSONAHUB = "proj-persona/PersonaHub"
#: NVIDIA's census-grounded synthetic personas (CC BY 4.0): the USA set; the other
#: locales are ``nvidia/Nemotron-Personas-<Locale>`` (Japan, India, France, ...).
NEMOTRON = "nvidia/Nemotron-Personas"
#: The columns every Nemotron-Personas locale has and the loader relies on.
NEMOTRON_COLUMNS = ("uuid", "persona")


def bundled_personas() -> list[Persona]:
    """Our own persona set shipped with the package (written for this project)."""
    text = files("arbitrage").joinpath("data/personas.jsonl").read_text(encoding="utf-8")
    rows = [json.loads(line) for line in text.splitlines() if line.strip()]
    return [Persona(text=r["persona"], id=r["id"], source="bundled") for r in rows]


def load_personas(source: str = "bundled", *, column: str = "persona") -> list[Persona]:
    """Load personas.

    Args:
        source: ``bundled``; ``personahub`` (``proj-persona/PersonaHub``, config
            ``persona``, needs the HF hub); ``nemotron``, ``nemotron:<locale>`` or
            ``nemotron:<local copy>`` (``load_nemotron``); ``hf:<dataset id>`` for any hub dataset;
            or a local path: ``.jsonl``, ``.json``, ``.csv``, ``.parquet`` or a
            ``Dataset.save_to_disk`` folder.
        column: The column holding the persona text (PersonaHub's is ``persona``).

    Raises:
        DataError: The source is missing, unreadable, lacks ``column`` or is empty.
    """
    if source == "bundled":
        return bundled_personas()
    if source == "nemotron" or source.startswith("nemotron:"):
        return load_nemotron(source.partition(":")[2], column=column)
    if source == "personahub":
        rows = _hub_rows(PERSONAHUB, "persona")
        origin = PERSONAHUB
    elif source.startswith("hf:"):
        rows = _hub_rows(source[3:], None)
        origin = source[3:]
    else:
        rows = _file_rows(Path(source))
        origin = source
    return _to_personas(rows, column=column, origin=origin)


def nemotron_id(locale: str) -> str:
    """The hub id of a Nemotron-Personas locale: ``""`` or ``usa`` → the USA set,
    ``japan`` → ``nvidia/Nemotron-Personas-Japan``."""
    if locale.lower() in ("", "usa", "us"):
        return NEMOTRON
    return f"{NEMOTRON}-{locale[:1].upper()}{locale[1:]}"


def load_nemotron(where: str = "", *, column: str = "persona") -> list[Persona]:
    """Personas from NVIDIA's Nemotron-Personas (CC BY 4.0; attribute NVIDIA).

    ``where`` is a locale (``""``/``usa``, ``japan``, ``india``, ``france`` ...), read
    from the HF hub, or the path of a local copy (a ``save_to_disk`` folder or a
    .parquet/.jsonl/.csv file with the dataset's columns). ``column`` picks the text:
    ``persona`` (the short summary) or another of its persona columns
    (``professional_persona``, ``travel_persona`` ...). A persona's id is its ``uuid``,
    so a prompt row points back to its dataset row. Texts are in the locale's language
    (the Japan set's are Japanese).
    """
    if where and (Path(where).exists() or Path(where).suffix):
        rows, origin = _file_rows(Path(where)), where
    else:
        origin = nemotron_id(where)
        rows = _hub_rows(origin, None)
    names = list(getattr(rows, "column_names", []) or [])
    missing = [c for c in NEMOTRON_COLUMNS if c not in names]
    if missing:
        raise DataError(
            f"{origin}: not a Nemotron-Personas dataset (no column {missing[0]!r}; "
            f"columns: {', '.join(names) or 'none'})"
        )
    personas = _to_personas(rows, column=column, origin=origin, ids=rows["uuid"])
    return personas


def _hub_rows(dataset_id: str, config: str | None) -> Any:
    from datasets import load_dataset

    try:
        return load_dataset(dataset_id, config, split="train")
    except Exception as exc:  # the hub raises many types: network, auth, missing
        raise DataError(
            f"could not load dataset {dataset_id!r} from the HF hub ({type(exc).__name__}); "
            "check the network or pass a local file"
        ) from None


def _file_rows(path: Path) -> Any:
    if not path.exists():
        raise DataError(f"persona source not found: {path}")
    if path.is_dir():
        from datasets import load_from_disk

        try:
            return load_from_disk(str(path))
        except Exception as exc:
            raise DataError(f"{path}: not a saved dataset ({exc})") from None
    builders = {".jsonl": "json", ".json": "json", ".csv": "csv", ".parquet": "parquet"}
    builder = builders.get(path.suffix.lower())
    if builder is None:
        raise DataError(f"{path}: unsupported persona file type (use {', '.join(builders)})")
    from datasets import load_dataset

    try:
        return load_dataset(builder, data_files=str(path), split="train")
    except Exception as exc:
        raise DataError(f"{path}: could not read ({type(exc).__name__})") from None


def _to_personas(
    rows: Any, *, column: str, origin: str, ids: Iterable[Any] | None = None
) -> list[Persona]:
    names = list(getattr(rows, "column_names", []) or [])
    if column not in names:
        raise DataError(
            f"{origin}: no column {column!r} (columns: {', '.join(names) or 'none'}); "
            "set pool.persona_column"
        )
    texts: list[Any] = list(rows[column])
    keys = [str(i) if i is not None else "" for i in ids] if ids is not None else None
    personas = []
    seen: set[str] = set()
    for n, value in enumerate(texts):
        text = str(value).strip() if value is not None else ""
        if text and text not in seen:
            seen.add(text)
            personas.append(Persona(text=text, id=keys[n] if keys else "", source=origin))
    if not personas:
        raise DataError(f"{origin}: column {column!r} holds no persona text")
    return personas
