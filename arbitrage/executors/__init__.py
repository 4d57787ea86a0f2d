"""Executors: who makes a run's calls, under the same loop and the same lifecycle.

    local.py   the ``Executor`` interface, and ``LocalExecutor``: every call in this process
    ray/       ``engine: ray``: ``RayExecutor``, the calls on Ray actors (docs/cluster.md)

Both feed the one loop (``arbitrage/pipeline.py``) in the same window order.
"""
