"""data-arbitrage: route each prompt to the teacher most likely to answer it best.

    from arbitrage import Arbitrage, Teacher, build_prompts
    from reward import get_reward
    from routers import get_router

Names are imported on first use, so ``import arbitrage`` stays fast.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_EXPORTS = {
    "Arbitrage": "arbitrage.pipeline",
    "RunResult": "arbitrage.pipeline",
    "Teacher": "arbitrage.calls.teachers",
    "RunConfig": "arbitrage.config",
    "TeacherConfig": "arbitrage.config",
    "PoolConfig": "arbitrage.config",
    "load_config": "arbitrage.config",
    "parse_config": "arbitrage.config",
    "default_config": "arbitrage.config",
    "load_personas": "arbitrage.prompts.personas",
    "build_prompts": "arbitrage.api",
    "abuild_prompts": "arbitrage.api",
    "run_config": "arbitrage.commands.run",
    "arun_config": "arbitrage.commands.run",
    "build_mixture": "arbitrage.outputs.mixture",
    "save_mixture": "arbitrage.outputs.mixture",
    "Persona": "arbitrage.records",
    "Prompt": "arbitrage.records",
    "Generation": "arbitrage.records",
    "Candidate": "arbitrage.records",
    "Outcome": "arbitrage.records",
}

__all__ = ["__version__", *_EXPORTS]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'arbitrage' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
