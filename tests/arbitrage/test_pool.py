import asyncio
import json
from collections import Counter

import pytest

from arbitrage.errors import DataError
from arbitrage.personas import bundled_personas, load_personas
from arbitrage.pool import awrite, load_prompts, plan, template_text
from arbitrage.records import Persona
from arbitrage.tasks import TASKS


def test_bundled_personas_are_many_and_distinct():
    personas = bundled_personas()
    assert len(personas) >= 300
    assert len({p.text for p in personas}) == len(personas)
    assert len({p.id for p in personas}) == len(personas)


def test_taxonomy_has_at_least_eight_tasks_each_with_templates():
    assert len(TASKS) >= 8
    assert all(task.templates for task in TASKS.values())


def test_plan_is_stratified_and_reproducible():
    personas = bundled_personas()
    slots = plan(
        personas, ["en", "fr", "sw"], ["open_qa", "coding", "math", "rewriting"], 50, seed=3
    )
    cells = Counter((s.language, s.task) for s in slots)
    assert len(cells) == 12
    assert max(cells.values()) - min(cells.values()) <= 1
    assert len({s.persona.id for s in slots}) == 50  # no persona reused while others are left
    again = plan(
        personas, ["en", "fr", "sw"], ["open_qa", "coding", "math", "rewriting"], 50, seed=3
    )
    assert again == slots
    other = plan(
        personas, ["en", "fr", "sw"], ["open_qa", "coding", "math", "rewriting"], 50, seed=4
    )
    assert other != slots


def test_prompt_ids_are_stable_and_content_derived():
    personas = bundled_personas()[:20]
    a = asyncio.run(awrite(plan(personas, ["en", "sw"], ["math"], 6, seed=0)))
    b = asyncio.run(awrite(plan(personas, ["en", "sw"], ["math"], 6, seed=0)))
    assert [p.id for p in a] == [p.id for p in b]
    assert len({p.id for p in a}) == 6
    assert all(p.meta["writer"] == "template" for p in a)


def test_template_text_names_the_language_and_uses_the_persona():
    persona = Persona("A beekeeper in Oaxaca who sells honey at the market.")
    (slot,) = plan([persona], ["sw"], ["creative_writing"], 1)
    text = template_text(slot)
    assert "beekeeper in Oaxaca" in text
    assert text.endswith("Answer only in Swahili.")


def test_personahub_columns_from_a_local_dataset(tmp_path):
    from datasets import Dataset

    rows = {
        "persona": [
            "A ferry pilot in Bergen.",
            "A chess coach in Chennai.",
            "A ferry pilot in Bergen.",
        ]
    }
    Dataset.from_dict(rows).save_to_disk(str(tmp_path / "ph"))
    personas = load_personas(str(tmp_path / "ph"))
    assert [p.text for p in personas] == ["A ferry pilot in Bergen.", "A chess coach in Chennai."]


def test_jsonl_and_csv_with_named_column(tmp_path):
    jsonl = tmp_path / "p.jsonl"
    jsonl.write_text("\n".join(json.dumps({"who": f"Person {i}."}) for i in range(3)))
    assert len(load_personas(str(jsonl), column="who")) == 3
    csv = tmp_path / "p.csv"
    csv.write_text("who,age\nA potter.,40\nA pilot.,33\n")
    assert [p.text for p in load_personas(str(csv), column="who")] == ["A potter.", "A pilot."]
    with pytest.raises(DataError, match="no column 'persona'"):
        load_personas(str(csv))


def test_bad_persona_sources(tmp_path):
    with pytest.raises(DataError, match="not found"):
        load_personas(str(tmp_path / "missing.jsonl"))
    odd = tmp_path / "p.txt"
    odd.write_text("x")
    with pytest.raises(DataError, match="unsupported persona file type"):
        load_personas(str(odd))


def test_personahub_path_reports_hub_failure_offline():
    with pytest.raises(DataError, match="proj-persona/PersonaHub"):
        load_personas("personahub")


def test_load_prompts_file(tmp_path):
    path = tmp_path / "prompts.jsonl"
    path.write_text(json.dumps({"text": "Hola", "language": "es", "task": "open_qa"}) + "\n")
    (prompt,) = load_prompts(path)
    assert (prompt.text, prompt.language) == ("Hola", "es")
    path.write_text('{"text": "no language"}\n')
    with pytest.raises(DataError, match=r"prompts.jsonl:1"):
        load_prompts(path)
