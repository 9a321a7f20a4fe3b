#!/usr/bin/env python3
"""`make bench-quality`: hpa train at its defaults against the plain PyTorch reference (issue 7).

For each seed: `hpa synth` builds a training set (2000 samples) and a held-out set (400, another
seed) at 64 px; for each preset both sides train 2 folds x 1 cycle x 15 epochs at batch 32 on the same
fold split (the folds.csv hpa train wrote), predict the held-out set with 8-view TTA, and one scorer
(macro-F1 over the 28 classes, F1 = 0 for a class without positives or predictions, as
internal/train/eval's metrics) scores both label CSVs against the held-out train.csv. Prints a table of the
held-out macro-F1s, hpa minus PyTorch, the goal (>= +0.03) and the seconds of each run; with --json
FILE also writes the rows.

Extra `hpa train` flags (ablations) go after `--`: bench_quality.py --seeds 1 -- --sampler random.
"""

import argparse
import csv
import json
import os
import resource
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))


def cpu_children():
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def sh(args, **kw):
    """Runs a command; returns its stdout and its wall seconds. CPU_SECONDS[0] is set to the CPU
    seconds (user + system) the command used."""
    t, c = time.time(), cpu_children()
    p = subprocess.run(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kw)
    if p.returncode != 0:
        sys.stderr.write(p.stderr[-4000:])
        raise SystemExit("bench_quality: %s failed (%d)" % (" ".join(args[:3]), p.returncode))
    CPU_SECONDS[0] = cpu_children() - c
    return p.stdout, time.time() - t


CPU_SECONDS = [0.0]


def score_variant(a, out, te, truth, man, stem):
    """Writes the model-set variant man as OUT/manifest-STEM.json (beside the original, so member
    paths still resolve), labels the held-out set with it into a fresh directory and returns the
    macro-F1 of its label CSV."""
    path = os.path.join(out, "manifest-%s.json" % stem)
    with open(path, "w") as f:
        json.dump(man, f, indent=2)
    labels_dir, csv_path = os.path.join(out, "labels-" + stem), os.path.join(out, "heldout-%s.csv" % stem)
    subprocess.run(["rm", "-rf", labels_dir])
    sh([a.hpa, "label", os.path.join(te, "train"), "--model", path, "--out", labels_dir, "--csv", csv_path])
    return macro_f1(read_csv_labels(csv_path, "Predicted"), truth)


def score_members(a, out, te, truth):
    """Labels the held-out set with each member alone, with the thresholds chosen on its own OOF
    predictions (the manifest's members[].thresholds), and returns {member file: macro-F1}."""
    with open(os.path.join(out, "manifest.json")) as f:
        man = json.load(f)
    scores = {}
    for m in man["members"]:
        if not m.get("thresholds"):
            raise SystemExit("bench_quality: member %s has no thresholds of its own (a manifest of an older trainer)" % m["file"])
        one = dict(man, members=[m], thresholds=m["thresholds"], name=man["name"] + "-" + m["file"])
        scores[m["file"]] = score_variant(a, out, te, truth, one, os.path.splitext(os.path.basename(m["file"]))[0])
    return scores


def score_tta1(a, out, te, truth):
    """The ensemble without test-time augmentation (tta_views 1), the same members and thresholds."""
    with open(os.path.join(out, "manifest.json")) as f:
        man = json.load(f)
    return score_variant(a, out, te, truth, dict(man, tta_views=1), "tta1")


def read_csv_labels(path, key="Target"):
    out = {}
    with open(path) as f:
        r = csv.DictReader(f)
        col = key if key in r.fieldnames else r.fieldnames[1]
        for row in r:
            out[row["Id"]] = {int(c) for c in row[col].split()}
    return out


