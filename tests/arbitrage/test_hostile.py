"""Hostile input and a hostile machine (issue 13, items 6, 10-13), through the CLI.

Each ends as one ``arbitrage: error: ...`` line and a non-zero exit, never a
traceback; nothing already paid for or written is lost; a key never reaches the
terminal, even inside an error message.
"""

import asyncio
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from stub_server import Reply, stub_config, write_stub_run

from arbitrage import errors
from arbitrage.calls.cache import CallCache
from arbitrage.calls.teachers import Teacher
from arbitrage.commands.cli import main
from arbitrage.config import parse_config
from arbitrage.errors import ConfigError, DataError
from arbitrage.records import Generation, Outcome, Prompt
from arbitrage.rundir import RunDir
from reward.judge import JudgeReward

SECRET = "sk-hostile-secret-0123456789"
PROMPT = Prompt(text="Name a river in France.", language="en", task="open_qa")


@pytest.fixture
def stub(stub_server, monkeypatch):
    monkeypatch.setenv("STUB_KEY", SECRET)
    stub_server.set_handler("judge", lambda m: "Fine.\nScore: 7")
    return stub_server


def one_error(capsys, argv: list[str]) -> str:
    """Run the CLI; it must fail with exactly one error line and no traceback."""
    code = main(argv)
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith("arbitrage: error: ")]
    assert code == 2, err
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


def requests_for(stub, model: str) -> int:
    return sum(1 for r in stub.requests if r["model"] == model)


# --- item 6: tracebacks instead of one line ------------------------------------------


def test_a_config_file_that_is_not_utf8_is_one_line(tmp_path, capsys):
    path = tmp_path / "latin1.yaml"
    path.write_bytes("teachers:\n  - {name: caf\xe9, model: openai/x}\n".encode("latin-1"))
    line = one_error(capsys, ["run", str(path)])
    assert line == f"arbitrage: error: {path}:2: not UTF-8 text; save the file as UTF-8"


def test_a_prompts_file_that_is_not_utf8_is_one_line(tmp_path, stub, capsys):
    prompts = tmp_path / "prompts.jsonl"
    good = json.dumps({"text": "Hello?", "language": "en"})
    prompts.write_bytes(
        f"{good}\n".encode() + '{"text": "caf\xe9", "language": "fr"}\n'.encode("cp1252")
    )
    pool = {"prompts": str(prompts)}
    line = one_error(capsys, ["run", str(write_stub_run(tmp_path, stub.url, pool=pool))])
    assert line == f"arbitrage: error: {prompts}:2: not UTF-8 text; save the file as UTF-8"
    assert not (tmp_path / "run").exists()  # checked before anything is created


def test_out_pointing_at_a_file_is_one_line(tmp_path, stub, capsys):
    (tmp_path / "taken").write_text("not a directory")
    config = write_stub_run(tmp_path, stub.url)
    line = one_error(capsys, ["run", str(config), "--out", str(tmp_path / "taken")])
    assert line == (
        f"arbitrage: error: out {tmp_path / 'taken'} is a file, not a directory; use another --out"
    )
    assert (tmp_path / "taken").read_text() == "not a directory"
    assert stub.requests == []


def test_the_pool_is_checked_before_the_run_directory_is_created(tmp_path, stub, capsys):
    """A prompts file that is missing (or bad) used to leave a run directory of that
    config behind, so the fixed config was refused as "a different config"."""
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text(json.dumps({"text": "Name a river.", "language": "en"}) + "\n")
    typo = write_stub_run(tmp_path, stub.url, pool={"prompts": str(tmp_path / "promts.jsonl")})
    line = one_error(capsys, ["run", str(typo)])
    assert line == f"arbitrage: error: prompt file not found: {tmp_path / 'promts.jsonl'}"
    assert not (tmp_path / "run").exists()
    assert stub.requests == []
    fixed = write_stub_run(tmp_path, stub.url, pool={"prompts": str(prompts)})
    assert main(["run", str(fixed)]) == 0
    assert len(RunDir(tmp_path / "run").load_outcomes()) == 1


