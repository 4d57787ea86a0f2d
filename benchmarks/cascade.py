"""CPU of the cascade's decisions: one expected-gain call, one outcome replayed, one learned.

    python benchmarks/cascade.py [--router bandit] [--outcomes 1500] [--repeat 3]

The router (``bandit`` or ``content``) over three teachers learns ``--outcomes``
outcomes of synthetic prompts (seeded random rewards on 1-10; one, two or three
answers each), so its pair histories are full (``routers.cascade.WINDOW``). Printed,
best of ``--repeat``, in milliseconds:

* ``gain``: the expected gain of a second opinion for a prompt not seen before
  (``CascadeRouter.gain``, what ``escalate`` computes for every first answer);
* ``replay``: one outcome relearned as a resumed run, or the resume checkpoint's
  shadow, relearns it (``replay``: a gain, then an update);
* ``update``: one outcome learned as the loop commits it.

The rewards are random: this measures the code's CPU, not a router's quality.
"""

from __future__ import annotations

import argparse
import random
import time

from arbitrage.records import Candidate, Generation, Outcome, Prompt
from routers import get_router

TEACHERS = ("t1", "t2", "t3")


def _outcomes(n: int, seed: int = 0) -> list[Outcome]:
    rng = random.Random(seed)
    tasks = ("open_qa", "coding", "math")
    rows = []
    for i in range(n):
        prompt = Prompt(text=f"question {i}", language="en", task=tasks[i % 3], id=f"p{i}")
        asked = rng.sample(TEACHERS, rng.choice((1, 2, 2, 3)))
        rows.append(
            Outcome(
                prompt,
                [
                    Candidate(
                        Generation(prompt_id=prompt.id, teacher=t, model=t, text="an answer"),
                        reward=1.0 + 9.0 * rng.random(),
                    )
                    for t in asked
                ],
            )
        )
    return rows


def _best(fn, repeat: int) -> float:  # type: ignore[no-untyped-def]
    times = []
    for _ in range(repeat):
        start = time.process_time()
        fn()
        times.append(time.process_time() - start)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--router", default="bandit", choices=["bandit", "content"])
    parser.add_argument("--outcomes", type=int, default=1500)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()

    outcomes = _outcomes(args.outcomes)
    learned, fresh = outcomes[: args.outcomes * 4 // 5], outcomes[args.outcomes * 4 // 5 :]
    firsts = [Outcome(o.prompt, o.candidates[:1]) for o in fresh]

    def gains() -> float:
        """CPU seconds of the gains of ``firsts`` (but the first) after learning ``learned``."""
        router = get_router(args.router, list(TEACHERS))
        router.update(learned)
        router.gain(firsts[0])  # the fit and the arrays, built once after the update
        start = time.process_time()
        for outcome in firsts[1:]:
            router.gain(outcome)
        return time.process_time() - start

    best_gain = min(gains() for _ in range(args.repeat))
    replay = _best(lambda: get_router(args.router, list(TEACHERS)).replay(learned), args.repeat)
    update = _best(lambda: get_router(args.router, list(TEACHERS)).update(learned), args.repeat)

    print(f"\n{args.router}: {len(learned)} outcomes learned, 3 teachers, best of {args.repeat}\n")
    print(f"{'step':<8} {'ms':>8}")
    print(f"{'gain':<8} {1000 * best_gain / (len(firsts) - 1):>8.3f}")
    print(f"{'replay':<8} {1000 * replay / len(learned):>8.3f}")
    print(f"{'update':<8} {1000 * update / len(learned):>8.3f}")


if __name__ == "__main__":
    main()
