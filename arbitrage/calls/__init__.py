"""Calls: where a prompt meets a teacher, and everything between an LLM caller
(teacher, prompt writer, judge) and the network.

    teachers.py  a teacher: a litellm model string plus its call parameters
    client.py    the one call path: cache, budget, breaker, limits, retries, timeout, send
    send.py      its send step (litellm, the direct transport, a given function)
    llm.py       the one place litellm is imported and set up
    transport.py ``transport: direct``: an aiohttp client for OpenAI-compatible servers
    batch.py     ``mode: batch``: the send step over the providers' batch endpoints
                 (batch_api.py speaks them)
    cache.py     durable call cache (SQLite): a call that returned is never paid for twice
    limits.py    per-model rate limits, adaptive (AIMD) concurrency, Retry-After
    breaker.py   circuit breaker: a model that keeps failing is taken out of rotation
    budget.py    prices, spend accounting and the ``budget_usd`` stop
    local/       the bundled offline models, served in-process as the provider ``local/``

Each piece is independent and per model (except the cache and the budget, which a
run shares), so one slow or dead teacher never blocks the others.
"""