def corrupt_pages(path: Path) -> None:
    """Keep the first page (the header and the schema) and overwrite every other page."""
    data = bytearray(path.read_bytes())
    data[4096:] = b"\xa5" * (len(data) - 4096)
    path.write_bytes(bytes(data))


def filled_cache(path: Path) -> None:
    with CallCache(path) as cache:
        for i in range(100):
            gen = Generation(prompt_id=f"p{i}", teacher="t", model="m", text="x" * 300)
            cache.put(f"k{i}", gen)


def test_a_cache_with_corrupt_pages_is_a_data_error_from_get(tmp_path):
    path = tmp_path / "cache.sqlite"
    filled_cache(path)
    corrupt_pages(path)
    with CallCache(path) as cache, pytest.raises(DataError) as info:
        cache.get("k5")
    assert str(info.value) == (
        f"{path}: the call cache is corrupt (database disk image is malformed); move it "
        "aside and rerun the same command: finished prompts are kept, calls not among "
        "them are asked again"
    )


def test_a_run_on_a_cache_with_corrupt_pages_is_one_line(tmp_path, stub, capsys):
    cache = {"path": str(tmp_path / "shared.sqlite")}
    assert main(["run", str(write_stub_run(tmp_path, stub.url, "one", cache=cache))]) == 0
    capsys.readouterr()
    corrupt_pages(tmp_path / "shared.sqlite")
    stub.requests.clear()
    line = one_error(capsys, ["run", str(write_stub_run(tmp_path, stub.url, "two", cache=cache))])
    assert line.startswith(
        f"arbitrage: error: {tmp_path / 'shared.sqlite'}: the call cache is corrupt"
    )
    assert stub.requests == []


def test_appending_outcomes_to_a_full_disk_says_so(tmp_path):
    """/dev/full: every write to it fails with ENOSPC, from the kernel."""
    if not os.path.exists("/dev/full"):
        pytest.skip("no /dev/full on this system")
    run = RunDir(tmp_path)
    run.outcomes_path.symlink_to("/dev/full")
    outcome = Outcome(prompt=PROMPT, candidates=(), winner=None, routed_by="test")
    with pytest.raises(errors.DiskFull) as info:
        run.append_outcomes([outcome])
    assert str(info.value) == (
        f"{run.outcomes_path}: the disk is full (no space left on device); what was "
        "written before is kept - free some space and rerun the same command to resume"
    )


def _namespaces() -> bool:
    if not sys.platform.startswith("linux") or shutil.which("unshare") is None:
        return False
    probe = subprocess.run(["unshare", "-rm", "true"], capture_output=True, check=False)
    return probe.returncode == 0


needs_mounts = pytest.mark.skipif(
    not _namespaces(), reason="needs unshare -rm (a mount namespace of its own, for tmpfs)"
)


# Runs in the namespace: shell steps (mounts, copies) and ``arbitrage`` commands, the
# commands in this one process, so their imports (litellm's take seconds) are paid once.
_IN_NAMESPACE = """
import json, os, subprocess, sys
from arbitrage.commands.cli import main

for step in json.loads(sys.argv[1]):
    if isinstance(step, str):
        subprocess.run(step, shell=True, check=True)
        continue
    name, argv = step
    sys.stdout.flush(), sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    with open(os.devnull, "w") as out, open(name + ".err", "w") as err:
        os.dup2(out.fileno(), 1), os.dup2(err.fileno(), 2)
        try:
            code = main(argv)
        finally:
            sys.stdout.flush(), sys.stderr.flush()
            os.dup2(saved[0], 1), os.dup2(saved[1], 2)
    with open(name + ".rc", "w") as rc:
        rc.write(str(code))
"""


