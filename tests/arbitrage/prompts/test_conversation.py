"""Multi-turn conversations: a user simulator on the stub server, teachers answering in
context, per-turn resume, and the whole conversation in the mixture TRL loads."""

import json
import re
import sys
from pathlib import Path

import pytest
import yaml
from datasets import load_from_disk
from stub_server import stub_config
from trl.data_utils import is_conversational, maybe_apply_chat_template

from arbitrage.commands.cli import main
from arbitrage.config import parse_config
from arbitrage.errors import ConfigError
from arbitrage.prompts.conversation import clean_message, final_turns
from arbitrage.records import Outcome, Prompt
from arbitrage.rundir import config_hash

EXAMPLES = Path(__file__).resolve().parents[3] / "examples"


def _simulator(messages):
    """The stub user: asks about the assistant's last answer, naming its turn."""
    text = messages[-1]["content"]
    assert "Write the person's next message to the assistant" in text
    answers = text.count("\nAssistant: ")
    return f'User: "Follow-up {answers}: why is that so?"'


def _conversation_config(tmp_path, url, *, turns=3, route="every", **overrides):
    config = stub_config(str(tmp_path / "run"), url, batch_size=4, **overrides)
    config["pool"] = {**config["pool"], "n_prompts": 6}
    config["conversation"] = {
        "turns": turns,
        "route": route,
        "simulator": {
            "model": "openai/user",
            "api_base": url,
            "api_key_env": "STUB_KEY",
            "max_tokens": 60,
        },
    }
    return config


def _outcomes(run):
    return [json.loads(x) for x in (run / "outcomes.jsonl").read_text().splitlines()]


def _judge(messages):
    """alpha's answers win first turns, beta's later ones ("every" must switch teachers)."""
    text = messages[-1]["content"]
    answer = text[text.rfind("Answer from ") :]  # the answer judged comes last
    later = "(The conversation so far)" in text
    return "Score: 9" if answer.startswith("Answer from alpha") != later else "Score: 3"


def _handlers(stub):
    stub.set_handler("user", _simulator)
    stub.set_handler("judge", _judge)


@pytest.mark.filterwarnings("ignore:`gradient_checkpointing` is deprecated:FutureWarning")
def test_a_three_turn_run_writes_whole_conversations(tmp_path, stub_server, monkeypatch):
    monkeypatch.setenv("STUB_KEY", "sk-conversation-test")
    _handlers(stub_server)
    config = _conversation_config(tmp_path, stub_server.url)
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(config))
    assert main(["run", str(tmp_path / "c.yaml")]) == 0
    run = tmp_path / "run"

    outcomes = _outcomes(run)
    assert len(outcomes) == 18  # 6 conversations × 3 turns, every turn with a winner
    turns = [o["prompt"]["meta"].get("turn", 1) for o in outcomes]
    assert turns == [1] * 6 + [2] * 6 + [3] * 6  # a turn starts when the one before ends
    winners = [o["winner"] for o in outcomes]
    assert winners == ["alpha"] * 6 + ["beta"] * 12  # route: every arbitrates each turn

    # teachers get the whole conversation; the judge scores the answer in context
    third = [r for r in stub_server.requests if r["model"] == "alpha" and len(r["messages"]) == 5]
    assert len(third) == 6
    roles = [m["role"] for m in third[0]["messages"]]
    assert roles == ["user", "assistant", "user", "assistant", "user"]
    assert third[0]["messages"][-1]["content"] == "Follow-up 2: why is that so?"
    assert third[0]["messages"][1]["content"].startswith("Answer from alpha")  # turn 1's winner
    assert third[0]["messages"][3]["content"].startswith("Answer from beta")  # turn 2's
    judged = [r["messages"][-1]["content"] for r in stub_server.requests if r["model"] == "judge"]
    assert any("The conversation so far" in j and "Follow-up 2" in j for j in judged)
    simulated = [r for r in stub_server.requests if r["model"] == "user"]
    assert len(simulated) == 12 and all(r["max_tokens"] == 60 for r in simulated)
    persona = outcomes[0]["prompt"]["persona"]
    assert any(persona in r["messages"][0]["content"] for r in simulated)

    ds = load_from_disk(str(run / "dataset"))
    assert len(ds) == 6  # one row per conversation
    for row in ds:
        assert [m["role"] for m in row["messages"]] == ["user", "assistant"] * 3
        assert is_conversational(row)
    assert ds[0]["messages"][4]["content"] == "Follow-up 2: why is that so?"
    report = json.loads((run / "report.json").read_text())
    assert report["conversation"]["follow_ups_written"] == 12
    assert len((run / "turns.jsonl").read_text().splitlines()) == 12

    # preference pairs: a later turn's prompt is the shared history
    pairs = load_from_disk(str(run / "preference"))
    later = [p for p in pairs if len(p["prompt"]) == 5]
    assert len(later) == 6 and all(p["chosen_teacher"] == "beta" for p in later)
    assert [m["role"] for m in later[0]["prompt"]] == ["user", "assistant"] * 2 + ["user"]
    assert is_conversational(later[0])
    templated = maybe_apply_chat_template(later[0], _tokenizer())
    assert templated["prompt"].count("<|im_start|>user") == 3

    # TRL's SFT data path takes the dataset as written
    sft_ready = _sft_prepared(tmp_path, ds)
    assert len(sft_ready) == 6
    text = _tokenizer().decode(sft_ready[0]["input_ids"])
    assert text.count("<|im_start|>assistant") == 3 and "Follow-up 2" in text


