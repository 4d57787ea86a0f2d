"""The offline reward: language fidelity, degeneracy and the local judge."""

from __future__ import annotations

import pytest

from arbitrage.errors import ConfigError
from arbitrage.records import Prompt
from reward import get_reward
from reward.fidelity import language_fidelity, weigh_against
from reward.local import LocalJudgeReward, degeneracy

SAMPLES = {
    "en": "The river flows slowly through the old town, past the market and the church.",
    "fr": "La rivière traverse lentement la vieille ville, devant le marché et l'église.",
    "de": "Der Fluss fließt langsam durch die Altstadt, vorbei am Markt und an der Kirche.",
    "es": "El río fluye lentamente por el casco antiguo, junto al mercado y la iglesia.",
    "sw": "Mto unapita polepole katikati ya mji wa zamani, karibu na soko na kanisa.",
    "pt": "O rio corre devagar pela cidade velha, passando pelo mercado e pela igreja.",
    "ru": "Река медленно течёт через старый город, мимо рынка и церкви.",
    "hi": "नदी पुराने शहर से धीरे-धीरे बहती है, बाज़ार और मंदिर के पास से।",
}


@pytest.mark.parametrize("code", sorted(SAMPLES))
def test_fidelity_recognises_language(code: str) -> None:
    weigh_against(SAMPLES)  # a run in these languages
    assert language_fidelity(SAMPLES[code], code) > 0.9
    other = "fr" if code == "en" else "en"
    assert language_fidelity(SAMPLES[code], other) < 0.1


def test_fidelity_spares_code_and_unknown_languages() -> None:
    assert language_fidelity("x = f(2) + 3 * y", "sw") == 1.0
    assert language_fidelity("```python\nprint('hello world from here')\n```\nOK.", "fr") == 1.0
    assert language_fidelity(SAMPLES["en"], "xx") == 1.0
    assert language_fidelity(SAMPLES["pt"], "pt-BR") > 0.9


def test_degeneracy() -> None:
    assert degeneracy(SAMPLES["en"]) == 0.0
    assert degeneracy("the cat " * 20) > 0.8
    assert degeneracy("") == 1.0
    assert 0 < degeneracy("Paris.") < 1
    assert degeneracy("巴黎是法国的首都，也是法国最大的城市。") == 0.0


def test_params_are_validated() -> None:
    with pytest.raises(ConfigError, match="judge_model"):
        LocalJudgeReward(judge_model="nope")
    with pytest.raises(ConfigError, match="batch_size"):
        LocalJudgeReward(batch_size=0)
    with pytest.raises(ConfigError, match="judge_modle"):
        get_reward("local", judge_modle="x")
    assert "PROXY" in LocalJudgeReward().describe()


@pytest.mark.slow
def test_good_answer_beats_degenerate_ones() -> None:
    prompt = Prompt(text="Explain in two sentences why the sky is blue.", language="en", task="qa")
    good = (
        "Sunlight is scattered by the molecules of the air, and blue light is scattered much "
        "more than red light because its wavelength is shorter. So we see blue light coming "
        "from every part of the sky."
    )
    bad = [
        "blue blue sky sky blue blue sky sky blue blue sky sky blue blue sky sky",
        "Le ciel est bleu parce que la lumière du soleil est diffusée par l'air.",
        "ok",
    ]
    scores = get_reward("local", batch_size=2).score_batch([(prompt, t) for t in [good, *bad]])
    assert all(s.value is not None for s in scores)
    assert set(scores[0].details) == {"judge_yes", "language_fidelity", "degeneracy"}
    for worse in scores[1:]:
        assert scores[0].value > worse.value  # type: ignore[operator]


def test_fidelity_loads_only_the_languages_in_use() -> None:
    """The expected language, the run's, their relatives and the drift set: not all 50."""
    from reward import fidelity
    from reward.fidelity import DRIFT, _detector, _language, _relatives

    weigh_against(["sw", "yo"])
    language_fidelity(SAMPLES["fr"], "tr")
    values = _detector(_language("tr")).compute_language_confidence_values(SAMPLES["fr"])
    in_use = {"tr", *fidelity._run_languages}  # earlier tests of this process add theirs
    expected = {*DRIFT, *in_use, *(c for code in in_use for c in _relatives(code))}
    assert {"sw", "yo", "zu", "ha"} <= expected
    assert {v.language for v in values} == {_language(c) for c in expected} - {None}
    assert _language("th") not in {v.language for v in values}
