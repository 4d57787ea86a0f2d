"""Running a bundled model: transformers (default) or llama-cpp-python (faster, optional).

The transformers backend dequantises the GGUF file once (~25 s) and keeps an fp32
safetensors copy in the cache, so later loads take ~3 s. Sampling is seeded with
``torch.manual_seed``: results are reproducible for the same seed and the same
batch (a batch is padded, so its composition changes the numbers slightly).
"""

from __future__ import annotations

import contextlib
import gc
import importlib.util
import os
import shutil
import tempfile
import threading
from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from arbitrage.calls.local.models import ModelSpec, cache_dir, cpu_has_bf16, get_spec, gguf_path
from arbitrage.errors import ConfigError, ModelNotAvailable

Messages = Sequence[dict[str, str]]

#: Where a base model's answer ends: it starts the next question, or a blank line.
BASE_STOPS = ("\nQuestion:", "\n\n")

# One generation at a time in the process: one already keeps the CPU busy, and
# torch's RNG is global, so this is also what makes seeded sampling reproducible.
_GENERATE_LOCK = threading.Lock()


@dataclass(frozen=True)
class LocalResult:
    """One completion: its text, why it ended (``stop`` or ``length``) and its token counts."""

    text: str
    finish_reason: Literal["stop", "length"]
    prompt_tokens: int
    completion_tokens: int


def base_prompt(messages: Messages) -> str:
    """A completion-style frame for base models: system text, then Question/Answer turns."""
    lines = []
    for message in messages:
        role, content = message.get("role", "user"), message.get("content", "").strip()
        if role == "system":
            lines.append(content)
        elif role == "assistant":
            lines.append(f"Answer: {content}")
        else:
            lines.append(f"Question: {content}")
    return "\n".join(lines) + "\nAnswer:"


def _cut_at_stop(text: str) -> tuple[str, bool]:
    # A blank line ends the answer only after its first words: a base model often opens
    # with one, and cutting there left a third of Gemma's answers on the default empty.
    # A new question ends it anywhere: an answer that starts with one (often the
    # prompt, echoed) is no answer at all.
    start = len(text) - len(text.lstrip())
    if text.startswith("Question:", start):
        return "", True
    found = (text.find(s, start if not s.strip() else 0) for s in BASE_STOPS)
    cut = min((i for i in found if i >= 0), default=-1)
    return (text[:cut], True) if cut >= 0 else (text, False)


#: A reply loops once its last ``LOOP_WORDS`` words (``LOOP_CHARS`` characters, for
#: scripts written without spaces) have already appeared ``LOOP_REPEATS`` times.
LOOP_WORDS = 6
LOOP_CHARS = 16
LOOP_REPEATS = 2


def is_looping(text: str) -> bool:
    """Whether a reply has fallen into a loop: its tail repeats what it already said,
    twice. Generation stops there; the reply is reported as cut (``length``), since it
    never finished."""
    words = text.split()
    if len(words) >= LOOP_WORDS * (LOOP_REPEATS + 1):
        tail = " ".join(words[-LOOP_WORDS:])
        return " ".join(words[:-LOOP_WORDS]).count(tail) >= LOOP_REPEATS
    if len(words) * 8 < len(text) and len(text) >= LOOP_CHARS * (LOOP_REPEATS + 1):
        return text[:-LOOP_CHARS].count(text[-LOOP_CHARS:]) >= LOOP_REPEATS
    return False


def _stops(tokenizer: Any, prompt_len: int, base: bool) -> Any:
    """A transformers ``StoppingCriteria``, per row: a base model's stop strings (after
    its first words) and loops (``is_looping``). Decoding a row at each step costs
    ~20 µs; the steps it saves cost ~10 ms each."""
    import torch
    from transformers import StoppingCriteria

    class Stops(StoppingCriteria):
        def __call__(self, input_ids: Any, scores: Any, **kwargs: Any) -> Any:
            done = []
            for row in input_ids[:, prompt_len:]:
                text = tokenizer.decode(row, skip_special_tokens=True)
                done.append((base and _cut_at_stop(text)[1]) or is_looping(text))
            return torch.tensor(done, dtype=torch.bool, device=input_ids.device)

    return Stops()


