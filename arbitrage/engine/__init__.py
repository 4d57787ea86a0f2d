"""The teacher engine: what stands between a ``Teacher`` and the network.

    cache.py    durable call cache (SQLite): a call that returned is never paid for twice
    limits.py   per-teacher rate limits, adaptive (AIMD) concurrency, Retry-After
    breaker.py  circuit breaker: a teacher that keeps failing is taken out of rotation
    budget.py   prices, spend accounting and the ``budget_usd`` stop
    estimate.py pre-run cost estimates (``arbitrage estimate``)
    retry.py    ``arbitrage retry-failed``: re-request only the failed calls
    transport.py ``transport: direct``: an aiohttp client for OpenAI-compatible servers

Each piece is independent and per teacher (except the cache and the budget, which a
run shares), so one slow or dead teacher never blocks the others.
"""

from arbitrage.engine.breaker import BreakerEvent, CircuitBreaker
from arbitrage.engine.budget import Budget
from arbitrage.engine.cache import CallCache, request_key
from arbitrage.engine.limits import TeacherLimits

__all__ = [
    "BreakerEvent",
    "Budget",
    "CallCache",
    "CircuitBreaker",
    "TeacherLimits",
    "request_key",
]
