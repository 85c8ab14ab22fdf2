#!/usr/bin/env python3
"""Where does the `<boa>` query look, per named object? Reads the records of
`vla-demo eval --per-command FILE` (plain Python, no packages) and prints,
for each object the commands name (on `unseen-combo`, the held-out pairs):
how many commands, their success, their answers, how often the `<boa>`
peak lies on the named object (pointing), and what the patch head reads on
the patch of that peak (colour and shape), most common first.

If a never-seen pair is refused while the peak sits on it, reading it as
what the command says, the decision to act fails; if the peak sits on
other objects, the query itself does not find the pair.

    vla-demo eval --split unseen-combo --scenes 300 --per-command uc.jsonl
    python3 scripts/boa_peaks.py uc.jsonl
"""

import collections
import json
import sys

COLOURS = ["-", "red", "green", "blue", "yellow", "purple", "orange"]
SHAPES = ["-", "cup", "block", "ball", "bowl"]


def name(reading):
    colour, shape = reading
    colour = COLOURS[colour] if colour < len(COLOURS) else "unnamed"
    return f"{colour} {SHAPES[shape]}"


def main(path, top=4):
    by_object = collections.defaultdict(list)
    with open(path, encoding="utf-8") as f:
        for line in f:
            record = json.loads(line)
            if record.get("expected") == "act" and record.get("object"):
                by_object[record["object"]].append(record)
    for obj, records in sorted(by_object.items()):
        n = len(records)
        success = sum(r["success"] for r in records) / n
        pointing = sum(r["pointing"] for r in records) / n
        answers = collections.Counter(r["answer"] for r in records)
        peaks = collections.Counter()
        for r in records:
            boa = r["boa"]
            peak = max(range(len(boa)), key=boa.__getitem__)
            peaks[name(r["read"][peak])] += 1
        read = ", ".join(f"{k} {v / n:.0%}" for k, v in peaks.most_common(top))
        print(
            f"{obj}: {n} commands, success {success:.1%}, pointing {pointing:.1%}, "
            f"answers {dict(answers)}; read at the peak: {read}"
        )


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: boa_peaks.py RECORDS.jsonl")
    main(sys.argv[1])
