"""Outputs: where files are written, and what goes in them.

    mixture.py       the SFT mixture: winners that pass the filters, balanced by quotas
    kept.py          what the mixture keeps of a row while it works (RowMeta, by column)
    tables.py        HF datasets built a batch of rows at a time (SFT rows, DPO pairs)
    filters.py       the mixture's row filters: answer checks, language, near-duplicates
    decontam.py      drops rows that share an n-gram with an eval set
    preference.py    DPO pairs: a prompt's best vs worst answer
    report.py        the run summary (who won where, what it cost) and its tables
    report_files.py  report.json, figures/*.png and report.html
    plots.py         the report's figures
    browser.py       report.html's sample browser (data/browser.js, data/browser.css)
    card.py          the dataset card (README.md) and publishing to the Hub

Every part reads a run's outcomes in passes and keeps counters and short values,
never the outcomes (``arbitrage/run_outcomes.py`` reads them from disk at each pass).
The run directory itself (which file is where) is ``arbitrage/rundir.py``.
"""
