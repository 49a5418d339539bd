"""Writes the `evaluate` command's test fixtures (run from this directory; deterministic).

- good.jsonl: 160 prompts from three topics with distinct vocabularies, scored for the models
  `big` and `small` (booleans and numbers mixed: the reader takes both).
- good.csv: 90 prompts in RouteLLM's response-CSV layout (`prompt`, one column per model with
  True/False, a `*_response` column that is ignored), prompts spanning lines, with commas and
  doubled quotes.
- bad.jsonl: a valid line, then a line whose `small` score is a string (line 2), then more.
- bad.csv: a row with one field missing on line 4 (the row on lines 2-3 spans two lines).
"""
import csv
import json
import random

TOPICS = {
    "cooking": "simmer onion garlic butter saucepan whisk flour dough oven bake roast pepper salt broth "
               "vinegar skillet knead yeast batter caramel".split(),
    "astronomy": "galaxy nebula telescope orbit planet comet asteroid quasar pulsar redshift eclipse "
                 "meteor lunar solar cosmic parallax supernova".split(),
    "law": "contract plaintiff defendant statute tort negligence appeal verdict jury clause liability "
           "precedent jurisdiction testimony damages".split(),
}
# Where the small model is as good as the big one: cooking. Elsewhere it is much worse.
SMALL_GOOD = {"cooking"}

def prompt(rng, topic):
    words = [rng.choice(TOPICS[topic]) for _ in range(rng.randint(8, 14))]
    return "Question: " + " ".join(words) + "?"

def scores(i, topic):
    big = i % 10 != 0
    small = big if topic in SMALL_GOOD else i % 10 < 3
    return big, small

def main():
    rng = random.Random(7)
    topics = sorted(TOPICS)
    with open("good.jsonl", "w") as out:
        for i in range(160):
            topic = topics[i % 3]
            big, small = scores(i, topic)
            value = {"big": big, "small": 1.0 if small else 0.0} if i % 2 else {"big": 1 if big else 0, "small": small}
            out.write(json.dumps({"prompt": prompt(rng, topic), "scores": value}) + "\n")
    with open("good.csv", "w", newline="") as out:
        writer = csv.writer(out)
        writer.writerow(["prompt", "big", "small", "big_response"])
        for i in range(90):
            topic = topics[i % 3]
            big, small = scores(i, topic)
            text = prompt(rng, topic) + '\nA. "yes", surely\nB. no\nAnswer:'
            writer.writerow([text, str(big), str(small), "B"])
    with open("bad.jsonl", "w") as out:
        out.write(json.dumps({"prompt": "fine", "scores": {"big": True, "small": False}}) + "\n")
        out.write(json.dumps({"prompt": "broken", "scores": {"big": True, "small": "yes"}}) + "\n")
        out.write(json.dumps({"prompt": "after", "scores": {"big": True, "small": True}}) + "\n")
    with open("bad.csv", "w", newline="") as out:
        out.write('prompt,big,small\n"two\nlines",True,False\nmissing a field,True\nlast,True,True\n')

if __name__ == "__main__":
    main()
