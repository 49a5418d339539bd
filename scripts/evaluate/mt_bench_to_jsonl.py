"""Converts RouteLLM's MT-Bench judgements to the labelled JSON lines `evaluate` reads.

Source: RouteLLM's `mt_bench/question.jsonl` (80 questions, two user turns each) and
`mt_bench/judgements.jsonl` (GPT-4 as judge, one score from 1 to 10 per question, turn and
model: gpt-4-1106-preview and Mixtral-8x7B-Instruct-v0.1).

One output line per (question, turn) that both models were judged on (160 here):
  {"prompt": <the user's message of that turn>,
   "scores": {<model>: <judge score / 10>, ...},
   "question_id": ..., "turn": 1 | 2, "category": "writing" | ...}

- Scores are divided by 10 (the scale's maximum), so a score is a share of a perfect answer
  and "quality as a share of the strong model's" is the ratio of mean judge scores; PGR,
  CPT and APGR do not change under this (or any) positive scaling.
- The prompt is the user's message of that turn only, because that is what the gateway's
  workload discovery reads (the last user turn); the second turn's context (the first turn and
  the model's answer) is not in it.
- Extra fields (question_id, turn, category) are ignored by `evaluate`.

Usage (from the repository root):
    python3 scripts/evaluate/mt_bench_to_jsonl.py \
        ../shared/data/quality/routellm/mt_bench > /tmp/mt_bench.jsonl
"""
import json
import os
import sys


def main(source_dir: str) -> None:
    questions = {}
    with open(os.path.join(source_dir, "question.jsonl"), encoding="utf-8") as f:
        for line in f:
            if line.strip():
                q = json.loads(line)
                questions[q["question_id"]] = q
    scores = {}
    with open(os.path.join(source_dir, "judgements.jsonl"), encoding="utf-8") as f:
        for line in f:
            if not line.strip():
                continue
            j = json.loads(line)
            key = (j["question_id"], j["turn"])
            if j["score"] < 0:  # the judge's verdict could not be parsed
                continue
            scores.setdefault(key, {})[j["model"]] = j["score"] / 10.0
    models = sorted({m for s in scores.values() for m in s})
    written = 0
    for (question_id, turn), by_model in sorted(scores.items()):
        if sorted(by_model) != models:
            continue
        question = questions[question_id]
        out = {
            "prompt": question["turns"][turn - 1],
            "scores": by_model,
            "question_id": question_id,
            "turn": turn,
            "category": question["category"],
        }
        print(json.dumps(out, ensure_ascii=False))
        written += 1
    print(f"{written} prompts, models: {', '.join(models)}", file=sys.stderr)


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "../shared/data/quality/routellm/mt_bench")