def in_namespace(steps: list[str | tuple[str, list[str]]], tmp_path: Path) -> None:
    """Run ``steps`` in a mount namespace of their own: a string is a shell command (it
    mounts small tmpfs that fill up for real, and nothing outside sees them; it must
    succeed), ``(name, argv)`` runs ``arbitrage argv``, its stderr to ``name.err`` and
    its exit status to ``name.rc``."""
    done = subprocess.run(
        ["unshare", "-rm", sys.executable, "-c", _IN_NAMESPACE, json.dumps(steps)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr


def long_answers(stub) -> None:
    for name in ("alpha", "beta"):
        stub.set_handler(name, lambda m, n=name: f"{n} says: " + "a long answer " * 120)


def cli_result(tmp_path: Path, name: str) -> tuple[int, str]:
    err = (tmp_path / f"{name}.err").read_text()
    errors = [line for line in err.splitlines() if line.startswith("arbitrage: error: ")]
    assert len(errors) <= 1 and "Traceback" not in err, err
    return int((tmp_path / f"{name}.rc").read_text()), errors[0] if errors else ""


DISK_FULL = (
    "the disk is full (no space left on device); what was written before is kept - "
    "free some space and rerun the same command to resume"
)


@pytest.fixture(scope="module")
def full_disks(_stub_server_session, tmp_path_factory):
    """Both full-disk runs below in one namespace (so one process's imports): in
    ``outcomes/`` the run directory is on a 48k tmpfs, in ``cache/`` only its cache, on
    a 96k one. Each runs, and runs again once its disk has grown to 64m."""
    stub = _stub_server_session
    stub.reset()
    stub.set_handler("judge", lambda m: "Fine.\nScore: 7")
    long_answers(stub)
    root = tmp_path_factory.mktemp("full-disks")
    outcomes, cache = root / "outcomes", root / "cache"
    for where in (outcomes, cache):
        (where / "disk").mkdir(parents=True)
    config = stub_config(
        str(outcomes / "disk" / "run"), stub.url, batch_size=2, cache={"enabled": False}
    )
    (outcomes / "c.yaml").write_text(yaml.safe_dump(config))
    config = stub_config(
        str(cache / "run"), stub.url, batch_size=2, cache={"path": str(cache / "disk/cache.sqlite")}
    )
    (cache / "c.yaml").write_text(yaml.safe_dump(config))
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("STUB_KEY", SECRET)
        in_namespace(
            [
                "mount -t tmpfs -o size=48k tmpfs outcomes/disk",
                ("outcomes/first", ["run", "outcomes/c.yaml"]),
                "cp -a outcomes/disk/run outcomes/first",
                "mount -o remount,size=64m outcomes/disk",
                ("outcomes/second", ["run", "outcomes/c.yaml"]),
                "cp -a outcomes/disk/run outcomes/second",
                "mount -t tmpfs -o size=96k tmpfs cache/disk",
                ("cache/first", ["run", "cache/c.yaml"]),
                "cp -a cache/run cache/first && mount -o remount,size=64m cache/disk",
                ("cache/second", ["run", "cache/c.yaml"]),
            ],
            root,
        )
    return root


@needs_mounts
def test_outcomes_on_a_full_disk_stop_in_one_line_and_a_rerun_resumes(full_disks):
    tmp_path = full_disks / "outcomes"
    code, line = cli_result(tmp_path, "first")
    disk = tmp_path / "disk"
    assert code == 2 and line == f"arbitrage: error: {disk / 'run' / 'outcomes.jsonl'}: {DISK_FULL}"
    kept = RunDir(tmp_path / "first").load_outcomes()
    assert 0 < len(kept) < 24
    assert cli_result(tmp_path, "second") == (0, "")
    final = RunDir(tmp_path / "second").load_outcomes()
    assert len(final) == 24 and final[: len(kept)] == kept  # nothing written was lost


@needs_mounts
def test_a_cache_on_a_full_disk_stops_in_one_line_and_a_rerun_resumes(full_disks):
    tmp_path = full_disks / "cache"
    code, line = cli_result(tmp_path, "first")
    disk = tmp_path / "disk"
    assert code == 2 and line == f"arbitrage: error: {disk / 'cache.sqlite'}: {DISK_FULL}"
    kept = RunDir(tmp_path / "first").load_outcomes()
    assert cli_result(tmp_path, "second") == (0, "")
    final = RunDir(tmp_path / "run").load_outcomes()
    assert len(final) == 24 and final[: len(kept)] == kept
    report = json.loads((tmp_path / "run" / "report.json").read_text())
    assert report["engine"]["cache"]["hits"] > 0  # what the cache held before is used again


@needs_mounts
def test_out_in_a_read_only_directory_is_one_line(tmp_path, stub):
    disk = tmp_path / "disk"
    disk.mkdir()
    config = stub_config(str(disk / "run"), stub.url)
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(config))
    in_namespace(
        [f"mount -t tmpfs -o ro,size=64k tmpfs {disk}", ("first", ["run", "c.yaml"])], tmp_path
    )
    assert cli_result(tmp_path, "first") == (
        2,
        f"arbitrage: error: out {disk / 'run'}: cannot write to {disk} (read-only, or no "
        "permission); use another --out",
    )
    assert stub.requests == []


# --- item 10: a key pasted as api_key_env ----------------------------------------------

KEYS = {
    "openai project": "sk-proj-Ab3dEf6hIj9kLm2nOp5qRs8tUv1wXy4zAb3dEf6h",
    "anthropic": "sk-ant-api03-Ab3dEf6hIj9kLm2nOp5qRs8tUv1wXy4z",
    "openai": "sk-Ab3dEf6hIj9kLm2nOp5qRs8tUv1wXy4zAb3dEf6hIj9kLm2",
    "hugging face": "hf_AbCdEfGhIjKlMnOpQrStUvWxYz01234567",
    "groq": "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",
    "xai": "xai-Ab3dEf6hIj9kLm2nOp5qRs8tUv1wXy4zAb3dEf6hIj9kLm2",
    "google": "AIzaSyAb3dEf6hIj9kLm2nOp5qRs8tUv1wXy4z",
    "plain mixed case": "a8F3kQ9zL2mN7pR4tV6wX1yB5cD0eG2h",
    "plain hex": "3f9a1c7e5b2d8f0a4c6e1b3d5f7a9c2e4b6d8f01",
}
LOOKS_LIKE_A_KEY = (
    "this looks like an API key, not the NAME of an environment variable: put the key "
    "in a variable (export OPENAI_API_KEY=...) and its NAME here"
)


def with_key_env(config: dict, where: str, key: str) -> dict:
    if where == "teacher":
        config["teachers"][1]["api_key_env"] = key
    elif where == "reward":
        config["reward"]["api_key_env"] = key
    else:
        judge = {k: config["reward"].pop(k) for k in ("kind", "model", "api_base", "api_key_env")}
        config["reward"].update(
            kind="ensemble",
            members=[{**judge, "name": "a"}, {**judge, "name": "b", "api_key_env": key}],
        )
    return config


@pytest.mark.parametrize("where", ["teacher", "reward", "member"])
@pytest.mark.parametrize("key", list(KEYS.values()), ids=list(KEYS))
def test_a_key_pasted_as_api_key_env_is_named_for_what_it_is_never_echoed(
    tmp_path, stub, capsys, key, where
):
    config = with_key_env(stub_config(str(tmp_path / "run"), stub.url), where, key)
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(config))
    line = one_error(capsys, ["run", str(tmp_path / "c.yaml")])
    path = {
        "teacher": "teachers[1].api_key_env",
        "reward": "reward.api_key_env",
        "member": "reward.members[1].api_key_env",
    }[where]
    assert line == f"arbitrage: error: bad value for '{path}': {LOOKS_LIKE_A_KEY}"
    assert key[6:20] not in line
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize(
    "name",
    [
        "OPENAI_API_KEY",
        "STUB_KEY",
        "my_key",
        "HF_TOKEN",
        "GEMINI_API_KEY_2",
        "AZURE_OPENAI_API_KEY_WESTEUROPE_PRODUCTION",
    ],
)
def test_variable_names_are_still_variable_names(name):
    teachers = [{"name": "a", "model": "openai/m", "api_key_env": name}]
    assert parse_config({"teachers": teachers}).teachers[0].api_key_env == name


