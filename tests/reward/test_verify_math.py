"""The ``math`` verifier: answer extraction (numbers, LaTeX, many languages), comparison
with a reference, and agreement across a prompt's candidates."""

from __future__ import annotations

from fractions import Fraction

import pytest

from arbitrage.records import Prompt
from reward import get_reward
from reward.verifiers.basis import basis, verdict
from reward.verifiers.extract import extract_answer, same_answer, to_number
from reward.verifiers.math import MathVerifier


@pytest.mark.parametrize(
    ("text", "language", "answer"),
    [
        ("Sumamos 12 y 30. La respuesta es 42.", "es", "42"),
        ("On divise par 4. Réponse : 12,5", "fr", "12.5"),
        ("Складываем. Ответ: 1 000", "ru", "1000"),
        ("先算乘法，再加。答案是 ３６。", "zh", "36"),
        ("हम जोड़ते हैं। उत्तर: ४२", "hi", "42"),
        ("Tunaongeza. Jibu ni 7", "sw", "7"),
        ("Wir teilen. Die Antwort ist 3/4.", "de", "0.75"),
        ("الجواب: ٩", "ar", "9"),
    ],
)
def test_a_labelled_answer_is_read_in_the_prompts_language(
    text: str, language: str, answer: str
) -> None:
    got = extract_answer(text, language)
    assert got is not None and same_answer(got, answer), got


def test_the_label_nearest_the_end_wins_over_earlier_numbers() -> None:
    assert extract_answer("Step 1 gives 5. The answer is 6", "en") == "6"
    assert extract_answer("La respuesta es 3/4.", "es") == "3/4."


def test_boxed_wins_and_keeps_nested_braces() -> None:
    assert extract_answer("so 2 then $\\boxed{\\frac{1}{2}}$ and 7", "en") == "\\frac{1}{2}"
    assert extract_answer("The final answer is $\\boxed{{772}}$", "en") == "772"


def test_without_a_label_the_last_number_is_the_answer() -> None:
    assert extract_answer("3 apples and 4 pears make 7 fruit", "en") == "7"
    assert extract_answer("no numbers at all", "en") is None


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("42", Fraction(42)),
        ("-3", Fraction(-3)),
        ("−3", Fraction(-3)),
        ("2.5", Fraction(5, 2)),
        ("2,5", Fraction(5, 2)),
        ("1,250.00", Fraction(1250)),
        ("1.234,5", Fraction(24690, 20)),
        ("3/4", Fraction(3, 4)),
        ("\\frac{3}{4}", Fraction(3, 4)),
        ("\\dfrac{10}{4}", Fraction(5, 2)),
        ("25%", Fraction(1, 4)),
        ("$12", Fraction(12)),
        ("x = 4", Fraction(4)),
        ("12 cm", Fraction(12)),
        ("४२", Fraction(42)),
        ("London", None),
        ("between 3 and 4", None),
    ],
)
def test_numbers_are_read_exactly(text: str, value: Fraction | None) -> None:
    assert to_number(text) == value


def test_answers_compare_as_numbers_text_or_options() -> None:
    assert same_answer("0.5", "1/2") and same_answer("50%", "0.5") and same_answer("25%", "25")
    assert not same_answer("0.51", "1/2")
    assert same_answer("London.", "london") and not same_answer("Paris", "London")
    assert same_answer("D. Video conferencing", "D") and not same_answer("Do it", "D")


def _prompt(reference: str | None = None, text: str = "What is 6 × 7?") -> Prompt:
    return Prompt(text=text, language="en", task="math", reference=reference)


def test_with_a_reference_right_is_one_and_wrong_is_zero() -> None:
    prompt = _prompt("42")
    scores = MathVerifier().score_batch(
        [(prompt, "6 × 7 = 42"), (prompt, "It is 41."), (prompt, "I do not know.")]
    )
    assert [s.value for s in scores] == [1.0, 0.0, 0.0]
    assert [verdict(s.details) for s in scores] == [True, False, False]
    assert {basis(s.details) for s in scores} == {"reference"}
    assert scores[2].details["math_answered"] == 0.0


def test_without_a_reference_the_majority_of_candidates_wins() -> None:
    prompt = _prompt()
    other = _prompt(text="What is 2 + 2?")
    pairs = [
        (prompt, "The answer is 42"),
        (prompt, "I get 41"),
        (prompt, "Answer: 42.0"),
        (other, "4"),  # another prompt's answers never vote here
        (other, "4"),
        (other, "5"),
    ]
    scores = MathVerifier().score_batch(pairs)
    assert [s.value for s in scores] == [2 / 3, 1 / 3, 2 / 3, 2 / 3, 2 / 3, 1 / 3]
    assert {basis(s.details) for s in scores} == {"agreement"}
    assert all(verdict(s.details) is None for s in scores)  # a majority is no proof


def test_a_lone_answer_without_reference_is_neutral_or_unscored() -> None:
    prompt = _prompt()
    assert MathVerifier().score(prompt, "42").value == 0.5
    assert MathVerifier(agreement=False).score(prompt, "42").value is None


def test_math_is_a_per_prompt_reward_kind() -> None:
    reward = get_reward("math", agreement=False)
    assert isinstance(reward, MathVerifier) and reward.per_prompt
    assert reward.describe() == "math verifier (reference only)"
