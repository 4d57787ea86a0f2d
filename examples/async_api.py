"""Calling data-arbitrage from code that already runs an event loop (e.g. a web service).

Two OpenAI-compatible teachers and an LLM judge; set OPENAI_API_KEY first.

    python examples/async_api.py
"""

import asyncio

from arbitrage import Arbitrage, Teacher, abuild_prompts
from reward import get_reward
from routers import get_router


async def main() -> None:
    prompts = await abuild_prompts(20, languages=["en", "es"], tasks=["coding", "reasoning"])
    teachers = [
        Teacher.from_model("mini", "openai/gpt-4o-mini", api_key_env="OPENAI_API_KEY"),
        Teacher.from_model("nano", "openai/gpt-4.1-nano", api_key_env="OPENAI_API_KEY"),
    ]
    judge = get_reward("judge", model="openai/gpt-4o", api_key_env="OPENAI_API_KEY")
    router = get_router("reward", [t.name for t in teachers])
    result = await Arbitrage(teachers, judge, router).arun(prompts)
    print(result.summary())


if __name__ == "__main__":
    asyncio.run(main())
