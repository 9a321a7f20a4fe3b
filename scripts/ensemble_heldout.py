#!/usr/bin/env python3
"""The ensemble against its members on a held-out set, from the label JSON that `make bench-quality`
(scripts/bench_quality.py --score-members) leaves in an hpa output directory: labels/ (the ensemble)
and labels-<member>/ (each member alone with its own OOF thresholds).

Prints, per labels directory: macro-F1 with the shipped thresholds, and macro-F1 with per-class
thresholds chosen on the held-out labels themselves (an upper bound: what perfect thresholds would
give; it separates ranking from threshold choice); then the mean correlation between the members'
logits per class. docs/quality-findings.md quotes its output. Standard library only.

Usage: python3 scripts/ensemble_heldout.py OUT_DIR HELDOUT_DIR
  (HELDOUT_DIR: the held-out train.csv's directory, e.g. hpa-data/bench-quality/synth-1-test2000)
"""
import csv
import glob
import json
import math
import os
import sys


def truth(heldout):
    ids, y = [], []
    with open(os.path.join(heldout, "train.csv")) as f:
        for r in csv.DictReader(f):
            ids.append(r["Id"])
            y.append({int(c) for c in r["Target"].split()})
    return ids, y


def load(d, ids):
    """Probabilities [sample][class] and the shipped thresholds; None when a sample is missing."""
    got = {}
    for fn in glob.glob(os.path.join(d, "*.json")):
        if fn.endswith(".error.json"):
            continue
        with open(fn) as f:
            j = json.load(f)
        got[j["sample_id"]] = ([p["p"] for p in j["probabilities"]], j["thresholds"]["values"])
    if any(i not in got for i in ids):
        return None, None
    return [got[i][0] for i in ids], got[ids[0]][1]


def f1(tp, fp, fn):
    d = 2 * tp + fp + fn
    return 2 * tp / d if d else 0.0


def shipped(p, th, y, classes):
    total = 0.0
    for c in range(classes):
        tp = fp = fn = 0
        for row, t in zip(p, y):
            pos, lab = row[c] > th[c], c in t
            tp += pos and lab
            fp += pos and not lab
            fn += lab and not pos
        total += f1(tp, fp, fn)
    return total / classes


def oracle(p, y, classes):
    """Per class, the best F1 over every threshold (predict positive at or above a held-out value)."""
    total = 0.0
    for c in range(classes):
        pairs = sorted(((row[c], c in t) for row, t in zip(p, y)), key=lambda x: -x[0])
        npos = sum(lab for _, lab in pairs)
        best, tp, k = f1(0, 0, npos), 0, 0
        while k < len(pairs):
            v = pairs[k][0]
            while k < len(pairs) and pairs[k][0] == v:  # ties go in together
                tp += pairs[k][1]
                k += 1
            best = max(best, f1(tp, k - tp, npos - tp))
        total += best
    return total / classes


def logit(q):
    q = min(max(q, 1e-6), 1 - 1e-6)
    return math.log(q / (1 - q))


def corr(a, b):
    n = len(a)
    ma, mb = sum(a) / n, sum(b) / n
    sab = sum((x - ma) * (y - mb) for x, y in zip(a, b))
    saa = sum((x - ma) ** 2 for x in a)
    sbb = sum((y - mb) ** 2 for y in b)
    return sab / math.sqrt(saa * sbb) if saa > 0 and sbb > 0 else 1.0


def main():
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    out, heldout = sys.argv[1:]
    ids, y = truth(heldout)
    members = []
    for d in sorted(glob.glob(os.path.join(out, "labels*"))):
        name = os.path.basename(d)
        if name == "labels-tta1":
            continue
        p, th = load(d, ids)
        if p is None:
            print("%-26s does not hold every held-out sample: skipped" % name)
            continue
        classes = len(th)
        print("%-26s shipped %.4f  oracle thresholds %.4f" % (name, shipped(p, th, y, classes), oracle(p, y, classes)))
        if name != "labels":
            members.append([[logit(q) for q in row] for row in p])
    if len(members) > 1:
        classes = len(members[0][0])
        per_class = []
        for c in range(classes):
            cols = [[row[c] for row in m] for m in members]
            pairs = [corr(cols[i], cols[j]) for i in range(len(cols)) for j in range(i + 1, len(cols))]
            per_class.append(sum(pairs) / len(pairs))
        print("members' logits: mean correlation per class %.3f (%d members)" % (sum(per_class) / classes, len(members)))


if __name__ == "__main__":
    main()