def test_a_judge_given_a_key_as_api_key_env_never_echoes_it():
    key = KEYS["hugging face"]
    judge = JudgeReward("openai/judge", api_base="http://127.0.0.1:9/v1", api_key_env=key)
    with pytest.raises(ConfigError) as info:
        judge.score(PROMPT, "The Loire.")
    assert "looks like an API key" in str(info.value) and key[3:] not in str(info.value)


def test_eval_reward_never_echoes_a_key_given_as_its_env(tmp_path, capsys):
    key = KEYS["groq"]
    line = one_error(
        capsys,
        [
            "eval-reward",
            str(tmp_path),
            "--kind",
            "judge",
            "--model",
            "openai/j",
            "--api-key-env",
            key,
        ],
    )
    assert line == f"arbitrage: error: --api-key-env: {LOOKS_LIKE_A_KEY}"


# --- item 11: a key in params ------------------------------------------------------------

SECRET_PARAMS = {
    "api_key": ({"api_key": SECRET}, "api_key"),
    "key": ({"key": SECRET}, "key"),
    "token": ({"token": "abc"}, "token"),
    "access_token": ({"access_token": "abc"}, "access_token"),
    "auth_token": ({"auth_token": "abc"}, "auth_token"),
    "secret": ({"secret": "abc"}, "secret"),
    "password": ({"password": "hunter2"}, "password"),
    "bearer": ({"bearer": "abc"}, "bearer"),
    "camelCase apiKey": ({"apiKey": SECRET}, "apiKey"),
    "header": (
        {"extra_headers": {"Authorization": f"Bearer {SECRET}"}},
        "extra_headers.Authorization",
    ),
    "x-api-key header": ({"extra_headers": {"x-api-key": SECRET}}, "extra_headers.x-api-key"),
    "a key under another name": (
        {"extra_body": {"user": KEYS["openai project"]}},
        "extra_body.user",
    ),
}