def _normalise(scores: dict[str, float]) -> dict[str, float]:
    total = sum(scores.values())
    if total <= 0:
        return {k: 1 / len(scores) for k in scores}
    return {k: v / total for k, v in scores.items()}


class LocalModel(ABC):
    """A loaded local model. ``batch_sizes`` records the size of every generated batch."""

    def __init__(self, spec: ModelSpec) -> None:
        self.spec = spec
        self.batch_sizes: list[int] = []

    @abstractmethod
    def generate_batch(
        self,
        conversations: Sequence[Messages],
        max_tokens: int = 256,
        temperature: float = 0.7,
        seed: int | None = None,
    ) -> list[LocalResult]:
        """Answer each conversation; ``temperature <= 0`` is greedy decoding."""

    @abstractmethod
    def option_probs(
        self, conversations: Sequence[Messages], options: Sequence[str] = ("Yes", "No")
    ) -> list[dict[str, float]]:
        """For each conversation, the probability of each option as the reply's first token,
        normalised over ``options``."""


class TransformersModel(LocalModel):
    """A bundled model in transformers, fp32 on CPU, batched with left padding."""

    def __init__(self, spec: ModelSpec, tokenizer: Any, model: Any) -> None:
        super().__init__(spec)
        self.tokenizer = tokenizer
        self.model = model
        tokenizer.padding_side = "left"
        if tokenizer.pad_token_id is None:
            tokenizer.pad_token = tokenizer.eos_token
        eos = model.generation_config.eos_token_id
        eos_ids = set(eos if isinstance(eos, list) else [eos]) | {tokenizer.eos_token_id}
        self._end_ids = {i for i in eos_ids if i is not None}

    @classmethod
    def load(cls, spec: ModelSpec) -> TransformersModel:
        """Load from the safetensors cache, converting the GGUF file into it first if needed."""
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        tame_malloc()

        target = cache_dir(spec)
        if not target.is_dir():
            convert_apart(spec, target)
        tokenizer = AutoTokenizer.from_pretrained(target)
        dtype = torch.bfloat16 if spec.bf16 and cpu_has_bf16() else torch.float32
        model = AutoModelForCausalLM.from_pretrained(target, dtype=dtype).eval()
        return cls(spec, tokenizer, model)

    def _encode(self, conversations: Sequence[Messages]) -> Any:
        if self.spec.kind == "chat":
            prompts = [
                self.tokenizer.apply_chat_template(
                    list(m), tokenize=False, add_generation_prompt=True
                )
                for m in conversations
            ]
        else:
            prompts = [base_prompt(m) for m in conversations]
        # A chat template writes its own special tokens; a base prompt needs <bos>.
        return self.tokenizer(
            prompts,
            return_tensors="pt",
            padding=True,
            add_special_tokens=self.spec.kind == "base",
        )

    def generate_batch(
        self,
        conversations: Sequence[Messages],
        max_tokens: int = 256,
        temperature: float = 0.7,
        seed: int | None = None,
    ) -> list[LocalResult]:
        import torch
        from transformers import GenerationConfig

        if not conversations:
            return []
        config = GenerationConfig(
            max_new_tokens=max_tokens,
            do_sample=temperature > 0,
            temperature=temperature if temperature > 0 else None,
            top_k=0 if temperature > 0 else None,
            top_p=1.0 if temperature > 0 else None,
            pad_token_id=self.tokenizer.pad_token_id,
            eos_token_id=sorted(self._end_ids),
            bos_token_id=self.model.generation_config.bos_token_id,
        )
        enc = self._encode(conversations)
        prompt_len = enc["input_ids"].shape[1]
        stops = _stops(self.tokenizer, prompt_len, self.spec.kind == "base")
        with _GENERATE_LOCK, torch.inference_mode():
            if seed is not None:
                torch.manual_seed(seed)
            out = self.model.generate(**enc, generation_config=config, stopping_criteria=[stops])
            self.batch_sizes.append(len(conversations))
        end_ids = self._end_ids | {self.tokenizer.pad_token_id}
        results = []
        for row, mask in zip(out, enc["attention_mask"], strict=True):
            generated = row[prompt_len:].tolist()
            ended = next((i for i, t in enumerate(generated) if t in end_ids), None)
            n = len(generated) if ended is None else ended
            text = self.tokenizer.decode(generated[:n], skip_special_tokens=True)
            stopped = ended is not None
            if self.spec.kind == "base":
                text, cut = _cut_at_stop(text)
                stopped = stopped or cut
            stopped = stopped and not is_looping(text)  # a loop never finished
            results.append(
                LocalResult(
                    text=text.strip(),
                    finish_reason="stop" if stopped else "length",
                    prompt_tokens=int(mask.sum()),
                    completion_tokens=n + (ended is not None),
                )
            )
        return results

    def option_probs(
        self, conversations: Sequence[Messages], options: Sequence[str] = ("Yes", "No")
    ) -> list[dict[str, float]]:
        import torch

        if not conversations:
            return []
        # After "Answer:" a base model writes " Yes"; after a chat header, "Yes".
        prefix = " " if self.spec.kind == "base" else ""
        ids = [self.tokenizer.encode(prefix + o, add_special_tokens=False)[0] for o in options]
        enc = self._encode(conversations)
        # Left padding: positions must start at each row's first real token.
        positions = (enc["attention_mask"].cumsum(-1) - 1).clamp(min=0)
        with _GENERATE_LOCK, torch.inference_mode():
            # logits_to_keep=1: the last position's logits only, not batch × length × vocab
            # floats (~630 MB for 8 judged answers of 400 tokens with SmolLM2's vocabulary).
            logits = self.model(
                **enc, position_ids=positions, use_cache=False, logits_to_keep=1
            ).logits[:, -1, :]
        probs = torch.softmax(logits[:, ids].float(), dim=-1)
        return [dict(zip(options, row.tolist(), strict=True)) for row in probs]


