"""Builds mmlu_workload.jsonl, the demo's workload, from the RouteLLM MMLU correctness labels.

Source: shared/data/quality/routellm/mmlu_responses/mmlu_<subject>.csv (RouteLLM, Apache-2.0;
MMLU prompts, MIT): per prompt, whether Mixtral-8x7B-Instruct-v0.1 (weak) and
GPT-4-1106-preview (strong) answered correctly. We keep the first PER_SUBJECT prompts of every
subject, in file order, with both labels. Run from the repository root:

    python3 data/demo/make_workload.py ../shared/data/quality/routellm/mmlu_responses
"""
import csv
import glob
import json
import os
import sys

PER_SUBJECT = 60

def main(source_dir: str) -> None:
    out_path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "mmlu_workload.jsonl")
    rows = 0
    with open(out_path, "w", encoding="utf-8") as out:
        for path in sorted(glob.glob(os.path.join(source_dir, "mmlu_*.csv"))):
            subject = os.path.basename(path)[len("mmlu_"):-len(".csv")]
            with open(path, newline="", encoding="utf-8") as f:
                for index, row in enumerate(csv.DictReader(f)):
                    if index >= PER_SUBJECT:
                        break
                    record = {
                        "subject": subject,
                        "prompt": row["prompt"],
                        "weak_correct": row["mistralai/Mixtral-8x7B-Instruct-v0.1"] == "True",
                        "strong_correct": row["gpt-4-1106-preview"] == "True",
                    }
                    out.write(json.dumps(record, ensure_ascii=False) + "\n")
                    rows += 1
    print(f"wrote {rows} prompts to {out_path}")

if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "../shared/data/quality/routellm/mmlu_responses")
