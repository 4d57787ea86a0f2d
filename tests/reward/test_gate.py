"""The language gate on real text: lingua decides, a wrong-language answer cannot win."""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from arbitrage.errors import ConfigError
from arbitrage.records import Prompt
from reward.base import RewardModel, Score
from reward.gate import LanguageGate


class Constant(RewardModel):
    """A reward model that likes every answer the same (a user's plug-in would do)."""

    name = "constant"

    async def ascore_batch(self, pairs: Sequence[tuple[Prompt, str]]) -> list[Score]:
        return [Score(0.9, {"seen": 1.0}) for _ in pairs]


# (language, an answer in that language, a wrong-language answer to the same question)
ANSWERS = [
    (
        "en",
        "Water boils at one hundred degrees Celsius at sea level, and at a lower "
        "temperature in the mountains because the air pressure is lower there.",
        "L'eau bout à cent degrés Celsius au niveau de la mer, et à une température plus "
        "basse en montagne parce que la pression de l'air y est plus faible.",
    ),
    (
        "fr",
        "L'eau bout à cent degrés Celsius au niveau de la mer, et à une température plus "
        "basse en montagne parce que la pression de l'air y est plus faible.",
        "Water boils at one hundred degrees Celsius at sea level, and at a lower "
        "temperature in the mountains because the air pressure is lower there.",
    ),
    (
        "de",
        "Wasser kocht auf Meereshöhe bei hundert Grad Celsius und in den Bergen bei einer "
        "niedrigeren Temperatur, weil dort der Luftdruck geringer ist.",
        "Water boils at one hundred degrees Celsius at sea level, and at a lower "
        "temperature in the mountains because the air pressure is lower there.",
    ),
    (
        "es",
        "El agua hierve a cien grados Celsius al nivel del mar, y a una temperatura más "
        "baja en las montañas porque allí la presión del aire es menor.",
        "A água ferve a cem graus Celsius ao nível do mar e a uma temperatura mais baixa "
        "nas montanhas, porque lá a pressão do ar é menor.",
    ),
    (
        "sw",
        "Maji huchemka kwa nyuzi joto mia moja kwenye usawa wa bahari, na kwa joto la chini "
        "zaidi milimani kwa sababu shinikizo la hewa ni dogo huko.",
        "Water boils at one hundred degrees Celsius at sea level, and at a lower "
        "temperature in the mountains because the air pressure is lower there.",
    ),
    (
        "ru",
        "Вода кипит при ста градусах Цельсия на уровне моря и при более низкой температуре "
        "в горах, потому что давление воздуха там ниже.",
        "Вода кипить при ста градусах Цельсія на рівні моря і при нижчій температурі "
        "в горах, тому що тиск повітря там нижчий.",
    ),
    (
        "zh",
        "在海平面上，水在摄氏一百度时沸腾；在山上，由于气压较低，水的沸点也更低。",
        "海面では水は摂氏百度で沸騰しますが、山の上では気圧が低いため、より低い温度で沸騰します。",
    ),
    (
        "ar",
        "يغلي الماء عند مئة درجة مئوية عند مستوى سطح البحر، وعند درجة حرارة أقل في الجبال "
        "لأن ضغط الهواء هناك أقل.",
        "پانی سطح سمندر پر سو ڈگری سیلسیس پر ابلتا ہے، اور پہاڑوں میں کم درجہ حرارت پر "
        "کیونکہ وہاں ہوا کا دباؤ کم ہوتا ہے۔",
    ),
]


def _prompt(language: str) -> Prompt:
    return Prompt(text="At what temperature does water boil?", language=language, task="qa")


@pytest.mark.parametrize(("language", "right", "wrong"), ANSWERS, ids=[a[0] for a in ANSWERS])
def test_gate_rejects_a_wrong_language_answer(language: str, right: str, wrong: str) -> None:
    prompt = _prompt(language)
    kept, gated = LanguageGate(Constant()).score_batch([(prompt, right), (prompt, wrong)])
    assert kept.value == 0.9
    assert kept.details["language_fidelity"] >= 0.5
    assert kept.details["seen"] == 1.0  # the wrapped model's details are kept
    assert gated.value is None
    assert gated.details["language_gated"] == 1.0
    assert gated.details["before_gate"] == 0.9
    assert gated.details["language_fidelity"] < 0.5


def test_penalty_mode_ranks_the_right_language_first() -> None:
    gate = LanguageGate(Constant(), "penalty", penalty=2.0)
    for language, right, wrong in ANSWERS:
        kept, penalised = gate.score_batch([(_prompt(language), right), (_prompt(language), wrong)])
        assert penalised.value is not None and kept.value is not None
        assert penalised.value < kept.value <= 0.9
        assert penalised.value == pytest.approx(
            0.9 - 2.0 * (1 - penalised.details["language_fidelity"])
        )


def test_per_language_levels_override_the_default() -> None:
    *_, wrong = ANSWERS[4]  # an English answer to a Swahili prompt
    gate = LanguageGate(Constant(), threshold=0.5, per_language={"sw": 0.0, "fr": 0.99})
    sw = gate.score_batch([(_prompt("sw"), wrong)])[0]
    assert sw.value == 0.9 and "language_fidelity" not in sw.details  # 0: not checked
    assert gate.level("fr") == 0.99 and gate.level("de") == 0.5


def test_code_and_short_answers_are_not_judged() -> None:
    code = "```python\ndef boil():\n    return 100\n```"
    scores = LanguageGate(Constant()).score_batch([(_prompt("sw"), code), (_prompt("fr"), "100")])
    assert [s.value for s in scores] == [0.9, 0.9]


def test_the_inner_models_fidelity_is_reused() -> None:
    class WithFidelity(Constant):
        async def ascore_batch(self, pairs: Sequence[tuple[Prompt, str]]) -> list[Score]:
            return [Score(0.9, {"language_fidelity": 0.1}) for _ in pairs]

    # An English answer to an English prompt, but the wrapped model says 0.1: it decides.
    _, right, _ = ANSWERS[0]
    (score,) = LanguageGate(WithFidelity()).score_batch([(_prompt("en"), right)])
    assert score.value is None and score.details["language_fidelity"] == 0.1


def test_unscored_answers_stay_unscored() -> None:
    class Nothing(Constant):
        async def ascore_batch(self, pairs: Sequence[tuple[Prompt, str]]) -> list[Score]:
            return [Score(None) for _ in pairs]

    assert LanguageGate(Nothing()).score_batch([(_prompt("en"), ANSWERS[0][1])]) == [Score(None)]


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"mode": "strict"}, "mode"),
        ({"threshold": 1.5}, "thresholds"),
        ({"per_language": {"fr": -1}}, "thresholds"),
        ({"mode": "penalty", "penalty": -1.0}, "penalties"),
    ],
)
def test_bad_settings_are_rejected(kwargs: dict[str, object], match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        LanguageGate(Constant(), **kwargs)  # type: ignore[arg-type]
