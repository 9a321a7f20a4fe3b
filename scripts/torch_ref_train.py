#!/usr/bin/env python3
"""Plain PyTorch reference trainer of issue 7 (the anchor of `make bench-quality`).

The recipe a PyTorch user would write, independent of hpa's trainer: the SE-ResNeXt of a model.Spec
JSON built as plain nn modules with PyTorch's default init (scripts/bench_train_step.py's builder,
then reset_parameters on every module), SGD Nesterov (lr 0.1, momentum 0.9, weight decay 1e-4),
cosine from lr to 0 within each cycle (per step), shuffled batches (last incomplete batch dropped),
random rot90 + LR/UD flips, per-channel mean/std computed from the training images, per-class
sigmoid BCE; K folds (Id,fold CSV) x C cycles, one snapshot per cycle; out-of-fold and test
predictions averaged over 8 TTA views (the dihedral group) and over snapshots (OOF) or all members
(test); one uniform threshold chosen on the OOF predictions by macro-F1; at least one label per
sample (the arg-max when none passes).

Writes the test set's Kaggle CSV (Id,Predicted) and prints one JSON object on stdout: oof_macro_f1,
threshold, last-epoch mean training loss per fold, seconds, members, params.

Images: DIR/train.csv and DIR/train/{Id}_{red,green,blue,yellow}.png (an `hpa synth` directory), read
with Pillow and resized (bilinear) when their size differs from --size.
"""

import argparse
import csv
import json
import math
import os
import sys
import time


CHANNELS = ("red", "green", "blue", "yellow")


def fail(code, msg):
    print("torch_ref_train.py: " + msg, file=sys.stderr)
    sys.exit(code)


def read_labels(path, classes):
    ids, y = [], []
    with open(path) as f:
        r = csv.reader(f)
        next(r)
        for row in r:
            ids.append(row[0])
            t = [0.0] * classes
            for c in row[1].split():
                t[int(c)] = 1.0
            y.append(t)
    return ids, y


def load_images(np, Image, d, ids, size):
    img_dir = os.path.join(d, "train") if os.path.isdir(os.path.join(d, "train")) else d
    out = np.zeros((len(ids), 4, size, size), dtype=np.uint8)
    for i, sid in enumerate(ids):
        for c, ch in enumerate(CHANNELS):
            im = Image.open(os.path.join(img_dir, "%s_%s.png" % (sid, ch))).convert("L")
            if im.size != (size, size):
                im = im.resize((size, size), Image.BILINEAR)
            out[i, c] = np.asarray(im, dtype=np.uint8)
    return out


def macro_f1(np, pred, truth):
    tp = (pred & truth).sum(0)
    fp = (pred & ~truth).sum(0)
    fn = (~pred & truth).sum(0)
    d = 2 * tp + fp + fn
    f1 = np.where(d > 0, 2 * tp / np.maximum(d, 1), 0.0)
    return float(f1.mean())