def convert(spec: ModelSpec, target: Path) -> None:
    """Dequantise ``spec``'s verified GGUF file into a safetensors dir at ``target``: fp32,
    or bf16 for a model that runs in bf16 (``spec.bf16``: Gemma, trained in bf16; on a
    CPU without bf16 it is loaded back into fp32).

    The dir is written under a temporary name and renamed into place, so a killed
    conversion never leaves a half-written cache.
    """
    convert_file(gguf_path(spec), target, _stored_dtype(spec))


def _stored_dtype(spec: ModelSpec) -> str:
    return "bfloat16" if spec.bf16 else "float32"


def convert_apart(spec: ModelSpec, target: Path) -> None:
    """``convert`` in a child process: dequantising holds the GGUF tensors, the fp32
    model and what saving it allocates at once (about 1 GB more than the loaded model,
    for Gemma), and a process does not give that memory back. The hash is checked
    here first, so a bad file is the same ``ModelNotAvailable`` as in ``convert``."""
    import subprocess
    import sys

    gguf = gguf_path(spec)
    code = (
        "import sys; from arbitrage.calls.local.backends import convert_file as c; c(*sys.argv[1:])"
    )
    done = subprocess.run(
        [sys.executable, "-c", code, str(gguf), str(target), _stored_dtype(spec)],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["no output"])[-1]
        raise ModelNotAvailable(f"local model {spec.name!r}: converting {gguf} failed: {last}")


