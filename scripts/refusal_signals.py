#!/usr/bin/env python3
"""Could the pipeline catch the refusals the model misses? Two signals read
from `vla-demo eval --per-command FILE` (plain Python, no packages):

- attention: the `<boa>` weights' second blob. Patches holding at least a
  quarter of the peak weight are joined into blobs (8-neighbours); the signal
  is the weight on the second-heaviest. "Which one?" should look at two
  objects, a command to act on at one.
- patch head: how many separate objects (4-neighbour blobs of patches) the
  patch head reads as the object the command names. None for "not here",
  two or more for "which one?".

For each signal it prints the share of the missed commands to refuse
(absent, ambiguous) it would catch, and the share of valid commands the
model acts on that it would then refuse (new false flags). Relational
commands name a kind that fits several objects on purpose, so the
"two or more" rules skip them.

    vla-demo eval --split absent --scenes 1000 --per-command absent.jsonl
    python3 scripts/refusal_signals.py absent.jsonl
"""

import json
import sys

COLOURS = ["red", "green", "blue", "yellow", "purple", "orange"]
SHAPES = ["cup", "block", "ball", "bowl"]


def blobs(cells, side, diagonal):
    """Connected groups of the (row, col) cells in `cells`."""
    todo, out = set(cells), []
    steps = [(-1, 0), (1, 0), (0, -1), (0, 1)]
    if diagonal:
        steps += [(-1, -1), (-1, 1), (1, -1), (1, 1)]
    while todo:
        stack, group = [todo.pop()], []
        while stack:
            r, c = stack.pop()
            group.append((r, c))
            for dr, dc in steps:
                n = (r + dr, c + dc)
                if n in todo:
                    todo.remove(n)
                    stack.append(n)
        out.append(group)
    return out


def second_blob(boa):
    side = round(len(boa) ** 0.5)
    peak = max(boa)
    cells = [(i // side, i % side) for i, w in enumerate(boa) if w >= 0.25 * peak]
    masses = sorted((sum(boa[r * side + c] for r, c in g) for g in blobs(cells, side, True)), reverse=True)
    return masses[1] if len(masses) > 1 else 0.0


def objects_read(rec):
    """Separate objects the patch head reads as the one the command names."""
    words = rec["object"].split()
    shape = SHAPES.index(words[-1]) + 1
    colour = COLOURS.index(words[0]) + 1 if len(words) == 2 else None
    side = round(len(rec["read"]) ** 0.5)
    cells = [
        (i // side, i % side)
        for i, (c, s) in enumerate(rec["read"])
        if s == shape and (colour is None or c == colour)
    ]
    return len(blobs(cells, side, False))


def share(hits, of):
    return f"{100 * hits / of:5.1f}% of {of}" if of else "   – "


def main(path):
    records = [json.loads(line) for line in open(path, encoding="utf-8")]
    missed = {k: [r for r in records if r["expected"] == k and r["answer"] == "act"] for k in ("absent", "ambiguous")}
    valid = [r for r in records if r["expected"] == "act" and r["answer"] == "act"]
    plain = [r for r in valid if r["family"] != "relational"]
    print(f"{len(records)} commands; missed: {len(missed['absent'])} absent, {len(missed['ambiguous'])} ambiguous")
    print("\nattention: second blob's weight above t -> \"which one?\"")
    print("| t | missed ambiguous caught | new false flags (not relational) |\n|---|---|---|")
    for t in (0.1, 0.2, 0.3, 0.4):
        caught = sum(second_blob(r["boa"]) > t for r in missed["ambiguous"])
        false = sum(second_blob(r["boa"]) > t for r in plain)
        print(f"| {t} | {share(caught, len(missed['ambiguous']))} | {share(false, len(plain))} |")
    if not all(r.get("read") for r in records):
        print("\n(no patch head: the second signal needs one)")
        return
    print("\npatch head: objects read as the one named")
    print("| rule | missed caught | new false flags |\n|---|---|---|")
    caught = sum(objects_read(r) == 0 for r in missed["absent"])
    false = sum(objects_read(r) == 0 for r in valid)
    print(f"| none read -> \"not here\" | {share(caught, len(missed['absent']))} | {share(false, len(valid))} |")
    caught = sum(objects_read(r) >= 2 for r in missed["ambiguous"])
    false = sum(objects_read(r) >= 2 for r in plain)
    print(f"| two or more -> \"which one?\" | {share(caught, len(missed['ambiguous']))} | {share(false, len(plain))} (not relational) |")


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: refusal_signals.py PER_COMMAND.jsonl")
    main(sys.argv[1])