def with_params(config: dict, where: str, params: dict) -> dict:
    if where == "teacher":
        config["teachers"][0]["params"] = params
    elif where == "writer":  # the writer is a teacher, named by pool.writer
        config["pool"]["writer"] = "beta"
        config["teachers"][1]["params"] = params
    elif where == "reward":
        config["reward"]["params"] = params
    else:
        judge = {k: config["reward"].pop(k) for k in ("kind", "model", "api_base", "api_key_env")}
        config["reward"].update(
            kind="ensemble",
            members=[{**judge, "name": "a"}, {**judge, "name": "b", "params": params}],
        )
    return config


PARAMS_PATH = {
    "teacher": "teachers[0].params",
    "writer": "teachers[1].params",
    "reward": "reward.params",
    "member": "reward.members[1].params",
}


@pytest.mark.parametrize("where", list(PARAMS_PATH))
@pytest.mark.parametrize(("params", "name"), list(SECRET_PARAMS.values()), ids=list(SECRET_PARAMS))
def test_a_secret_in_params_is_refused_never_echoed(tmp_path, stub, capsys, params, name, where):
    config = with_params(stub_config(str(tmp_path / "run"), stub.url), where, params)
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(config))
    line = one_error(capsys, ["run", str(tmp_path / "c.yaml")])
    assert line == (
        f"arbitrage: error: bad value for '{PARAMS_PATH[where]}': '{name}' holds a secret: "
        "keys never go in the config (config.yaml and report.html are written from it); "
        "put it in an environment variable and name that variable in api_key_env"
    )
    assert SECRET not in line and "hunter2" not in line and KEYS["openai project"] not in line
    assert not (tmp_path / "run").exists()


def test_params_that_only_sound_like_keys_are_accepted():
    params = {
        "max_completion_tokens": 64,
        "top_k": 5,
        "prompt_cache_key": "run-1",
        "logit_bias": {"50256": -100},
        "extra_headers": {"X-Request-Source": "arbitrage"},
    }
    teachers = [{"name": "a", "model": "openai/m", "params": params}]
    assert parse_config({"teachers": teachers}).teachers[0].params == params


# --- item 12: calls no retry will fix stop the run -----------------------------------------