def convert_file(gguf: Path | str, target: Path | str, dtype: str = "float32") -> None:
    """``convert`` from a verified GGUF file, storing the weights as ``dtype``."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tame_malloc()
    gguf, target = Path(gguf), Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        tmp.chmod(0o755)  # mkdtemp makes it private; a cache is not
        # the model, then the tokenizer: building Gemma's 262k-token vocabulary from GGUF
        # takes hundreds of MB of its own, so the two never peak together
        with _one_gguf_parse():
            model = AutoModelForCausalLM.from_pretrained(
                gguf.parent, gguf_file=gguf.name, dtype=getattr(torch, dtype)
            )
            # transformers refuses to save a model loaded from GGUF ("not serializable")
            # because it still carries the GGUF quantizer; the weights are already plain
            # floats, so dropping the quantizer and its config entry gives an ordinary model.
            model.hf_quantizer = None  # type: ignore[assignment]
            if hasattr(model.config, "quantization_config"):
                del model.config.quantization_config
            model.save_pretrained(tmp)
            del model
            gc.collect()
            AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name).save_pretrained(tmp)
        try:
            os.rename(tmp, target)
        except OSError:
            if not target.is_dir():  # not another process finishing first: a real failure
                raise
            shutil.rmtree(tmp, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


@contextlib.contextmanager
def _one_gguf_parse() -> Iterator[None]:
    """Let transformers parse a GGUF file once while converting it, not three times, and
    over a plain array, not a ``numpy.memmap``.

    Loading the config, the weights and the tokenizer each build a ``gguf.GGUFReader``
    of the same file (``from gguf import GGUFReader`` at each call), and building one
    parses every metadata field in Python: on a busy 2-core machine SmolLM2 (a 49k-token
    vocabulary) converted in 26 s instead of 39, Gemma (262k) in 76 s instead of 152.
    Within this block a file's reader is built once and shared (it only reads the file).

    The reader slices its file a field at a time, several times per token of the
    vocabulary, and transformers then reads each token's bytes one by one: on a
    ``numpy.memmap`` every slice and every element goes through memmap's Python-level
    ``__getitem__`` and ``__array_finalize__`` (12.8M and 4.9M calls, 27 of Gemma's 92
    profiled seconds). The reader here maps the file the same way but keeps a plain
    array view of the map (``numpy.asarray``: the same bytes, no copy, the map kept open
    by the view). The converted files are byte for byte the same, at the same peak memory.
    """
    import gguf as gguf_lib
    from gguf import gguf_reader

    original = gguf_lib.GGUFReader
    readers: dict[tuple[str, str], Any] = {}

    def shared(path: os.PathLike[str] | str, mode: str = "r") -> Any:
        key = (os.fspath(path), mode)
        if key not in readers:
            plain = _PlainMaps() if mode == "r" else gguf_reader.np
            numpy, gguf_reader.np = gguf_reader.np, plain  # type: ignore[assignment]
            try:
                readers[key] = original(path, mode)  # type: ignore[arg-type]
            finally:
                gguf_reader.np = numpy
        return readers[key]

    gguf_lib.GGUFReader = shared  # type: ignore[assignment, misc]
    try:
        yield
    finally:
        gguf_lib.GGUFReader = original  # type: ignore[misc]


class _PlainMaps:
    """``numpy`` for ``gguf.gguf_reader``, except that ``memmap`` gives a plain read-only
    array view of the map (``_one_gguf_parse``)."""

    def __getattr__(self, name: str) -> Any:
        import numpy

        return getattr(numpy, name)

    @staticmethod
    def memmap(*args: Any, **kwargs: Any) -> Any:
        import numpy

        return numpy.asarray(numpy.memmap(*args, **kwargs))


class LlamaCppModel(LocalModel):
    """A bundled model in llama-cpp-python, straight from the GGUF file (no batching)."""

    def __init__(self, spec: ModelSpec, n_ctx: int = 4096) -> None:
        super().__init__(spec)
        from llama_cpp import Llama

        self.llm = Llama(model_path=str(gguf_path(spec)), n_ctx=n_ctx, verbose=False)
        self._lock = threading.Lock()

    def generate_batch(
        self,
        conversations: Sequence[Messages],
        max_tokens: int = 256,
        temperature: float = 0.7,
        seed: int | None = None,
    ) -> list[LocalResult]:
        results = []
        with self._lock:
            self.batch_sizes.append(len(conversations))
            for messages in conversations:
                params: dict[str, Any] = {"max_tokens": max_tokens, "temperature": temperature}
                if seed is not None:
                    params["seed"] = seed
                if self.spec.kind == "chat":
                    reply = self.llm.create_chat_completion(messages=list(messages), **params)
                    text = reply["choices"][0]["message"]["content"] or ""
                else:
                    prompt = base_prompt(messages)
                    reply = self.llm.create_completion(prompt, stop=list(BASE_STOPS), **params)
                    text = reply["choices"][0]["text"]
                usage = reply["usage"]
                finish: Literal["stop", "length"] = (
                    "length" if reply["choices"][0]["finish_reason"] == "length" else "stop"
                )
                results.append(
                    LocalResult(
                        text.strip(), finish, usage["prompt_tokens"], usage["completion_tokens"]
                    )
                )
        return results

    def option_probs(
        self, conversations: Sequence[Messages], options: Sequence[str] = ("Yes", "No")
    ) -> list[dict[str, float]]:
        import math

        results = []
        with self._lock:
            for messages in conversations:
                if self.spec.kind == "chat":
                    reply = self.llm.create_chat_completion(
                        messages=list(messages),
                        max_tokens=1,
                        temperature=0.0,
                        logprobs=True,
                        top_logprobs=20,
                    )
                    top = reply["choices"][0]["logprobs"]["content"][0]["top_logprobs"]
                    pairs = [(t["token"], t["logprob"]) for t in top]
                else:
                    reply = self.llm.create_completion(
                        base_prompt(messages), max_tokens=1, temperature=0.0, logprobs=20
                    )
                    pairs = list(reply["choices"][0]["logprobs"]["top_logprobs"][0].items())
                scores = dict.fromkeys(options, 0.0)
                for token, logprob in pairs:
                    if token.strip() in scores:
                        scores[token.strip()] += math.exp(logprob)
                results.append(_normalise(scores))
        return results


_MODELS: dict[str, LocalModel] = {}
_LOAD_LOCK = threading.Lock()


_M_MMAP_THRESHOLD, _M_ARENA_MAX = -3, -8  # glibc's mallopt parameters (malloc.h)


def tame_malloc() -> None:
    """Keep glibc from holding on to memory the models' tensors freed.

    Generation runs in worker threads; each gets a malloc arena of its own, and glibc
    raises its mmap threshold after every large free, so activation buffers end up in
    arenas that are never given back (the embedded default grew past 3 GB that way).
    Two arenas, and every allocation of 1 MiB or more in its own mapping (returned on
    free), keep the process near what the models weigh. A no-op off glibc."""
    import ctypes
    import ctypes.util

    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name) if name else None
        mallopt = getattr(libc, "mallopt", None)
    except OSError:
        return
    if mallopt is not None:
        mallopt(_M_ARENA_MAX, 2)
        mallopt(_M_MMAP_THRESHOLD, 1 << 20)


def get_model(name: str) -> LocalModel:
    """The loaded model called ``name``, loaded once per process (thread-safe).

    Raises:
        ModelNotAvailable: unknown name, package not installed, or a hash mismatch.
    """
    model = _MODELS.get(name)
    if model is not None:
        return model
    with _LOAD_LOCK:
        if name not in _MODELS:
            _MODELS[name] = load_backend(get_spec(name))
        return _MODELS[name]


def load_backend(spec: ModelSpec) -> LocalModel:
    """Load ``spec`` with the backend chosen by ``ARBITRAGE_LOCAL_BACKEND``.

    ``auto`` (the default) uses llama-cpp-python when it is importable, else
    transformers; ``transformers`` and ``llama_cpp`` force one.
    """
    choice = os.environ.get("ARBITRAGE_LOCAL_BACKEND", "auto")
    if choice not in ("auto", "transformers", "llama_cpp"):
        raise ConfigError(
            f"ARBITRAGE_LOCAL_BACKEND must be auto, transformers or llama_cpp, got {choice!r}"
        )
    has_llama_cpp = importlib.util.find_spec("llama_cpp") is not None
    if choice == "llama_cpp" and not has_llama_cpp:
        raise ModelNotAvailable(
            'ARBITRAGE_LOCAL_BACKEND=llama_cpp needs: pip install "data-arbitrage[llamacpp]"'
        )
    if choice == "llama_cpp" or (choice == "auto" and has_llama_cpp):
        return LlamaCppModel(spec)
    return TransformersModel.load(spec)