def test_same_config_same_conversations_whatever_the_latencies(tmp_path, stub_server, monkeypatch):
    import random

    from stub_server import Reply, default_answer

    monkeypatch.setenv("STUB_KEY", "sk-conversation-test")
    mixtures = []
    for seed in (1, 2):
        rng = random.Random(seed)

        def delayed(fn, rng=rng):
            return lambda m: Reply(fn(m), delay_s=rng.uniform(0, 0.05))

        stub_server.reset()
        stub_server.set_handler("judge", _judge)
        stub_server.set_handler("user", delayed(_simulator))
        for name in ("alpha", "beta"):
            stub_server.set_handler(name, delayed(lambda m, name=name: default_answer(name, m)))
        config = _conversation_config(
            tmp_path / str(seed),
            stub_server.url,
            windows=2,
            router={"name": "learned", "params": {"warmup": 2, "explore": 0.3}},
        )
        (tmp_path / f"{seed}.yaml").write_text(yaml.safe_dump(config))
        assert main(["run", str(tmp_path / f"{seed}.yaml")]) == 0
        mixtures.append((tmp_path / str(seed) / "run" / "mixture.jsonl").read_text())
        routed = [o["routed_by"] for o in _outcomes(tmp_path / str(seed) / "run")]
        assert len(routed) == 18 and "exploit" in " ".join(routed)
    assert mixtures[0] == mixtures[1]


def test_route_first_keeps_the_first_turns_teacher(tmp_path, stub_server, monkeypatch):
    monkeypatch.setenv("STUB_KEY", "sk-conversation-test")
    _handlers(stub_server)
    config = _conversation_config(tmp_path, stub_server.url, turns=2, route="first")
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(config))
    assert main(["run", str(tmp_path / "c.yaml")]) == 0
    outcomes = _outcomes(tmp_path / "run")
    later = [o for o in outcomes if o["prompt"]["meta"].get("turn") == 2]
    assert len(later) == 6
    for o in later:  # only alpha (the first winner) is asked, though beta would win
        assert [c["generation"]["teacher"] for c in o["candidates"]] == ["alpha"]
        assert o["winner"] == "alpha" and o["routed_by"] == "pinned"
    asked_beta = [r for r in stub_server.requests if r["model"] == "beta"]
    assert all(len(r["messages"]) == 1 for r in asked_beta)


