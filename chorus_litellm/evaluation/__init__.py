"""`chorus eval`: compare plain models, self-consistency votes and fusion profiles on the
same questions through any OpenAI-compatible endpoint (docs/eval.md).

    data.py      datasets (JSONL files, the mmlu / mtbench shortcuts) -> Question
    prompts.py   every prompt eval sends (the multiple-choice ask, the pairwise judge)
    scoring.py   pure: answers read leniently (as a person would) and strictly (the asked
                 format), normalization, majority vote, verdicts, rounds
    client.py    I/O: one chat call (text, cost, tokens, latency), a run's transcript
    runner.py    the jobs: cache (answers.jsonl), concurrency, vote:k, debate rounds
    core/report.py    results.json, results.md and the plots
    command.py   the `chorus eval` flags and the run that ties them together

Nothing here is imported by the proxy; this package only reads what the proxy serves.
"""