@pytest.mark.parametrize("transport", ["litellm", "direct"])
@pytest.mark.parametrize(
    ("reply", "what"),
    [
        (
            Reply("bad key", status=401),
            "the API key in STUB_KEY was refused (HTTP 401); fix it and rerun the same command to resume",
        ),
        (
            Reply("no access", status=403),
            "the API key in STUB_KEY was refused (HTTP 403); fix it and rerun the same command to resume",
        ),
        (Reply("The model beta does not exist", status=404), "no such model (HTTP 404: "),
    ],
    ids=["401", "403", "404"],
)
def test_a_teacher_no_retry_will_fix_stops_the_run_in_one_line(
    tmp_path, stub, capsys, reply, what, transport
):
    # the server's message quotes the key: it must not reach the terminal
    stub.set_handler("beta", lambda m: Reply(f"{reply.text} {SECRET}", status=reply.status))
    config = stub_config(str(tmp_path / "run"), stub.url, batch_size=2, windows=1)
    config["teachers"] = [dict(t, transport=transport) for t in config["teachers"]]
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(config))
    line = one_error(capsys, ["run", str(tmp_path / "c.yaml")])
    assert line.startswith(f"arbitrage: error: teacher 'beta' (openai/beta): {what}"), line
    assert SECRET not in line
    assert requests_for(stub, "beta") <= 2  # at once: not once per prompt


def test_a_judge_with_a_bad_key_stops_the_run(tmp_path, stub, capsys):
    stub.set_handler("judge", lambda m: Reply("bad key", status=401))
    config = stub_config(str(tmp_path / "run"), stub.url, batch_size=2, windows=1)
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(config))
    line = one_error(capsys, ["run", str(tmp_path / "c.yaml")])
    assert line.startswith(
        "arbitrage: error: judge 'openai/judge': the API key in STUB_KEY was refused "
        "(HTTP 401); fix it and rerun the same command to resume"
    ), line
    assert requests_for(stub, "judge") <= 4


def test_an_unknown_provider_is_refused_before_the_run(tmp_path, stub, capsys):
    config = stub_config(str(tmp_path / "run"), stub.url)
    config["teachers"][1]["model"] = "opnai/beta"
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(config))
    line = one_error(capsys, ["run", str(tmp_path / "c.yaml")])
    assert line == (
        "arbitrage: error: teacher 'beta': litellm knows no provider for model 'opnai/beta'; "
        "write it as provider/model (e.g. openai/gpt-4o-mini)"
    )
    assert not (tmp_path / "run").exists() and stub.requests == []


def test_an_unknown_provider_raises_from_the_call_path(stub):
    t = Teacher.from_model("t", "opnai/t", api_base=stub.url, api_key_env="STUB_KEY")
    with pytest.raises(errors.CallRejected) as info:
        asyncio.run(t.agenerate(PROMPT))
    assert str(info.value).startswith(
        "teacher 't' (opnai/t): litellm knows no provider for model 'opnai/t'"
    )
    assert info.value.teacher == "t" and SECRET not in str(info.value)


def test_a_run_that_keeps_no_row_exits_non_zero(tmp_path, stub, capsys):
    for name in ("alpha", "beta"):
        stub.set_handler(name, lambda m: Reply("bad request", status=400))
    line = one_error(capsys, ["run", str(write_stub_run(tmp_path, stub.url))])
    assert line == (
        "arbitrage: error: the run kept no row: no prompt of 24 has a winning answer "
        f"(answers: 48 error); see {tmp_path / 'run'}/report.html for why"
    )


# --- item 13: empty prompt text --------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "what"), [(None, "null"), ("", "empty"), ("  \n ", "empty"), (7, "not text")]
)
def test_a_prompt_row_without_text_is_refused_with_its_line(tmp_path, stub, capsys, text, what):
    prompts = tmp_path / "prompts.jsonl"
    rows = [{"text": "Name a river.", "language": "en"}, {"text": text, "language": "en"}]
    prompts.write_text("".join(json.dumps(r) + "\n" for r in rows))
    line = one_error(
        capsys, ["run", str(write_stub_run(tmp_path, stub.url, pool={"prompts": str(prompts)}))]
    )
    assert line == (
        f"arbitrage: error: {prompts}:2: 'text' is {what}; every prompt row needs an instruction"
    )
    assert stub.requests == [] and not (tmp_path / "run").exists()