def test_resume_mid_conversation_asks_nothing_twice(tmp_path, stub_server, monkeypatch):
    monkeypatch.setenv("STUB_KEY", "sk-conversation-test")
    _handlers(stub_server)
    config = _conversation_config(tmp_path, stub_server.url)
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(config))
    assert main(["run", str(path)]) == 0
    straight = (tmp_path / "run" / "mixture.jsonl").read_text()
    run = tmp_path / "run"
    # as if killed in turn 2: its second window and all of turn 3 never committed, and
    # turns.jsonl holds one follow-up whose answer never came
    lines = (run / "outcomes.jsonl").read_text().splitlines(keepends=True)
    (run / "outcomes.jsonl").write_text("".join(lines[:10]) + lines[10][:40])  # a torn row
    turns = (run / "turns.jsonl").read_text().splitlines(keepends=True)
    (run / "turns.jsonl").write_text("".join(turns[:5]))
    for name in ("mixture.jsonl", "cache.sqlite"):
        (run / name).unlink()
    stub_server.reset()
    _handlers(stub_server)
    assert main(["run", str(path)]) == 0
    outcomes = _outcomes(run)
    assert len(outcomes) == 18 and len({o["prompt"]["id"] for o in outcomes}) == 18
    simulated = [r for r in stub_server.requests if r["model"] == "user"]
    assert len(simulated) == 1 + 6  # turn 2's unwritten follow-up, then turn 3's
    first_turn = [r for r in stub_server.requests if len(r["messages"]) == 1]
    assert not [r for r in first_turn if r["model"] in ("alpha", "beta")]  # turn 1 was done
    assert (run / "mixture.jsonl").read_text() == straight


def test_single_turn_configs_keep_their_hash():
    base = stub_config("out", "http://127.0.0.1:1/v1")
    one = {**base, "conversation": {"turns": 1}}
    assert config_hash(parse_config(base)) == config_hash(parse_config(one))
    sim = {"model": "openai/user", "requests_per_minute": 10}
    two = {**base, "conversation": {"turns": 2, "simulator": sim}}
    faster = {**base, "conversation": {"turns": 2, "simulator": {**sim, "requests_per_minute": 99}}}
    assert config_hash(parse_config(two)) != config_hash(parse_config(base))
    assert config_hash(parse_config(two)) == config_hash(parse_config(faster))


def test_estimate_counts_every_turn_and_the_simulator():
    from arbitrage.commands.estimate import estimate

    base = stub_config("out", "http://127.0.0.1:1/v1")  # 24 prompts, reward routing
    three = {**base, "conversation": {"turns": 3, "simulator": "openai/gpt-4o-mini"}}
    one, many = estimate(parse_config(base)), estimate(parse_config(three))
    calls = {r["who"]: r["calls"] for r in many}
    assert calls == {"alpha": 72, "beta": 72, "simulator": 48, "judge": 144}
    assert many[0]["input_tokens"] / 72 > one[0]["input_tokens"] / 24  # history grows
    assert next(r for r in many if r["who"] == "simulator")["usd"] > 0


def test_conversation_config_errors_name_the_key():
    base = stub_config("out", "http://127.0.0.1:1/v1")
    cases = {
        "bad value for 'conversation': turns > 1 needs a simulator": {"turns": 2},
        "bad value for 'conversation.route'": {"turns": 2, "simulator": "x/y", "route": "all"},
        "bad value for 'conversation.simulator.api_key_env'": {
            "turns": 2,
            "simulator": {"model": "openai/x", "api_key_env": "sk-abcdefghijklmnopqrstuvwx"},
        },
        "bad value for 'conversation.turns'": {"turns": 0},
        "samples must be 1": {"turns": 2, "simulator": {"model": "openai/x", "samples": 2}},
        "unknown config key 'conversation.turn' (did you mean 'turns'?)": {"turn": 2},
        "unknown config key 'conversation.simulator.max_token' (did you mean 'max_tokens'?)": {
            "turns": 2,
            "simulator": {"model": "openai/x", "max_token": 5},
        },
    }
    for message, section in cases.items():
        with pytest.raises(ConfigError, match=re.escape(message)):
            parse_config({**base, "conversation": section})
    short = parse_config({**base, "conversation": {"turns": 2, "simulator": "openai/gpt-4o"}})
    assert short.conversation.simulator.model == "openai/gpt-4o"
    assert short.conversation.simulator.name == "simulator"


def test_cli_rejects_a_bad_conversation_with_one_line(tmp_path, capsys):
    config = stub_config(str(tmp_path / "run"), "http://127.0.0.1:1/v1")
    config["conversation"] = {"turns": 3}
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(config))
    assert main(["run", str(tmp_path / "c.yaml")]) == 2
    err = capsys.readouterr().err.strip()
    assert "turns > 1 needs a simulator" in err and "Traceback" not in err


