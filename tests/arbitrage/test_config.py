import pytest

from arbitrage.commands.cli import main
from arbitrage.config import default_config, load_config, parse_config
from arbitrage.errors import ConfigError
from arbitrage.rundir import config_hash

T = [{"name": "a", "model": "openai/m"}]


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (
            {"teachers": T, "pool": {"langauges": ["en"]}},
            "unknown config key 'pool.langauges' (did you mean 'languages'?)",
        ),
        (
            {"teachers": [{"name": "a", "model": "m", "temprature": 1}]},
            "'teachers[0].temprature' (did you mean 'temperature'?)",
        ),
        ({"teachers": T, "rewrd": {}}, "unknown config key 'rewrd' (did you mean 'reward'?)"),
        ({"teachers": T, "pool": {"n_prompts": 0}}, "'pool.n_prompts'"),
        (
            {"teachers": T, "pool": {"tasks": ["codng"]}},
            "unknown task 'codng' (did you mean 'coding'?)",
        ),
        ({"teachers": T, "pool": {"languages": ["English"]}}, "not a language code: 'English'"),
        ({"teachers": T, "pool": {"languages": ["en", "en"]}}, "listed twice"),
        ({"teachers": []}, "'teachers'"),
        ({}, "missing config key 'teachers'"),
        ({"teachers": T + T}, "teacher name 'a' is used twice"),
        (
            {"teachers": [{"name": "a", "model": "m", "temperature": 5}]},
            "'teachers[0].temperature'",
        ),
        (
            {"teachers": [{"name": "a", "model": "m", "api_key_env": "sk-123-abc"}]},
            "NAME of an environment variable",
        ),
        ({"teachers": T, "pool": {"writer": "nobody"}}, "pool.writer 'nobody'"),
        ({"teachers": T, "batch_size": "many"}, "'batch_size'"),
        ([1, 2], "must be a mapping"),
    ],
)
def test_bad_config_is_one_clear_error(data, message):
    with pytest.raises(ConfigError) as info:
        parse_config(data)
    assert message in str(info.value)
    assert "\n" not in str(info.value)


def test_default_config_is_offline_and_multilingual():
    config = default_config()
    assert len(config.teachers) >= 2
    assert all(t.model.startswith("local/") for t in config.teachers)
    assert len(config.pool.languages) >= 3 and "en" in config.pool.languages
    assert len(config.pool.tasks) >= 3
    assert config.reward.kind == "local"
    assert config.router.name == "learned"


def test_yaml_file_errors(tmp_path):
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("teachers: [\n  {name: a")
    with pytest.raises(ConfigError, match="not valid YAML at line"):
        load_config(bad)


def test_cli_bad_config_exits_2_with_one_line(tmp_path, capsys):
    path = tmp_path / "c.yaml"
    path.write_text("teachers: [{name: a, model: openai/x}]\nrouter: {name: lerned}\n")
    code = main(["run", str(path), "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert err.count("\n") == 0
    assert "unknown router 'lerned' (did you mean 'learned'?)" in err


def test_cli_unknown_router_param(tmp_path, capsys):
    path = tmp_path / "c.yaml"
    path.write_text(
        "teachers: [{name: a, model: openai/x}]\nrouter: {name: learned, params: {warmpu: 3}}\n"
    )
    assert main(["run", str(path), "--out", str(tmp_path / "out")]) == 2
    assert (
        "unknown param 'warmpu' for router 'learned' (did you mean 'warmup'?)"
        in capsys.readouterr().err
    )


def test_n_prompts_defaults_to_60_synthesised_and_to_the_whole_prompts_file():
    synthesised = parse_config({"teachers": T})
    assert synthesised.pool.n_prompts == 60
    explicit = parse_config({"teachers": T, "pool": {"n_prompts": 60}})
    assert config_hash(synthesised) == config_hash(explicit)  # runs of older versions resume
    ready = parse_config({"teachers": T, "pool": {"prompts": "prompts.jsonl"}})
    assert ready.pool.n_prompts is None
    again = parse_config(ready.public_dict())  # config.yaml, read back by a resumed run
    assert again.pool.n_prompts is None and config_hash(again) == config_hash(ready)
    cut = parse_config({"teachers": T, "pool": {"prompts": "prompts.jsonl", "n_prompts": 60}})
    assert config_hash(cut) != config_hash(ready)


def test_a_prompts_file_brings_its_own_tasks_for_the_quotas():
    mixture = {"per_task": {"reasoning": 5}}
    config = parse_config({"teachers": T, "pool": {"prompts": "prompts.jsonl"}, "mixture": mixture})
    assert config.mixture.per_task == {"reasoning": 5}
    with pytest.raises(ConfigError, match=r"'reasoning', which is not in pool\.tasks"):
        parse_config({"teachers": T, "mixture": mixture})


def test_auto_windows_fill_the_concurrency_through_every_escalation_round():
    api = [{"name": n, "model": f"openai/{n}", "max_concurrency": 64} for n in ("a", "b", "c")]
    config = parse_config({"teachers": api})  # batch_size 16
    assert config.windows_in_flight() == 24  # 2 × 192 / 16
    assert config.windows_in_flight(escalates=True) == 72  # a round per teacher
    wide = parse_config({"teachers": [dict(t, max_concurrency=512) for t in api]})
    assert wide.windows_in_flight(escalates=True) == 256
    assert parse_config({"teachers": api, "windows": 5}).windows_in_flight(escalates=True) == 5
    local = [{"name": "s", "model": "local/smollm2-135m"}]
    assert parse_config({"teachers": local}).windows_in_flight(escalates=True) == 1
