"""Commands: the ``arbitrage`` CLI and what each of its commands runs.

    cli.py           argument parsing, one clear error line and exit 2 on bad input
    run.py           ``arbitrage run``: one run's lifecycle on either engine (lock, pool,
                     executor, the loop, outputs)
    live.py          the live panel on a terminal;  run_log.py  the banner and log lines
    estimate.py      ``arbitrage estimate``: what a run will cost (no call is made)
    retry_failed.py  ``arbitrage retry-failed``
    evaluate.py      replay a scored run under any router (no new calls)
    router_eval.py   ``arbitrage eval-routers`` and ``train-router``
    reward_eval.py   ``arbitrage eval-reward``

Nothing below this package imports it (tests/test_import_graph.py).
"""
