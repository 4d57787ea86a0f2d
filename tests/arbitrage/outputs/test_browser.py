"""The report's sample browser, in a real headless Chromium (Debian's ``chromium``;
``.ci/run`` installs it), over a stub-server run: what a person reading samples sees."""

import json
import os
import shutil
import subprocess
import sys

import pytest
from stub_server import copy_run, run_stub_once

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
QUALITY = {"alpha": {"en": 4, "fr": 9}, "beta": {"en": 9, "fr": 4}}


def judge(messages):
    text = messages[-1]["content"]
    answer = text.split("[Answer]")[1]
    if "I'm sorry" in answer:
        return "Score: 10"  # the mixture drops it as a refusal
    lang = "fr" if "The user's language: fr" in text else "en"
    return f"Score: {QUALITY['alpha' if 'ALPHA' in answer else 'beta'][lang]}"


def teacher(name):
    def answer(messages):
        prompt = messages[-1]["content"]
        if name == "alpha" and len(prompt) % 4 == 0:
            return "I'm sorry, but I can't help with that."
        return f"{name.upper()} <b>answers</b>: " + prompt[:60]  # markup must show as text

    return answer


@pytest.fixture(scope="module")
def made_run(_stub_server_session, tmp_path_factory):
    """The module's one stub-server run (its config's path); each test has a copy."""
    handlers = {name: teacher(name) for name in QUALITY} | {"judge": judge}
    return run_stub_once(_stub_server_session, tmp_path_factory.mktemp("browser-run"), handlers)


@pytest.fixture
def run_dir(made_run, tmp_path, monkeypatch):
    monkeypatch.setenv("STUB_KEY", "sk-test")
    return copy_run(made_run, tmp_path)


@pytest.fixture
def page():
    sync_api = pytest.importorskip("playwright.sync_api", reason="pip install -e '.[dev]'")
    if CHROMIUM is None:
        pytest.skip("no chromium on PATH (apt-get install chromium; .ci/run installs it)")
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1200, "height": 900})
        page.errors = []
        page.on("console", lambda m: m.type == "error" and page.errors.append(m.text))
        page.on("pageerror", lambda e: page.errors.append(str(e)))
        yield page
        browser.close()


def rows(page):
    return page.locator("#sb-list tbody tr")


def test_sample_browser_shows_candidates_and_filters(run_dir, page, tmp_path):
    outcomes = [json.loads(line) for line in (run_dir / "outcomes.jsonl").open()]
    dropped = [json.loads(line) for line in (run_dir / "dropped.jsonl").open()]
    refusals = sum(d["reason"] == "refusal" for d in dropped)
    assert refusals > 0
    page.goto((run_dir / "report.html").as_uri())
    page.wait_for_function("document.getElementById('sb-count').textContent.includes(' of ')")
    assert page.text_content("#sb-count") == "24 of 24 prompts"
    assert rows(page).count() == 24

    # The first prompt is opened: every candidate side by side, the winner starred,
    # the reward and its parts, the answer shown as text (not as HTML).
    first = outcomes[0]
    cards = page.locator(".sb-cand")
    cards.first.wait_for()
    assert cards.count() == len(first["candidates"]) == 2
    for cand in first["candidates"]:
        card = page.locator(f".sb-cand[data-teacher='{cand['generation']['teacher']}']")
        assert card.locator(".answer").text_content() == cand["generation"]["text"]
        assert "<b>" in cand["generation"]["text"] or "sorry" in cand["generation"]["text"]
        assert card.locator("b").count() == 0
        parts = card.locator(".sb-parts").text_content()
        assert f"reward{round(cand['reward'], 3):g}" in parts.replace(".0", "")
        for key in cand["reward_details"]:
            assert key in parts
    winner = page.locator(".sb-cand.win .name").text_content()
    assert winner == "★ " + first["winner"]

    # Another prompt, clicked: its text and its own candidates.
    rows(page).nth(3).click()
    page.wait_for_function(
        "t => document.querySelector('.sb-prompt .text').textContent === t",
        arg=outcomes[3]["prompt"]["text"],
    )

    # Filters change the rows shown.
    page.select_option("#sb-language", label="fr")
    assert rows(page).count() == 12
    assert set(rows(page).locator("td:nth-child(2)").all_text_contents()) == {"fr"}
    page.select_option("#sb-language", label="language: all")
    page.select_option("#sb-reason", label="dropped: refusal")
    assert rows(page).count() == refusals
    assert page.locator(".sb-prompt .dropped").text_content() == "row dropped: refusal"
    page.select_option("#sb-reason", label="row: all")
    page.select_option("#sb-winner", label="beta")
    beta_wins = sum(o["winner"] == "beta" for o in outcomes)
    assert 0 < rows(page).count() == beta_wins
    page.select_option("#sb-winner", label="winner: all")

    # Search narrows to the prompts holding the words.
    word = outcomes[5]["prompt"]["text"].split()[3]
    page.fill("#sb-search", word)
    expected = sum(word.lower() in o["prompt"]["text"].lower() for o in outcomes)
    page.wait_for_function(f"document.querySelectorAll('#sb-list tbody tr').length === {expected}")
    assert 0 < expected < 24
    page.fill("#sb-search", "")

    # A heatmap cell links to its prompts: French prompts alpha answered.
    page.locator("table.heat a[href*='language=fr'][href*='teacher=alpha']").click()
    page.wait_for_function("document.getElementById('sb-count').textContent.startsWith('12 of')")
    assert page.input_value("#sb-language") == "1"  # languages sorted: en, fr

    page.screenshot(path=str(tmp_path / "browser.png"), full_page=True)
    assert page.errors == []


def test_sample_browser_pages_and_loads_chunks_lazily(run_dir, page, monkeypatch):
    from arbitrage.outputs import browser
    from arbitrage.outputs.report_files import report_run
    from arbitrage.rundir import load_run

    monkeypatch.setattr(browser, "CHUNK", 5)  # 24 prompts: 5 chunks
    config, outcomes = load_run(run_dir)
    report_run(run_dir, config, outcomes)
    assert sorted(p.name for p in (run_dir / "samples").iterdir()) == [
        "c00000.js",
        "c00001.js",
        "c00002.js",
        "c00003.js",
        "c00004.js",
        "index.js",
    ]
    page.goto((run_dir / "report.html").as_uri())
    page.locator(".sb-cand").first.wait_for()
    scripts = "Array.from(document.scripts).map(s => s.src.split('/').pop()).filter(Boolean)"
    assert page.evaluate(scripts) == ["index.js", "c00000.js"]
    rows(page).nth(22).click()
    page.wait_for_function(
        "t => document.querySelector('.sb-prompt .text').textContent === t",
        arg=outcomes[22].prompt.text,
    )
    assert page.evaluate(scripts) == ["index.js", "c00000.js", "c00004.js"]
    assert page.errors == []


def test_report_open_hands_the_page_to_the_web_browser(run_dir, tmp_path):
    # $BROWSER is the standard way to name the browser; this one writes down what it got.
    opened = tmp_path / "opened.txt"
    fake = tmp_path / "browser.py"
    fake.write_text(f"import sys; open({str(opened)!r}, 'w').write(sys.argv[1])\n")
    env = {**os.environ, "BROWSER": f"{sys.executable} {fake} %s"}
    done = subprocess.run(
        [sys.executable, "-m", "arbitrage", "report", str(run_dir), "--open"],
        capture_output=True,
        text=True,
        env=env,
        timeout=240,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert opened.read_text() == (run_dir / "report.html").resolve().as_uri()
