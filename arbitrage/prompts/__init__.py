"""Prompts: where a run's instructions come from.

    pool.py          the prompt pool: persona × task × language → an instruction
                     (a writer model, or the model-free ``template`` writer)
    frames.py        the template writer's in-language frames (data/frames.yaml)
    personas.py      persona sources: bundled, PersonaHub, Nemotron-Personas, a file
    tasks.py         the task taxonomy
    targets.py       ``target_rows``: draw prompts in rounds until the mixture holds enough
    conversation.py  multi-turn: a user simulator writes each follow-up

Every prompt is a ``Prompt`` (``arbitrage/records.py``), written to ``prompts.jsonl``.
"""
