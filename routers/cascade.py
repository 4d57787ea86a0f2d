"""The budgeted cascade both online routers share: one answer first, a second opinion where it pays.

A prompt goes to the teacher predicted best for it. Once that answer is scored,
the router asks whether another teacher's answer is worth a generation: the
*expected gain* E[max(0, R_b - best so far)] of asking teacher ``b``, under a
predictive distribution learned from the run itself:

* ``R_b = mean_b(prompt) + beta * residual_so_far + u``: teachers' rewards on one
  prompt are correlated (a hard prompt is hard for everyone), so a first answer
  that scored below its prediction lowers the forecast for the others by
  ``beta`` (fitted by least squares on every prompt where two teachers answered);
* ``u`` is drawn from the empirical conditional residuals seen so far, not from a
  Gaussian of an assumed width: rewards on any scale, skewed, bounded or tied
  (two teachers with the same score gain nothing from each other) are handled as
  observed. Predictions are clipped to the range of rewards seen.

A second opinion is bought when its gain is among the best ``p`` of the gains seen,
where ``p`` paces spending to the budget: ``max_generations_per_prompt`` is an
average that the router spends (1.4 means about 1.4), never exceeding it at any
point of the run (a ``warmup`` borrows ahead, see below). Subclasses say how a
teacher's mean reward for a prompt is predicted (``predict``) and learn from what
they observe (``observe``).
"""

from __future__ import annotations

import itertools
import math
from abc import abstractmethod
from collections import deque
from collections.abc import Sequence
from typing import Any

from arbitrage.errors import ConfigError
from arbitrage.records import Outcome, Prompt
from routers.base import ESCALATED, Route, Router

#: The routers built on the cascade, and their default average generations per prompt.
CASCADES = ("bandit", "content")
DEFAULT_BUDGET = 1.5
#: Residuals kept for the predictive distribution (the most recent ones).
WINDOW = 600
#: Fewer residual pairs than this: the gain is unknown, so ask while the budget allows.
MIN_PAIRS = 12


class _History:
    """The most recent ``WINDOW`` reward pairs (a, b) of two teachers on the same prompt,
    with the arrays the gain reads built once after each change, not at every gain."""

    __slots__ = ("_arrays", "a", "b")

    def __init__(self) -> None:
        self.a: deque[float] = deque(maxlen=WINDOW)
        self.b: deque[float] = deque(maxlen=WINDOW)
        self._arrays: tuple[Any, Any] | None = None

    def __len__(self) -> int:
        return len(self.a)

    def append(self, a: float, b: float) -> None:
        self.a.append(a)
        self.b.append(b)
        self._arrays = None

    def arrays(self) -> tuple[Any, Any]:
        if self._arrays is None:
            import numpy as np

            n = len(self.a)
            self._arrays = (np.fromiter(self.a, np.float64, n), np.fromiter(self.b, np.float64, n))
        return self._arrays

    def __getstate__(self) -> tuple[deque[float], deque[float]]:
        return self.a, self.b  # the arrays are rebuilt on demand

    def __setstate__(self, state: tuple[deque[float], deque[float]]) -> None:
        self.a, self.b = state
        self._arrays = None


