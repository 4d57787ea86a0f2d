"""A custom router in a few lines: cheapest teacher for short prompts, a strong one for the rest.

Use it from Python (below), or from YAML once your package registers it in pyproject.toml:

    [project.entry-points."arbitrage.routers"]
    by_length = "my_package.routers:ByLength"

    router: {name: by_length, params: {strong: gpt, cheap: mini, max_words: 40}}
"""

from collections.abc import Sequence

from arbitrage.records import Prompt
from routers import Route, Router, get_router, register


class ByLength(Router):
    """Short prompts go to ``cheap``; long ones to ``strong``."""

    name = "by_length"

    def __init__(
        self,
        teachers: Sequence[str],
        *,
        seed: int = 0,
        strong: str,
        cheap: str,
        max_words: int = 40,
    ) -> None:
        super().__init__(teachers, seed=seed)
        self.strong, self.cheap, self.max_words = strong, cheap, max_words

    def route(self, prompts: Sequence[Prompt]) -> list[Route]:
        return [
            Route([self.cheap if len(p.text.split()) <= self.max_words else self.strong], "length")
            for p in prompts
        ]


if __name__ == "__main__":
    register("by_length", ByLength)  # what the entry point does for an installed package
    router = get_router("by_length", ["gpt", "mini"], strong="gpt", cheap="mini", max_words=5)
    prompts = [
        Prompt("Name a river.", "en", "open_qa"),
        Prompt("Explain " + "why " * 10, "en", "open_qa"),
    ]
    for prompt, route in zip(prompts, router.route(prompts), strict=True):
        print(route.teachers, prompt.text[:30])
