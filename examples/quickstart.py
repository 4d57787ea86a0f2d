"""The offline quickstart in Python: two local teachers, the offline reward, the learned router.

python examples/quickstart.py            # ~3 minutes on a 2-core CPU
"""

from arbitrage import Arbitrage, Teacher, build_prompts, save_mixture
from reward import get_reward
from routers import get_router


def main() -> None:
    prompts = build_prompts(18, languages=["en", "fr", "sw"], tasks=["open_qa", "math"], seed=0)
    teachers = [
        Teacher.from_model("smollm2", "local/smollm2-135m-instruct", max_tokens=96),
        Teacher.from_model("gemma3", "local/gemma-3-270m", max_tokens=96),
    ]
    router = get_router("learned", [t.name for t in teachers], warmup=6, explore=0.1)
    result = Arbitrage(teachers, get_reward("local"), router, batch_size=6).run(prompts)

    summary = result.summary()
    print("wins per language:", summary["wins_by_language"])
    print("generations per prompt:", summary["generations_per_prompt"])
    dataset = result.to_dataset()
    print(dataset)
    print(dataset[0]["messages"])
    save_mixture(dataset, "out/quickstart")


if __name__ == "__main__":
    main()