class CascadeRouter(Router):
    """Base class of ``bandit`` and ``content``: predicted-best first, then value of information.

    Args:
        teachers: Configured teacher names (ties go to the one listed first).
        seed: Seed for Thompson draws of the first choice.
        max_generations_per_prompt: Average generations per prompt to spend, warm-up
            included (1.0 = one teacher per prompt, ``len(teachers)`` = ask everyone).
        warmup: The first prompts go to every teacher, so every teacher is seen on the
            same prompts before the router trusts its estimates (default 0: the cascade
            learns from its second opinions). The only spending ahead of the budget: the
            warm-up borrows what the next ``horizon`` prompts earn (those prompts get no
            second opinion), and never more.
        explore: Scale of the Thompson draw that picks the first teacher (0 = always the
            predicted best; 1 = draws as wide as the estimate's uncertainty).
        horizon: Prompts over which an underspent (or overspent) budget is evened out.
        failure_reward: Reward observed for a truncated, empty or failed answer; default:
            the lowest reward seen so far (so it works on any scale, negative included).
    """

    def __init__(
        self,
        teachers: Sequence[str],
        *,
        seed: int = 0,
        max_generations_per_prompt: float = DEFAULT_BUDGET,
        warmup: int = 0,
        explore: float = 0.0,
        horizon: int = 40,
        failure_reward: float | None = None,
    ) -> None:
        super().__init__(teachers, seed=seed)
        if max_generations_per_prompt < 1.0:
            raise ConfigError(
                f"router {self.name}: max_generations_per_prompt must be >= 1 "
                f"(got {max_generations_per_prompt})"
            )
        if warmup < 0:
            raise ConfigError(f"router {self.name}: warmup must be >= 0 (got {warmup})")
        if explore < 0:
            raise ConfigError(f"router {self.name}: explore must be >= 0 (got {explore})")
        if horizon < 1:
            raise ConfigError(f"router {self.name}: horizon must be >= 1 (got {horizon})")
        self.budget = min(float(max_generations_per_prompt), float(len(self.teachers)))
        self.warmup = warmup
        self.explore = explore
        self.horizon = horizon
        self.failure_reward = failure_reward
        self.routed = 0
        self.generations = 0
        self._charged: dict[str, int] = {}
        self.escalations = 0
        # prompts whose second opinions were decided, and the generations charged to them:
        # what the budget is paced on (windows routed ahead have earned nothing yet)
        self._paced = 0
        self._paced_generations = 0
        self._predicted: dict[str, dict[str, float]] = {}
        self._decided: set[str] = set()
        self._gains: deque[float] = deque(maxlen=WINDOW)
        self._pairs: deque[tuple[float, float]] = deque(maxlen=WINDOW)
        self._joint: dict[tuple[str, str], _History] = {}
        self._rewards_seen: deque[float] = deque(maxlen=4 * WINDOW)
        self._sorted: Any = None
        # ranks of each pair history's first rewards among ``_sorted``, while it holds
        self._ranked: dict[tuple[str, str], Any] = {}
        self._fit: tuple[float, Any] | None = None  # (beta, spread), refitted after updates
        self._order = {t: i for i, t in enumerate(self.teachers)}
        self._lo = math.inf
        self._hi = -math.inf

    # -- what a subclass provides -------------------------------------------------------

    @abstractmethod
    def predict(self, prompts: Sequence[Prompt]) -> list[dict[str, tuple[float, float]]]:
        """Per prompt: each teacher's predicted mean reward and its standard error."""

    @abstractmethod
    def observe(self, prompt: Prompt, rewards: dict[str, float]) -> None:
        """Learn from one prompt's observed rewards (teacher -> reward)."""

    # -- routing -----------------------------------------------------------------------

    def _allowance(self) -> float:
        """Generations the budget still allows beyond one per routed prompt."""
        return self.budget * self.routed - self.generations

    def _spare(self) -> float:
        """Generations the budget still allows beyond one per prompt decided on, counting
        only prompts whose second opinions were decided (with windows in flight, those
        routed ahead are not)."""
        return self.budget * self._paced - self._paced_generations

    def route(self, prompts: Sequence[Prompt]) -> list[Route]:
        routes = []
        for prompt, post in zip(prompts, self.predict(prompts), strict=True):
            self._predicted[prompt.id] = {t: m for t, (m, _) in post.items()}
            n = len(self.teachers)
            # the warm-up may borrow up to what `horizon` prompts will earn back
            debt_ok = self._allowance() + self.budget - n >= -(self.budget - 1) * self.horizon
            if self.routed < self.warmup and n > 1 and self.budget > 1 and debt_ok:
                route = Route(list(self.teachers), "warmup")
            else:
                route = Route([self._first(post)], "predicted")
            self.routed += 1
            self.generations += len(route.teachers)
            self._charged[prompt.id] = len(route.teachers)
            routes.append(route)
        return routes

    def _first(self, post: dict[str, tuple[float, float]]) -> str:
        order = self._order
        if self.explore > 0:
            draws = {t: self.rng.gauss(m, self.explore * s) for t, (m, s) in post.items()}
        else:
            draws = {t: m for t, (m, _) in post.items()}
        return max(self.teachers, key=lambda t: (draws[t], -order[t]))

    def rank(self, prompt: Prompt) -> list[str]:
        """Teachers by predicted reward for ``prompt``."""
        order = self._order
        post = self.predict([prompt])[0]
        return sorted(self.teachers, key=lambda t: (-post[t][0], order[t]))

    def _failure(self) -> float:
        if self.failure_reward is not None:
            return self.failure_reward
        return self._lo if math.isfinite(self._lo) else 0.0

    def _value(self, outcome: Outcome) -> dict[str, float]:
        """Observed rewards of an outcome's answers. A truncated, empty or failed answer
        (after the teacher's retries) is worth ``failure_reward``: a teacher that keeps
        failing stops being asked first, and a failed first answer calls for another."""
        values = {}
        for cand in outcome.candidates:
            values[cand.teacher] = float(cand.reward) if cand.scored else self._failure()  # type: ignore[arg-type]
        return values

    def gain(self, outcome: Outcome) -> tuple[float, str | None]:
        """The best expected gain of one more answer for ``outcome``, and whose."""
        seen = self._value(outcome)
        asked = {c.teacher for c in outcome.candidates}
        rest = [t for t in self.teachers if t not in asked]
        if not rest:
            return 0.0, None
        predicted = self._predicted.get(outcome.prompt.id)
        if predicted is None:
            predicted = {t: m for t, (m, _) in self.predict([outcome.prompt])[0].items()}
            self._predicted[outcome.prompt.id] = predicted
        order = self._order
        if not seen or len(self._pairs) < MIN_PAIRS:
            # nothing to go on yet: the most promising unseen teacher, at unknown value
            best = max(rest, key=lambda t: (predicted[t], -order[t]))
            return math.inf, best
        import numpy as np

        best_seen = max(seen.values())
        residual = sum(r - predicted[t] for t, r in seen.items()) / len(seen)
        beta, spread = self._residual_model()
        local = self.neighbours(outcome.prompt)
        gains = {}
        for t in rest:
            centre = predicted[t] + beta * residual
            pooled = np.maximum(0.0, np.clip(centre + spread, self._lo, self._hi) - best_seen)
            gain = self._conditional(t, seen, best_seen, float(pooled.mean()))
            if t in local:
                # what similar prompts got from t, shifted as this prompt's residual says
                values, weights = local[t]
                shifted = np.clip(values + beta * residual, self._lo, self._hi)
                near = float(weights @ np.maximum(0.0, shifted - best_seen))
                gain = (near + self.pooled_weight * gain) / (weights.sum() + self.pooled_weight)
            gains[t] = gain
        pick = max(rest, key=lambda t: (gains[t], -order[t]))
        return gains[pick], pick

    #: Weight, in neighbours, of the pooled residual model next to the local samples.
    pooled_weight: float = 2.0
    #: Weight, in pairs, of the pooled residual model next to the pairs' own history.
    pair_weight: float = 0.5
    #: Kernel width on the seen score's rank among all rewards seen (0..1).
    bandwidth: float = 0.1

    def _conditional(
        self, teacher: str, seen: dict[str, float], best_seen: float, pooled: float
    ) -> float:
        """The gain of asking ``teacher`` as the history of this pair of teachers tells it:
        on earlier prompts where a teacher we have now seen scored about what it scored
        here, how much better did ``teacher`` do? Kernel-weighted on that score (teachers
        that fail together, or complement each other, are learned per pair), shrunk towards
        the pooled model where the pair has little history near this score."""
        import numpy as np

        total = self.pair_weight * pooled
        mass = self.pair_weight
        for other, score in seen.items():
            key = (other, teacher)
            history = self._joint.get(key)
            if not history:
                continue
            seen_there, got_there = history.arrays()
            ranks = self._ranked.get(key)
            if ranks is None:
                ranks = self._ranked[key] = self._rank(seen_there)
            # near in rank, not in raw score: skewed and tied rewards (most answers near
            # 0, or 0/1) are then as well resolved as evenly spread ones
            w = np.exp(-0.5 * ((ranks - self._rank(score)) / self.bandwidth) ** 2)
            # b's answer there, moved by how much better `other` did here than there, within
            # the range of rewards (a top score here leaves nothing to gain)
            moved = np.clip(got_there - seen_there + score, self._lo, self._hi)
            total += float(w @ np.maximum(0.0, moved - best_seen))
            mass += float(w.sum())
        return total / mass

    def neighbours(self, prompt: Prompt) -> dict[str, tuple[Any, Any]]:
        """Rewards a teacher got on prompts like this one, with weights (default: none)."""
        return {}

    def _rank(self, values: Any) -> Any:
        """Mid-rank of ``values`` among every reward seen, in [0, 1]."""
        import numpy as np

        if self._sorted is None:
            seen = self._rewards_seen
            self._sorted = np.sort(np.fromiter(seen, np.float64, len(seen)))
        n = max(1, len(self._sorted))
        left = np.searchsorted(self._sorted, values, side="left")
        right = np.searchsorted(self._sorted, values, side="right")
        return (left + right) / (2.0 * n)

    def _residual_model(self) -> tuple[float, Any]:
        """``beta``, the least-squares slope of one teacher's residual on another's on the
        same prompt (shrunk towards 0 by a few pseudo-pairs), and the conditional residuals
        ``b - beta * a``: fitted once per update, not once per gain."""
        if self._fit is None:
            import numpy as np

            flat = itertools.chain.from_iterable(self._pairs)
            pairs = np.fromiter(flat, np.float64, 2 * len(self._pairs)).reshape(-1, 2)
            sxx = float(pairs[:, 0] @ pairs[:, 0])
            sxy = float(pairs[:, 0] @ pairs[:, 1])
            prior = 4.0 * sxx / max(1, len(pairs))
            beta = max(0.0, min(1.0, sxy / (sxx + prior))) if sxx > 0 else 0.0
            self._fit = (beta, pairs[:, 1] - beta * pairs[:, 0])
        return self._fit

    def escalate(self, outcomes: Sequence[Outcome]) -> list[Route]:
        found = [self.gain(o) for o in outcomes]
        for outcome, (g, _) in zip(outcomes, found, strict=True):
            pid = outcome.prompt.id
            if pid not in self._decided:
                self._paced += 1
                self._paced_generations += self._charged.get(pid, len(outcome.candidates))
                if math.isfinite(g):
                    self._gains.append(g)
            self._decided.add(pid)
        threshold = self._threshold()
        routes = [Route([]) for _ in outcomes]
        for i in sorted(range(len(outcomes)), key=lambda i: -found[i][0]):
            g, teacher = found[i]
            if teacher is None or g <= self._material() or g < threshold or self._spare() < 1:
                continue
            routes[i] = Route([teacher], "escalate")
            self.generations += 1
            self._paced_generations += 1
            self.escalations += 1
            pid = outcomes[i].prompt.id
            self._charged[pid] = self._charged.get(pid, 1) + 1
        return routes

    def _material(self) -> float:
        """A gain below this (0.1% of the range of rewards seen) is a tie, not a reason to pay."""
        return 1e-3 * (self._hi - self._lo) if self._hi > self._lo else 0.0

    def _threshold(self) -> float:
        """The gain a second opinion must reach: the top-``p`` quantile of gains seen, with
        ``p`` the share of prompts the budget lets us escalate (evened over ``horizon``)."""
        rate = (self.budget - 1.0) + self._spare() / self.horizon
        rate = min(1.0, max(0.0, rate))
        if rate <= 0.0:
            return math.inf
        if not self._gains or rate >= 1.0:
            return 0.0
        ranked = sorted(self._gains, reverse=True)
        return ranked[min(len(ranked) - 1, int(rate * len(ranked)))]

    # -- learning ----------------------------------------------------------------------

    def update(self, outcomes: Sequence[Outcome]) -> None:
        for outcome in outcomes:
            seen = self._value(outcome)
            self._predicted.pop(outcome.prompt.id, None)
            self._decided.discard(outcome.prompt.id)
            # what was charged at decision time, made good to what was generated (a teacher
            # that was down when its second opinion was due costs nothing)
            charged = self._charged.pop(outcome.prompt.id, None)
            if charged is not None:
                self.generations += outcome.n_generations - charged
                self._paced_generations += outcome.n_generations - charged
            if not seen:
                continue
            # residuals against what is known just before this outcome (not at routing
            # time), so a resumed run's replay rebuilds exactly the same state
            predicted = {t: m for t, (m, _) in self.predict([outcome.prompt])[0].items()}
            residuals = {t: r - predicted[t] for t, r in seen.items()}
            for a in residuals:
                for b in residuals:
                    if a != b:
                        self._pairs.append((residuals[a], residuals[b]))
                        self._joint.setdefault((a, b), _History()).append(seen[a], seen[b])
            self._rewards_seen.extend(seen.values())
            self._sorted = None
            self._ranked.clear()
            self._fit = None
            self._lo = min(self._lo, *seen.values())
            self._hi = max(self._hi, *seen.values())
            self.observe(outcome.prompt, seen)

    def replay(self, outcomes: Sequence[Outcome]) -> None:
        """Relearn from an interrupted run's outcomes, in order: the counts, the model and
        the history of first-answer gains that sets the escalation threshold."""
        self.routed += len(outcomes)
        self.generations += sum(o.n_generations for o in outcomes)
        self._paced += len(outcomes)
        self._paced_generations += sum(o.n_generations for o in outcomes)
        self.escalations += sum(
            o.n_generations - 1 for o in outcomes if o.routed_by.endswith(ESCALATED)
        )
        for outcome in outcomes:
            if outcome.candidates and not outcome.routed_by.startswith("warmup"):
                first = Outcome(outcome.prompt, outcome.candidates[:1])
                g, _ = self.gain(first)
                if math.isfinite(g):
                    self._gains.append(g)
                self._predicted.pop(outcome.prompt.id, None)
            self.update([outcome])

    def state(self) -> dict[str, Any]:
        return {
            "routed": self.routed,
            "generations": self.generations,
            "escalations": self.escalations,
            "generations_per_prompt": round(self.generations / self.routed, 3)
            if self.routed
            else 0.0,
            "residual_slope": round(self._residual_model()[0], 3),
        }
