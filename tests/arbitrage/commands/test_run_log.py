"""What ``arbitrage run`` writes to a log (stderr not a terminal): the banner, laid out
for 80 columns, and a plain progress line every few seconds instead of a redrawn bar."""

import io
import os
import re
import subprocess
import sys
from pathlib import Path

import yaml
from rich.console import Console
from rich.progress import Progress
from stub_server import Reply, stub_config

from arbitrage.calls.client import CallStats
from arbitrage.commands.run_log import ProgressLog, banner_lines
from arbitrage.config import parse_config

LINE = re.compile(
    r"^progress: (\d+)/24 prompts \((\d+)%\), [\d.]+ calls/s, (\d+) with a winner, "
    r"\$[\d.]+, ETA (\S+)(; writing the dataset and the report)?$"
)


def render(lines, terminal):
    buf = io.StringIO()
    console = Console(file=buf, width=80, force_terminal=terminal, color_system=None)
    for line in lines:
        console.print(line, markup=False, highlight=False, soft_wrap=True)
    return buf.getvalue().splitlines()


def test_banner_has_one_teacher_per_line_in_80_columns(tmp_path):
    config = parse_config(
        {
            "out": str(tmp_path / "run"),
            "teachers": [
                {"name": "smollm2", "model": "local/smollm2-135m-instruct"},
                {"name": "gemma3", "model": "local/gemma-3-270m"},
                {"name": "claude", "model": "anthropic/claude-haiku-4-5"},
            ],
            "reward": {"kind": "local"},
        }
    )
    lines = banner_lines(config, "9.9")
    for terminal in (False, True):
        shown = render(lines, terminal)
        assert shown == [
            "data-arbitrage 9.9: reward local, router learned",
            "  teacher smollm2  local/smollm2-135m-instruct",
            "  teacher gemma3   local/gemma-3-270m",
            "  teacher claude   anthropic/claude-haiku-4-5",
        ]


class Caller:
    def __init__(self):
        self.stats = CallStats()


def test_progress_line_counts_calls_per_second_kept_rows_dollars_and_eta():
    now = [100.0]
    progress = Progress(disable=True)
    callers = [Caller(), Caller()]
    log = ProgressLog(progress, lambda: callers, print, interval_s=30, clock=lambda: now[0])
    assert log.line() == "progress: 0/0 prompts, 0.0 calls/s, 0 with a winner, $0.0000, ETA ?"
    bar = progress.add_task("prompts", total=100, completed=20, kept=15)  # 20 resumed
    log._seen = (now[0], 20)
    now[0] += 30
    progress.update(bar, advance=30, kept=40)
    callers[0].stats.requests, callers[1].stats.cached = 45, 15
    callers[0].stats.cost_usd = 0.25
    # 60 calls in 30 s; 30 prompts in 30 s leaves 50 prompts: 50 s
    assert log.line() == (
        "progress: 50/100 prompts (50%), 2.0 calls/s, 40 with a winner, $0.2500, ETA 50s"
    )


def test_a_logged_run_prints_periodic_plain_lines(tmp_path, stub_server, monkeypatch):
    for name in ("alpha", "beta"):
        stub_server.set_handler(name, lambda m, name=name: Reply(f"{name} answers", delay_s=0.15))
    stub_server.set_handler("judge", lambda m: "Score: 7")
    config = stub_config(str(tmp_path / "run"), stub_server.url, batch_size=4)
    # One call at a time per teacher: 24 answers of 0.15 s each take 3.6 s, so several
    # 0.4 s lines fall inside the run however fast the rest of it goes.
    for teacher in config["teachers"]:
        teacher["max_concurrency"] = 1
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    log = tmp_path / "run.log"
    env = {**os.environ, "STUB_KEY": "sk-test", "COLUMNS": "80"}
    root = Path(__file__).resolve().parents[3]
    with log.open("w") as fh:
        done = subprocess.run(
            [sys.executable, "-m", "arbitrage", "run", str(path), "--progress-every", "0.4"],
            stdout=fh,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=root,
            timeout=240,
            check=False,
        )
    text = log.read_text()
    assert done.returncode == 0, text
    assert "\r" not in text and "\x1b[" not in text  # no redrawn bar, no colour codes
    head = text.splitlines()[:3]
    assert head[0].startswith("data-arbitrage ") and "router reward" in head[0]
    assert head[1].split() == ["teacher", "alpha", "openai/alpha"]
    assert head[2].split() == ["teacher", "beta", "openai/beta"]
    progress = [m for m in map(LINE.match, text.splitlines()) if m]
    assert len(progress) >= 3, text  # periodic, plus the last one
    done_counts = [int(m.group(1)) for m in progress]
    assert done_counts == sorted(done_counts) and done_counts[-1] == 24
    assert progress[-1].group(2) == "100" and progress[-1].group(4) == "0s"
    assert progress[-1].group(5) and sum(m.group(2) == "100" for m in progress) == 1
    assert int(progress[-1].group(3)) == 24  # every prompt has a winner
    assert any(0 < n < 24 for n in done_counts)  # a line while the run was going
    assert max(len(line) for line in text.splitlines()[:3]) <= 80
