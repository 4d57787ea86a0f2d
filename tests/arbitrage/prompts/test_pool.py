import asyncio
import json
from collections import Counter

import pytest

from arbitrage.commands.estimate import estimate
from arbitrage.config import parse_config
from arbitrage.errors import DataError
from arbitrage.factories import abuild_pool
from arbitrage.prompts.personas import bundled_personas, load_personas
from arbitrage.prompts.pool import awrite, describe, load_prompts, plan, template_text
from arbitrage.prompts.tasks import TASKS
from arbitrage.records import Persona, Prompt

TEACHERS = [{"name": "a", "model": "openai/a"}]


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


def test_template_text_is_in_language_and_english_quotes_the_persona():
    persona = Persona("A beekeeper in Oaxaca who sells honey at the market.")
    (slot,) = plan([persona], ["sw"], ["creative_writing"], 1)
    text = template_text(slot)
    assert "beekeeper" not in text  # the English persona would make the turn mixed
    assert text.endswith("Jibu kwa Kiswahili pekee.")
    (slot,) = plan([persona], ["en"], ["creative_writing"], 1)
    assert "beekeeper in Oaxaca" in template_text(slot)


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


def write_prompts(path, n, tasks=("open_qa", "math")):
    rows = [
        {"text": f"Question {i}?", "language": "en", "task": tasks[i % len(tasks)]}
        for i in range(n)
    ]
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


def test_prompts_file_is_used_whole_unless_n_prompts_cuts_it(tmp_path):
    path = write_prompts(tmp_path / "prompts.jsonl", 75)  # more than a synthesised pool's 60
    whole = parse_config({"teachers": TEACHERS, "pool": {"prompts": str(path)}})
    prompts, origin = asyncio.run(abuild_pool(whole, []))
    assert len(prompts) == 75 and origin == f"from {path}"
    cut = parse_config({"teachers": TEACHERS, "pool": {"prompts": str(path), "n_prompts": 60}})
    prompts, origin = asyncio.run(abuild_pool(cut, []))
    assert [p.text for p in prompts] == [f"Question {i}?" for i in range(60)]
    assert origin == f"the first 60 of 75 in {path} (n_prompts: 60)"
    more = parse_config({"teachers": TEACHERS, "pool": {"prompts": str(path), "n_prompts": 90}})
    prompts, origin = asyncio.run(abuild_pool(more, []))
    assert len(prompts) == 75 and origin == f"all of {path} (n_prompts: 90)"


def test_estimate_counts_the_prompts_a_file_gives(tmp_path):
    path = write_prompts(tmp_path / "prompts.jsonl", 75)
    # priced here, so litellm's price map is not needed
    teachers = [{**TEACHERS[0], "input_cost_per_mtok": 1.0, "output_cost_per_mtok": 2.0}]
    for pool, calls in (({}, 75), ({"n_prompts": 10}, 10), ({"n_prompts": 100}, 75)):
        config = parse_config(
            {
                "teachers": teachers,
                "pool": {"prompts": str(path), **pool},
                "router": {"name": "reward"},
            }
        )
        assert [row["calls"] for row in estimate(config)] == [calls]


def test_describe_says_what_the_pool_holds():
    tasks = list(TASKS)[:8]
    english = [Prompt(f"Q{i}", "en", task) for i, task in enumerate(tasks)]
    assert describe(english) == "8 prompts × 1 language (en) × 8 tasks"
    mixed = [Prompt("Q", "en", "math"), Prompt("Q", "fr", "math"), Prompt("R", "fr", "math")]
    assert describe(mixed) == "3 prompts × 2 languages (fr, en) × 1 task (math)"
