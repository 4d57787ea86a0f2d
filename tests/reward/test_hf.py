"""HFRewardModel on a tiny random Llama classifier and a tokenizer built here (no downloads)."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import pytest

from arbitrage.errors import ConfigError, RewardError
from arbitrage.records import Prompt
from reward.base import Score
from reward.hf import HFRewardModel

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

CORPUS = [
    "what is the capital of france",
    "the capital of france is paris",
    "write a short poem about the sea",
    "the sea is wide and deep and blue",
    "explain how a hash map works in simple words",
    "a hash map stores values under keys for fast lookup",
]
CHAT_TEMPLATE = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
)

PAIRS = [
    (Prompt(text="what is the capital of france", language="en", task="qa"), "paris"),
    (
        Prompt(text="explain how a hash map works in simple words", language="en", task="explain"),
        "a hash map stores values under keys for fast lookup and the sea is blue",
    ),
    (Prompt(text="write a short poem", language="en", task="poem"), "the sea is wide"),
    (Prompt(text="capital of france", language="en", task="qa"), "it is paris the capital"),
    (Prompt(text="what", language="en", task="qa"), "deep"),
]


def _save_tiny_model(path: Path, *, chat_template: bool = True) -> Path:
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForSequenceClassification, PreTrainedTokenizerFast

    specials = ["<pad>", "<unk>", "<s>", "</s>", "<|im_start|>", "<|im_end|>"]
    backend = Tokenizer(models.WordLevel(unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    backend.train_from_iterator(
        [*CORPUS, "user assistant User: Assistant:"],
        trainers.WordLevelTrainer(special_tokens=specials),
    )
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend,
        pad_token="<pad>",
        unk_token="<unk>",
        bos_token="<s>",
        eos_token="</s>",
        additional_special_tokens=["<|im_start|>", "<|im_end|>"],
    )
    if chat_template:
        tokenizer.chat_template = CHAT_TEMPLATE
    config = LlamaConfig(
        vocab_size=backend.get_vocab_size(),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=256,
        num_labels=1,
        pad_token_id=tokenizer.pad_token_id,
    )
    torch.manual_seed(0)
    model = LlamaForSequenceClassification(config)
    tokenizer.save_pretrained(path)
    model.save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> str:
    return str(_save_tiny_model(tmp_path_factory.mktemp("tiny-rm")))


def test_batched_scores_match_one_at_a_time_in_order(tiny_model: str) -> None:
    batched = HFRewardModel(tiny_model, batch_size=4).score_batch(PAIRS)
    singles = HFRewardModel(tiny_model, batch_size=1)
    one_by_one = [singles.score(p, c) for p, c in PAIRS]
    assert all(s.value is not None for s in batched)
    assert [s.value for s in batched] == pytest.approx([s.value for s in one_by_one], abs=1e-4)
    # Random weights still tell these pairs apart, so a lost order would show.
    assert len({round(s.value or 0.0, 4) for s in batched}) == len(PAIRS)
    assert all(s.details == {} for s in batched)


def test_scores_are_the_first_logit_of_the_templated_pair(tiny_model: str) -> None:
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    prompt, completion = PAIRS[1]
    reward = HFRewardModel(tiny_model)
    text = reward.format_pair(prompt, completion)
    turns = [("user", prompt.text), ("assistant", completion)]
    assert text == "".join(f"<|im_start|>{role}\n{content}<|im_end|>\n" for role, content in turns)
    tokenizer = AutoTokenizer.from_pretrained(tiny_model)
    model = AutoModelForSequenceClassification.from_pretrained(tiny_model).eval()
    with torch.inference_mode():
        expected = model(**tokenizer(text, return_tensors="pt")).logits[0, 0].item()
    assert reward.score(prompt, completion).value == pytest.approx(expected, abs=1e-5)


def test_deterministic_across_instances(tiny_model: str) -> None:
    first = HFRewardModel(tiny_model).score_batch(PAIRS)
    second = HFRewardModel(tiny_model).score_batch(PAIRS)
    assert first == second


def test_truncation_is_flagged(tiny_model: str) -> None:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_model)
    reward = HFRewardModel(tiny_model, max_length=14, batch_size=2)
    lengths = [len(tokenizer(reward.format_pair(p, c))["input_ids"]) for p, c in PAIRS]
    assert min(lengths) <= 14 < max(lengths)
    scores = reward.score_batch(PAIRS)
    assert [s.details for s in scores] == [{"truncated": 1.0} if n > 14 else {} for n in lengths]
    assert all(s.value is not None for s in scores)


def test_no_chat_template_falls_back_to_plain_text(tmp_path: Path) -> None:
    path = _save_tiny_model(tmp_path, chat_template=False)
    prompt, completion = PAIRS[0]
    reward = HFRewardModel(str(path))
    assert reward.format_pair(prompt, completion) == f"User: {prompt.text}\nAssistant: {completion}"
    assert isinstance(reward.score(prompt, completion).value, float)


def test_empty_batch_loads_nothing() -> None:
    reward = HFRewardModel("no/such-model")
    assert asyncio.run(reward.ascore_batch([])) == []


def test_missing_model_is_reward_error(tmp_path: Path) -> None:
    reward = HFRewardModel(str(tmp_path / "absent"))
    with pytest.raises(RewardError, match="absent"):
        reward.score(*PAIRS[0])


def test_missing_transformers_names_the_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "transformers", None)
    with pytest.raises(RewardError, match="pip install torch transformers"):
        HFRewardModel("any/model").score(*PAIRS[0])


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"dtype": "fp8"}, "dtype"),
        ({"batch_size": 0}, "batch_size"),
        ({"max_length": 0}, "max_length"),
    ],
)
def test_bad_config_is_rejected(kwargs: dict[str, object], match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        HFRewardModel("any/model", **kwargs)  # type: ignore[arg-type]


def test_score_is_a_score(tiny_model: str) -> None:
    assert isinstance(HFRewardModel(tiny_model).score(*PAIRS[0]), Score)


def test_scores_are_cached_and_not_recomputed(tiny_model: str, tmp_path: Path) -> None:
    from arbitrage.calls.cache import CallCache

    cache = CallCache(tmp_path / "cache.sqlite")
    first = HFRewardModel(tiny_model, max_length=14, cache=cache).score_batch(PAIRS)
    assert cache.writes == len(PAIRS)
    # A fresh instance with the same cache answers from it without loading the model.
    again = HFRewardModel(tiny_model, max_length=14, cache=cache)
    assert again.score_batch(PAIRS) == first
    assert again._loaded is None
    assert cache.hits == len(PAIRS)
    # Another max_length is another request: scored, not served from the cache.
    other = HFRewardModel(tiny_model, max_length=64, cache=cache)
    other.score_batch(PAIRS[:1])
    assert other._loaded is not None
    cache.close()


ARMO_CODE = '''
from dataclasses import dataclass

import torch
from transformers import LlamaForSequenceClassification
from transformers.utils import ModelOutput


@dataclass
class ArmoOutput(ModelOutput):
    score: torch.FloatTensor | None = None
    logits: torch.FloatTensor | None = None


class ArmoLike(LlamaForSequenceClassification):
    """Like ArmoRM: several objective heads, and a gated ``score``."""

    def forward(self, input_ids=None, attention_mask=None, **kwargs):
        objectives = super().forward(input_ids=input_ids, attention_mask=attention_mask).logits
        return ArmoOutput(score=objectives.mean(-1, keepdim=True) * 10, logits=objectives)
'''


def _save_armo_like(path: Path) -> Path:
    import json

    from transformers import AutoConfig, LlamaForSequenceClassification

    _save_tiny_model(path)
    config = AutoConfig.from_pretrained(path)
    config.num_labels = 3
    torch.manual_seed(1)
    LlamaForSequenceClassification(config).save_pretrained(path)
    (path / "modeling_armo.py").write_text(ARMO_CODE)
    data = json.loads((path / "config.json").read_text())
    data["auto_map"] = {"AutoModelForSequenceClassification": "modeling_armo.ArmoLike"}
    (path / "config.json").write_text(json.dumps(data))
    return path


def test_custom_score_head_loads_only_with_trust_remote_code(tmp_path: Path) -> None:
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    path = _save_armo_like(tmp_path / "armo")
    reward = HFRewardModel(str(path), trust_remote_code=True)
    prompt, completion = PAIRS[1]
    got = reward.score(prompt, completion).value
    tokenizer = AutoTokenizer.from_pretrained(path)
    model = AutoModelForSequenceClassification.from_pretrained(path, trust_remote_code=True)
    with torch.inference_mode():
        batch = tokenizer(reward.format_pair(prompt, completion), return_tensors="pt")
        objectives = model(**batch).logits[0]
    assert objectives.shape == (3,)
    assert got == pytest.approx(objectives.mean().item() * 10, abs=1e-4)


def test_custom_code_is_refused_without_opt_in(tmp_path: Path) -> None:
    path = _save_armo_like(tmp_path / "armo")
    with pytest.raises(RewardError, match="trust_remote_code"):
        HFRewardModel(str(path)).score(*PAIRS[0])


def test_a_classifier_with_several_outputs_is_not_a_reward_model(tmp_path: Path) -> None:
    from transformers import AutoConfig, LlamaForSequenceClassification

    path = _save_tiny_model(tmp_path / "three")
    config = AutoConfig.from_pretrained(path)
    config.num_labels = 3
    LlamaForSequenceClassification(config).save_pretrained(path)
    with pytest.raises(RewardError, match="has 3 outputs"):
        HFRewardModel(str(path)).score(*PAIRS[0])


def test_weights_retrained_in_place_are_scored_anew(tmp_path: Path) -> None:
    from transformers import AutoConfig, LlamaForSequenceClassification

    from arbitrage.calls.cache import CallCache

    path = _save_tiny_model(tmp_path / "rm")
    cache = CallCache(tmp_path / "cache.sqlite")
    before = HFRewardModel(str(path), cache=cache).score_batch(PAIRS[:2])
    torch.manual_seed(7)  # "retrain": new weights, same folder
    LlamaForSequenceClassification(AutoConfig.from_pretrained(path)).save_pretrained(path)
    after = HFRewardModel(str(path), cache=cache).score_batch(PAIRS[:2])
    assert cache.writes == 4 and cache.hits == 0
    assert after != before
    cache.close()
