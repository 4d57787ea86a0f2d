"""A real (if tiny) installed distribution declaring one entry point, for plugin tests.

    with installed_plugin(tmp_path, monkeypatch, "arbitrage.routers", "last", SOURCE,
                          attr="LastTeacher") as ref:
        ...

writes ``<module>.py`` (``SOURCE``) and a ``.dist-info`` with ``entry_points.txt`` on a
path put first on ``sys.path``, so ``importlib.metadata`` finds it as it finds any
installed package; the module is forgotten again on leaving the block.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest


@contextlib.contextmanager
def installed_plugin(
    root: Path,
    monkeypatch: pytest.MonkeyPatch,
    group: str,
    name: str,
    source: str,
    *,
    attr: str,
    module: str = "arb_plugin",
) -> Iterator[str]:
    """Install the plugin for the block; yields its entry point's value (``"module:attr"``)."""
    (root / f"{module}.py").write_text(source)
    dist = root / f"{module}-0.1.dist-info"
    dist.mkdir()
    package = module.replace("_", "-")
    (dist / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {package}\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text(f"[{group}]\n{name} = {module}:{attr}\n")
    monkeypatch.syspath_prepend(str(root))
    try:
        yield f"{module}:{attr}"
    finally:
        sys.modules.pop(module, None)
