"""``samples: k`` in one request (litellm's ``n``) against one call a sample.

    python benchmarks/samples_n.py [--prompts 200] [--samples 4] [--median-ms 50]
        [--transports litellm direct]

One teacher (``max_concurrency`` 64, no cache) answers ``--prompts`` prompts with
``--samples`` samples each, on the loopback OpenAI-compatible server (its own process,
``--median-ms`` latency; it counts 5 prompt tokens and 3 completion tokens an answer),
with ``samples_via: n`` and ``samples_via: calls``. Printed per transport and way:
requests the server saw, prompt tokens billed, the run's cost at $1 / $2 per million
tokens, wall seconds and this process's CPU milliseconds per prompt.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import time

from loopback import loopback_server, server_stats

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
os.environ.setdefault("BENCH_KEY", "sk-bench-0123456789")


async def _run(url: str, transport: str, via: str, prompts: int, samples: int) -> dict[str, float]:
    from arbitrage.calls.teachers import Teacher
    from arbitrage.config import TeacherConfig
    from arbitrage.records import Prompt

    config = TeacherConfig(
        name="t",
        model="openai/t",
        api_base=url,
        api_key_env="BENCH_KEY",
        transport=transport,
        samples=samples,
        samples_via=via,
        temperature=0.8,
        max_concurrency=64,
        input_cost_per_mtok=1.0,
        output_cost_per_mtok=2.0,
    )
    teacher = Teacher(config)
    pool = [
        Prompt(text=f"Question {i}: name a river.", language="en", task="open_qa")
        for i in range(prompts)
    ]
    wall, cpu = time.perf_counter(), time.process_time()
    got = await asyncio.gather(*(teacher.asample(p) for p in pool))
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    gens = [g for row in got for g in row]
    assert len(gens) == prompts * samples and all(g.ok for g in gens), "a sample failed"
    return {
        "answers": len(gens),
        "prompt_tokens": sum(g.usage.prompt_tokens for g in gens),
        "usd": sum(g.cost_usd for g in gens),
        "wall_s": wall,
        "cpu_ms_per_prompt": 1000 * cpu / prompts,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--prompts", type=int, default=200)
    parser.add_argument("--samples", type=int, default=4)
    parser.add_argument("--median-ms", type=float, default=50.0)
    parser.add_argument("--transports", nargs="+", default=["litellm", "direct"])
    args = parser.parse_args()
    print(f"{args.prompts} prompts × {args.samples} samples, {args.median_ms:g} ms a request")
    print(
        f"{'transport':<9} {'via':<6} {'requests':>8} {'answers':>7} {'prompt tok':>10} "
        f"{'usd':>9} {'wall s':>7} {'cpu ms/prompt':>13}"
    )
    with loopback_server(args.median_ms) as url:
        for transport in args.transports:
            for via in ("n", "calls"):
                server_stats(url, reset=True)
                row = asyncio.run(_run(url, transport, via, args.prompts, args.samples))
                requests = int(server_stats(url).get("t", {}).get("requests", 0))
                print(
                    f"{transport:<9} {via:<6} {requests:>8} {row['answers']:>7} "
                    f"{row['prompt_tokens']:>10} {row['usd']:>9.6f} {row['wall_s']:>7.2f} "
                    f"{row['cpu_ms_per_prompt']:>13.2f}"
                )


if __name__ == "__main__":
    main()
