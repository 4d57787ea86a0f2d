"""Where a bundled model's reply ends: a base model's stop strings, and loops."""

from pathlib import Path

import pytest

from arbitrage.calls.local import models
from arbitrage.calls.local.backends import _cut_at_stop, is_looping


def test_a_leading_blank_line_does_not_end_a_base_models_answer():
    # Gemma often opens with "\n\n": cutting there left a third of its answers empty.
    assert _cut_at_stop("\n\nParis is the capital.\n\nQuestion: next") == (
        "\n\nParis is the capital.",
        True,
    )
    assert _cut_at_stop(" Paris.\nQuestion: What else?") == (" Paris.", True)
    assert _cut_at_stop("  still going") == ("  still going", False)
    # An answer that opens with a new question (the prompt, echoed) is no answer.
    assert _cut_at_stop("\nQuestion: Rewrite this.\nAnswer:") == ("", True)
    assert _cut_at_stop(" Question: Rewrite this.\nAnswer:") == ("", True)


def test_a_reply_that_repeats_itself_is_a_loop():
    line = "Bangangi dengan mata-mata kauilakurangkak, "
    assert not is_looping(line * 2)
    assert is_looping("Jamunku, akujakani. " + line * 3)
    assert is_looping("Answer: This is a Sudoku with 10 questions.\n" * 3)
    sentence = "The river rises in spring, and the farmers plant rice along its banks. "
    assert not is_looping(sentence + "In autumn the water falls and the fields are harvested.")
    # Scripts without spaces: characters, not words.
    assert is_looping("我喜欢学习中文和历史。" * 6)
    assert not is_looping("我喜欢学习中文和历史。今天天气很好，我们去公园散步吧。")


@pytest.mark.slow
def test_conversion_runs_in_a_child_process(smol_conversion):
    # The conversion's peak memory stays in the child: the parent only ever holds
    # what loading the converted model takes. smol_conversion (tests/conftest.py) is the
    # session's one conversion, which every other SmolLM2 test then loads from.
    assert smol_conversion["returncode"] == 0, smol_conversion["stderr"]
    me_kb, child_kb = smol_conversion["me_kb"], smol_conversion["child_kb"]
    spec = models.MODELS["smollm2-135m-instruct"]
    converted = Path(smol_conversion["root"]) / models.cache_dir(spec).name
    assert (converted / "model.safetensors").is_file()
    assert child_kb > 500_000 > me_kb, (me_kb, child_kb)  # the fp32 weights: only in the child
