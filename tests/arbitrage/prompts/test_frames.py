"""In-language prompts: the template writer writes the whole user turn in the language."""

import asyncio
import json
from importlib.resources import files

import pytest
import yaml
from stub_server import Reply, stub_config

from arbitrage.commands.cli import main
from arbitrage.config import parse_config
from arbitrage.errors import ConfigError
from arbitrage.factories import abuild_pool
from arbitrage.outputs.filters import near_duplicates
from arbitrage.prompts.frames import bundled_languages, frame_text
from arbitrage.prompts.personas import bundled_personas
from arbitrage.prompts.pool import awrite, plan
from arbitrage.prompts.tasks import TASKS
from reward.fidelity import language_fidelity

#: Non-English frames must be read as their language by the detector the mixture uses.
MIN_FIDELITY = 0.9


def test_at_least_twelve_languages_with_non_latin_scripts():
    langs = bundled_languages()
    assert len(langs) >= 12
    assert {"en", "fr", "sw", "hi", "ar", "zh", "ja", "ru"} <= set(langs)


def test_every_frame_of_every_bundled_language_is_detected_as_that_language():
    personas = bundled_personas()
    bad = []
    for lang in bundled_languages():
        slots = plan(personas, [lang], list(TASKS), 8 * len(TASKS), seed=7)
        for prompt in asyncio.run(awrite(slots)):
            score = language_fidelity(prompt.text, lang)
            if score < MIN_FIDELITY:
                bad.append((lang, prompt.task, round(score, 2), prompt.text[:80]))
    assert not bad, bad


def test_every_frame_and_topic_is_well_formed():
    frames = yaml.safe_load(files("arbitrage").joinpath("data/frames.yaml").read_text("utf-8"))
    for lang, entry in frames.items():
        for task in TASKS:
            assert len(entry[task]) == len(TASKS[task].templates), (lang, task)
            for i in range(len(entry[task])):
                text = frame_text(lang, task, i)
                assert "{" not in text and text.endswith(entry["reply"]), (lang, task, i)


def test_prompts_of_a_cell_are_distinct_until_openers_run_out():
    personas = bundled_personas()
    for lang in ("fr", "ja"):
        slots = plan(personas, [lang], ["coding"], 64, seed=3)
        texts = [t.text for t in asyncio.run(awrite(slots))]
        assert len(set(texts)) == 64
        assert not near_duplicates(texts[:8], [lang] * 8, threshold=0.8, min_chars=0)
    other = plan(personas, ["fr"], ["coding"], 8, seed=4)
    assert [s.template for s in other] != [
        s.template for s in plan(personas, ["fr"], ["coding"], 8, seed=3)
    ]


def test_the_embedded_default_pool_is_in_language_and_has_no_near_duplicates():
    default = yaml.safe_load(files("arbitrage").joinpath("data/default.yaml").read_text("utf-8"))
    config = parse_config(default)
    prompts, _ = asyncio.run(abuild_pool(config, []))
    assert {p.language for p in prompts} == set(config.pool.languages)
    for prompt in prompts:
        assert language_fidelity(prompt.text, prompt.language) >= MIN_FIDELITY, prompt.text
    if "en" in config.pool.languages:  # English prompts quote the persona
        assert any(p.persona in p.text for p in prompts if p.language == "en")
    # the mixture's near-duplicate filter would drop prompts that differ by a word
    dupes = near_duplicates(
        [p.text for p in prompts], [p.language for p in prompts], threshold=0.8, min_chars=0
    )
    assert not dupes


def test_template_writer_without_frames_is_one_error_naming_the_bundled_languages():
    with pytest.raises(ConfigError, match=r"no in-language frames for xh \(bundled: en, ar"):
        parse_config({"teachers": [{"name": "a", "model": "openai/a"}],
                      "pool": {"languages": ["en", "xh"]}})  # fmt: skip
    # a writer model writes any language, and a prompts file brings its own
    parse_config({"teachers": [{"name": "a", "model": "openai/a"}],
                  "pool": {"languages": ["en", "xh"], "writer": "a"}})  # fmt: skip


def test_cli_says_which_languages_are_bundled(tmp_path, capsys):
    config = tmp_path / "c.yaml"
    config.write_text(yaml.safe_dump({
        "out": str(tmp_path / "run"),
        "teachers": [{"name": "a", "model": "openai/a"}],
        "pool": {"languages": ["yo"]},
    }))  # fmt: skip
    assert main(["run", str(config)]) == 2
    err = capsys.readouterr().err
    assert "no in-language frames for yo" in err and "Traceback" not in err


def test_a_language_without_frames_is_translated_by_the_writer(tmp_path, stub_server, monkeypatch):
    monkeypatch.setenv("STUB_KEY", "sk-frames-0123456789")

    def writer(messages):
        content = messages[-1]["content"]
        if content.startswith("Translate this request into Xhosa"):
            return "Ndicela uchaze umbono omnye obalulekileyo."
        if "Xhosa" in content or "Zulu" in content:  # the writer cannot write these itself
            return Reply("busy", status=400)
        return "Explain tides to a fisherman."

    def judge(messages):
        return "Score: 7"

    stub_server.set_handler("alpha", writer)
    stub_server.set_handler("beta", lambda m: "BETA answers.")
    stub_server.set_handler("judge", judge)
    config = stub_config(
        str(tmp_path / "run"),
        stub_server.url,
        pool={"n_prompts": 6, "languages": ["en", "fr", "xh"], "tasks": ["open_qa"],
              "writer": "alpha"},
    )  # fmt: skip
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(config))
    assert main(["run", str(path)]) == 0
    rows = [json.loads(x) for x in (tmp_path / "run" / "prompts.jsonl").read_text().splitlines()]
    by_lang = {r["language"]: r for r in rows}
    assert by_lang["xh"]["meta"]["writer"] == "template-translated"
    assert by_lang["xh"]["text"] == "Ndicela uchaze umbono omnye obalulekileyo."
    assert by_lang["fr"]["meta"]["writer"] == "alpha"