def macro_f1(pred, truth, classes=28):
    f1 = 0.0
    for c in range(classes):
        tp = fp = fn = 0
        for i, t in truth.items():
            p = c in pred.get(i, set())
            if p and c in t:
                tp += 1
            elif p:
                fp += 1
            elif c in t:
                fn += 1
        d = 2 * tp + fp + fn
        f1 += 2 * tp / d if d else 0.0
    return f1 / classes


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--hpa", default="bin/hpa")
    ap.add_argument("--python", default="/usr/bin/python3")
    ap.add_argument("--work", default="hpa-data/bench-quality")
    ap.add_argument("--seeds", default="1,2")
    ap.add_argument("--presets", default="seresnext_tiny,seresnext_small")
    ap.add_argument("--train", type=int, default=2000)
    ap.add_argument("--test", type=int, default=400)
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--folds", type=int, default=2)
    ap.add_argument("--cycles", type=int, default=1)
    ap.add_argument("--epochs", type=int, default=15)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--threads", type=int, default=1, help="libtorch / PyTorch intra-op threads of each side")
    ap.add_argument("--sides", default="hpa,torch", help="hpa, torch or both")
    ap.add_argument("--tag", default="defaults", help="name of this hpa configuration in the output")
    ap.add_argument("--json", default="", help="append result rows (JSON lines) to this file")
    ap.add_argument("--reuse", action="store_true",
                    help="keep an existing hpa output directory: hpa train resumes from its checkpoints and only finishes the set again")
    ap.add_argument("--score-members", action="store_true",
                    help="also score each member alone on the held-out set (its own OOF thresholds) against the ensemble")
    ap.add_argument("extra", nargs="*", help="extra hpa train flags (after --)")
    a = ap.parse_args()
    os.makedirs(a.work, exist_ok=True)
    os.environ["HPA_TORCH_THREADS"] = str(a.threads)
    rows = []
    for seed in [int(s) for s in a.seeds.split(",")]:
        tr = os.path.join(a.work, "synth-%d-train" % seed)
        # The standard held-out set: 400 samples of seed + 1000; a larger one (--test N) is another set
        # (seed + 2000), named by its size.
        te = os.path.join(a.work, "synth-%d-test" % seed) if a.test == 400 else os.path.join(a.work, "synth-%d-test%d" % (seed, a.test))
        for d, n, s in ((tr, a.train, seed), (te, a.test, seed + 1000 if a.test == 400 else seed + 2000)):
            if not os.path.exists(os.path.join(d, "train.csv")):
                sh([a.hpa, "synth", "--out", d, "--samples", str(n), "--size", str(a.size), "--seed", str(s)])
        truth = read_csv_labels(os.path.join(te, "train.csv"))
        for preset in a.presets.split(","):
            res = {"seed": seed, "preset": preset, "tag": a.tag, "extra": a.extra, "heldout": a.test, "size": a.size,
                   "env": {k: v for k, v in sorted(os.environ.items()) if k.startswith("HPA_TRAIN_")}}
            out = os.path.join(a.work, "hpa-%s-%d-%s" % (preset, seed, a.tag))
            common = ["--size", str(a.size), "--folds", str(a.folds), "--cycles", str(a.cycles),
                      "--epochs", str(a.epochs), "--batch", str(a.batch)]
            if "hpa" in a.sides or "torch" in a.sides:
                man = os.path.join(out, "manifest.json")
                if "hpa" in a.sides or not os.path.exists(man):
                    if a.reuse and os.path.isdir(os.path.join(out, "checkpoints")):
                        res["reused"] = True  # hpa train resumes: every finished fold is kept, the set is finished again
                    else:
                        subprocess.run(["rm", "-rf", out])
                    _, secs = sh([a.hpa, "train", "--data", tr, "--out", out, "--arch", preset, "--tta-views", "8",
                                  "--seed", str(seed), *common, *a.extra])
                    res["hpa_seconds"] = round(secs, 1)
                    res["hpa_cpu_seconds"] = round(CPU_SECONDS[0], 1)
                    subprocess.run(["rm", "-rf", os.path.join(out, "labels")])
                    sh([a.hpa, "label", os.path.join(te, "train"), "--model", man, "--out", os.path.join(out, "labels"),
                        "--csv", os.path.join(out, "heldout.csv")])
                    res["hpa"] = macro_f1(read_csv_labels(os.path.join(out, "heldout.csv"), "Predicted"), truth)
                    with open(os.path.join(out, "report.json")) as f:
                        rep = json.load(f)
                    res["hpa_oof"] = rep["oof_macro_f1"]
                    res["hpa_last_loss"] = [l[-1] for l in rep.get("epoch_loss") or [] if l]
                    res["hpa_policy_oof"] = rep.get("oof_macro_f1_by_policy")
                    snap = rep.get("snapshot_selection")
                    res["snapshots"] = "last %d of %d" % (snap["kept"], snap["of"]) if snap else "all"
                    res["shape"] = "%dx%dx%d" % (a.folds, a.cycles, a.epochs)
                    with open(man) as f:
                        first = json.load(f)["members"][0]["file"]
                    res["member_bytes"] = os.path.getsize(os.path.join(out, first))
                    if a.score_members:
                        ms = score_members(a, out, te, truth)
                        best = max(ms, key=ms.get)
                        res["hpa_members"] = ms
                        res["hpa_best_member"] = best
                        res["hpa_ensemble_minus_best"] = res["hpa"] - ms[best]
                        res["hpa_tta1"] = score_tta1(a, out, te, truth)
            if "torch" in a.sides:
                ref_csv = os.path.join(a.work, "torch-%s-%d.csv" % (preset, seed))
                o, secs = sh([a.python, os.path.join(HERE, "torch_ref_train.py"), "--data", tr,
                              "--folds-csv", os.path.join(out, "folds.csv"), "--spec", os.path.join(out, "manifest.json"),
                              "--test", te, "--out-csv", ref_csv, "--seed", str(seed), "--threads", str(a.threads), *common])
                ref = json.loads(o.strip().splitlines()[-1])
                res["torch"] = macro_f1(read_csv_labels(ref_csv, "Predicted"), truth)
                res["torch_seconds"] = round(secs, 1)
                res["torch_cpu_seconds"] = round(CPU_SECONDS[0], 1)
                res["torch_oof"] = ref["oof_macro_f1"]
                res["torch_last_loss"] = ref["last_epoch_loss"]
            if "hpa" in res and "torch" in res:
                res["diff"] = res["hpa"] - res["torch"]
            rows.append(res)
            print(json.dumps(res), flush=True)
            if a.json:
                with open(a.json, "a") as f:
                    f.write(json.dumps(res) + "\n")
    print("\n| seed | preset | config | hpa held-out macro-F1 | PyTorch | hpa - PyTorch | goal (>= +0.03) | hpa s | PyTorch s |")
    print("|---|---|---|---:|---:|---:|---|---:|---:|")
    for r in rows:
        d = r.get("diff")
        print("| %d | %s | %s | %s | %s | %s | %s | %s | %s |" % (
            r["seed"], r["preset"], r["tag"], fmt(r.get("hpa")), fmt(r.get("torch")),
            "%+.4f" % d if d is not None else "-", ("met" if d >= 0.03 else "NOT met") if d is not None else "-",
            r.get("hpa_seconds", "-"), r.get("torch_seconds", "-")))
    for r in rows:
        if "hpa_members" in r:
            d = r["hpa_ensemble_minus_best"]
            print("\nseed %d %s %s (snapshots %s): ensemble of %d members %.4f, best member %s %.4f (own thresholds): %+.4f (goal >= +0.02: %s)" % (
                r["seed"], r["preset"], r["shape"], r.get("snapshots", "all"), len(r["hpa_members"]), r["hpa"], r["hpa_best_member"],
                r["hpa_members"][r["hpa_best_member"]], d, "met" if d >= 0.02 else "NOT met"))


def fmt(v):
    return "%.4f" % v if v is not None else "-"


if __name__ == "__main__":
    main()
