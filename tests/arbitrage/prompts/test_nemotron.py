"""The Nemotron-Personas loader, on a local dataset with the real dataset's columns."""

import asyncio

import pytest

from arbitrage.errors import DataError
from arbitrage.prompts.personas import load_personas, nemotron_id
from arbitrage.prompts.pool import awrite, plan

#: The columns of nvidia/Nemotron-Personas (the USA set); the other locales share them
#: but for the place columns.
COLUMNS = (
    "uuid", "persona", "professional_persona", "sports_persona", "arts_persona",
    "travel_persona", "culinary_persona", "skills_and_expertise", "hobbies_and_interests",
    "career_goals_and_ambitions", "sex", "age", "marital_status", "education_level",
    "bachelors_field", "occupation", "city", "state", "zipcode", "country",
)  # fmt: skip


def nemotron_rows(n: int) -> dict[str, list]:
    rows: dict[str, list] = {c: [f"{c} {i}" for i in range(n)] for c in COLUMNS}
    rows["uuid"] = [f"00000000-0000-0000-0000-{i:012d}" for i in range(n)]
    rows["age"] = [30 + i for i in range(n)]
    rows["persona"] = [
        f"A bus mechanic in Tulsa, number {i}, who restores radios." for i in range(n)
    ]
    rows["persona"][2] = ""  # an empty persona is skipped, not a prompt about nothing
    rows["professional_persona"] = [f"Keeps a fleet of {i} city buses running." for i in range(n)]
    return rows


@pytest.fixture
def local_copy(tmp_path):
    from datasets import Dataset

    Dataset.from_dict(nemotron_rows(5)).save_to_disk(str(tmp_path / "nemotron"))
    Dataset.from_dict(nemotron_rows(5)).to_parquet(str(tmp_path / "nemotron.parquet"))
    return tmp_path


@pytest.mark.parametrize("name", ["nemotron", "nemotron.parquet"])
def test_nemotron_personas_keep_their_uuid_and_skip_empty_rows(local_copy, name):
    personas = load_personas(f"nemotron:{local_copy / name}")
    assert len(personas) == 4
    assert personas[0].id == "00000000-0000-0000-0000-000000000000"
    assert personas[0].text.startswith("A bus mechanic in Tulsa, number 0")
    assert personas[0].source == str(local_copy / name)
    prompts = asyncio.run(awrite(plan(personas, ["en"], ["open_qa"], 4)))
    assert {p.meta["persona_id"] for p in prompts} == {p.id for p in personas}


def test_another_persona_column_is_chosen_with_persona_column(local_copy):
    personas = load_personas(f"nemotron:{local_copy / 'nemotron'}", column="professional_persona")
    assert personas[1].text == "Keeps a fleet of 1 city buses running."


def test_a_dataset_without_nemotron_columns_is_one_error(tmp_path):
    from datasets import Dataset

    Dataset.from_dict({"persona": ["A ferry pilot."]}).save_to_disk(str(tmp_path / "ph"))
    with pytest.raises(DataError, match="not a Nemotron-Personas dataset \\(no column 'uuid'"):
        load_personas(f"nemotron:{tmp_path / 'ph'}")


def test_locales_name_the_hub_datasets_and_offline_is_one_error():
    assert nemotron_id("") == "nvidia/Nemotron-Personas"
    assert nemotron_id("japan") == "nvidia/Nemotron-Personas-Japan"
    assert nemotron_id("USA") == "nvidia/Nemotron-Personas"
    with pytest.raises(DataError, match="could not load dataset 'nvidia/Nemotron-Personas-India'"):
        load_personas("nemotron:india")  # HF_HUB_OFFLINE in tests