@pytest.mark.parametrize(
    ("reply", "message"),
    [
        ('User: "Can you show an example?"', "Can you show an example?"),
        ("**Next message:** And in French?", "And in French?"),
        ("Why?\n\nAssistant: Because it is.", "Why?"),
        ("  « Et pourquoi ? »  ", "Et pourquoi ?"),
        ('""', ""),
    ],
)
def test_simulator_replies_are_cleaned_to_the_message(reply, message):
    assert clean_message(reply) == message


def test_final_turns_leave_single_turn_outcomes_alone():
    outcomes = [Outcome(Prompt(f"Question {i}", "en", "open_qa"), ()) for i in range(3)]
    assert final_turns(outcomes) == outcomes


def _tokenizer():
    sys.path.insert(0, str(EXAMPLES))
    from train_student import tiny_tokenizer

    return tiny_tokenizer()


def _sft_prepared(tmp_path, ds):
    from trl import SFTConfig, SFTTrainer

    sys.path.insert(0, str(EXAMPLES))
    from train_student import load_student

    model, tokenizer = load_student("tiny", 0)
    args = SFTConfig(output_dir=str(tmp_path / "sft"), report_to="none", use_cpu=True, max_steps=1)
    trainer = SFTTrainer(model=model, args=args, train_dataset=ds, processing_class=tokenizer)
    return trainer.train_dataset


@pytest.mark.slow
def test_two_turns_on_a_real_local_model(tmp_path, smol_cache, monkeypatch):
    """SmolLM2-135M as the teacher and the user simulator: 2 prompts, 2 turns."""
    monkeypatch.setenv("ARBITRAGE_CACHE_DIR", str(smol_cache))
    smol = "local/smollm2-135m-instruct"
    config = {
        "out": str(tmp_path / "run"),
        "batch_size": 2,
        "pool": {"n_prompts": 2, "languages": ["en"], "tasks": ["open_qa"]},
        "teachers": [{"name": "smol", "model": smol, "temperature": 0.0, "max_tokens": 64}],
        "reward": {"kind": "local"},
        "router": {"name": "reward"},
        "conversation": {"turns": 2, "simulator": {"model": smol, "max_tokens": 48}},
    }
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(config))
    assert main(["run", str(tmp_path / "c.yaml")]) == 0
    run = tmp_path / "run"
    outcomes = _outcomes(run)
    first = [o for o in outcomes if "turn" not in o["prompt"]["meta"]]
    second = [o for o in outcomes if o["prompt"]["meta"].get("turn") == 2]
    assert len(first) == 2
    report = json.loads((run / "report.json").read_text())["conversation"]
    assert len(second) == report["follow_ups_written"]
    assert len(second) + sum(report["ended_early"].values()) == 2
    for o in second:
        history = o["prompt"]["meta"]["history"]
        assert [m["role"] for m in history] == ["user", "assistant"]
        assert o["prompt"]["text"].strip()  # the simulator wrote the user's turn
        for cand in o["candidates"]:
            assert cand["generation"]["usage"]["prompt_tokens"] > 0
    ds = load_from_disk(str(run / "dataset"))
    assert len(ds) >= 1 and all(is_conversational(row) for row in ds)
    deepest = max(len(row["messages"]) for row in ds)
    assert deepest == 4 or not any(o["winner"] for o in second)


def test_a_follow_up_that_repeats_the_conversation_is_an_echo():
    from arbitrage.prompts.conversation import echoes
    from arbitrage.records import Candidate, Generation

    answer = "The most useful thing you could learn this year is how aquifers recharge."
    gen = Generation(prompt_id="p", teacher="a", model="m", text=answer, finish_reason="stop")
    parent = Outcome(Prompt("About me: a geologist.", "en", "open_qa"), (Candidate(gen, 0.5),), "a")
    assert echoes("The most useful thing you could learn this year is how", parent)
    assert not echoes("And how fast do they recharge in the dry season?", parent)
    assert not echoes("Why?", parent)  # too short to tell