def threshold(np, probs, t):
    pred = probs > t
    none = ~pred.any(1)
    pred[none, probs[none].argmax(1)] = True  # at least one label
    return pred


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", required=True, help="training directory (train.csv + train/)")
    ap.add_argument("--folds-csv", required=True, help="Id,fold CSV (the split hpa train wrote)")
    ap.add_argument("--folds", type=int, default=0, help="number of folds (checked against the CSV; 0 = any)")
    ap.add_argument("--spec", required=True, help="model.Spec JSON file (or a manifest.json: its arch)")
    ap.add_argument("--test", required=True, help="held-out directory (train.csv + train/)")
    ap.add_argument("--out-csv", required=True, help="test predictions (Id,Predicted)")
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--cycles", type=int, default=1)
    ap.add_argument("--epochs", type=int, default=15, help="epochs per cycle")
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--lr", type=float, default=0.1)
    ap.add_argument("--momentum", type=float, default=0.9)
    ap.add_argument("--weight-decay", type=float, default=1e-4)
    ap.add_argument("--tta", type=int, default=8, choices=(1, 8))
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--threads", type=int, default=2)
    a = ap.parse_args()
    try:
        import numpy as np
        import torch
        import torch.nn.functional as F
        from PIL import Image
    except Exception as e:
        fail(3, "%s: %s: %s (install python3-torch and python3-pil: scripts/setup.sh)" % (sys.executable, type(e).__name__, e))
    with open(a.spec) as f:
        spec = json.load(f)
    spec = spec.get("arch", spec)
    k = spec["num_classes"]
    torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)
    t0 = time.time()

    ids, y = read_labels(os.path.join(a.data, "train.csv"), k)
    fold_of = {}
    with open(a.folds_csv) as f:
        r = csv.reader(f)
        head = next(r)
        fi = head.index("fold") if "fold" in head else 1
        for row in r:
            fold_of[row[0]] = int(row[fi])
    folds = np.array([fold_of[i] for i in ids])
    nfold = int(folds.max()) + 1
    if a.folds and a.folds != nfold:
        fail(2, "%s has %d folds, --folds says %d" % (a.folds_csv, nfold, a.folds))
    x8 = load_images(np, Image, a.data, ids, a.size)
    y = torch.tensor(y)
    xf = torch.from_numpy(x8).float().div_(255)
    mean = xf.mean((0, 2, 3)).view(1, 4, 1, 1)
    std = xf.std((0, 2, 3), unbiased=False).view(1, 4, 1, 1)
    xf = (xf - mean) / std
    tids, ty = read_labels(os.path.join(a.test, "train.csv"), k)
    tx = (torch.from_numpy(load_images(np, Image, a.test, tids, a.size)).float().div_(255) - mean) / std
    ty = np.array(ty) > 0.5

    from bench_train_step import build  # the shared spec -> module builder (this directory)

    def views(x):
        out = []
        for flip in (False, True):
            b = torch.flip(x, (3,)) if flip else x
            for r in range(4 if a.tta == 8 else 1):
                out.append(torch.rot90(b, r, (2, 3)))
            if a.tta == 1:
                break
        return out

    def predict(m, x):
        m.eval()
        out = []
        with torch.no_grad():
            for i in range(0, len(x), 64):
                xb = x[i:i + 64]
                out.append(torch.stack([torch.sigmoid(m(v)) for v in views(xb)]).mean(0))
        m.train()
        return torch.cat(out).numpy()

    oof = np.zeros((len(ids), k))
    test = np.zeros((len(tids), k))
    members, losses, params = 0, [], 0
    g = torch.Generator().manual_seed(a.seed)
    for f in range(nfold):
        tr = np.nonzero(folds != f)[0]
        va = np.nonzero(folds == f)[0]
        model = build(torch, spec, True)
        for mod in model.modules():  # plain PyTorch: every module's own default init
            if hasattr(mod, "reset_parameters"):
                mod.reset_parameters()
        params = sum(p.numel() for p in model.parameters())
        model.train()
        opt = torch.optim.SGD(model.parameters(), lr=a.lr, momentum=a.momentum, weight_decay=a.weight_decay,
                              nesterov=True)
        spe = len(tr) // a.batch
        total = a.epochs * spe
        snaps = []
        for cyc in range(a.cycles):
            for ep in range(a.epochs):
                perm = torch.randperm(len(tr), generator=g).numpy()
                ep_loss = []
                for b in range(spe):
                    idx = tr[perm[b * a.batch:(b + 1) * a.batch]]
                    xb = xf[idx].clone()
                    rk = torch.randint(0, 4, (len(idx),), generator=g)
                    lr_ = torch.randint(0, 2, (len(idx),), generator=g)
                    ud = torch.randint(0, 2, (len(idx),), generator=g)
                    for j in range(len(idx)):
                        v = xb[j]
                        if lr_[j]:
                            v = torch.flip(v, (2,))
                        if ud[j]:
                            v = torch.flip(v, (1,))
                        xb[j] = torch.rot90(v, int(rk[j]), (1, 2))
                    t = ep * spe + b
                    for grp in opt.param_groups:
                        grp["lr"] = 0.5 * a.lr * (1 + math.cos(math.pi * t / total))
                    opt.zero_grad()
                    loss = F.binary_cross_entropy_with_logits(model(xb), y[idx])
                    loss.backward()
                    opt.step()
                    ep_loss.append(loss.item())
            losses.append(sum(ep_loss) / len(ep_loss))
            snaps.append(predict(model, xf[va]))
            test += predict(model, tx)
            members += 1
        oof[va] = np.mean(snaps, 0)
    test /= members
    truth = y.numpy() > 0.5
    best_t, best = 0.5, -1.0
    for t in [i / 100 for i in range(1, 100)]:
        s = macro_f1(np, threshold(np, oof, t), truth)
        if s > best:
            best_t, best = t, s
    pred = threshold(np, test, best_t)
    with open(a.out_csv, "w") as f:
        f.write("Id,Predicted\n")
        for i, sid in enumerate(tids):
            f.write("%s,%s\n" % (sid, " ".join(str(c) for c in np.nonzero(pred[i])[0])))
    print(json.dumps({"oof_macro_f1": best, "threshold": best_t, "last_epoch_loss": losses,
                      "test_macro_f1": macro_f1(np, pred, ty), "seconds": time.time() - t0,
                      "members": members, "params": params}))


if __name__ == "__main__":
    main()
