#!/usr/bin/env python3
"""PyTorch side of the step-parity test of `hpa train` (internal/train/parity_test.go).

Builds the SE-ResNeXt of a model.Spec JSON as a plain PyTorch module with timm's parameter names
(scripts/bench_train_step.py's builder), loads the initial weights the Go trainer exported (a
safetensors file keyed by timm names: every parameter and BatchNorm buffer must match by name and
shape), then replays the exact batches the Go data loader produced (inputs after augmentation and
normalization, with their multi-hot targets) with the same learning rate per step, in BatchNorm train
mode, with torch.optim.SGD (Nesterov, weight decay) or torch.optim.AdamW and per-class sigmoid BCE
averaged over the batch. Writes the final weights (safetensors, timm names) and prints JSON
{"losses": [...], "torch_version": ...} on stdout.

Usage: torch_steps.py RUN.json   where RUN.json holds
  spec (model.Spec JSON object), init, out (safetensors paths), x, y (raw little-endian float32
  files: steps*batch*C*S*S inputs, steps*batch*classes targets), steps, batch, size, lrs [steps],
  optimizer (sgd | adamw), momentum, weight_decay, nesterov, threads.
Exit status 3: torch cannot be imported.
"""

import json
import os
import struct
import sys


def fail(code, msg):
    print("torch_steps.py: " + msg, file=sys.stderr)
    sys.exit(code)


def read_safetensors(torch, path):
    with open(path, "rb") as f:
        b = f.read()
    (n,) = struct.unpack("<Q", b[:8])
    header = json.loads(b[8:8 + n])
    data = b[8 + n:]
    out = {}
    for name, meta in header.items():
        if name == "__metadata__":
            continue
        if meta["dtype"] != "F32":
            fail(2, "%s: tensor %s is %s, want F32" % (path, name, meta["dtype"]))
        lo, hi = meta["data_offsets"]
        t = torch.frombuffer(bytearray(data[lo:hi]), dtype=torch.float32)
        out[name] = t.reshape(meta["shape"]) if meta["shape"] else t.reshape(())
    return out


def write_safetensors(path, tensors):
    header, blobs, off = {}, [], 0
    for name in sorted(tensors):
        t = tensors[name].detach().contiguous().to("cpu").float()
        raw = t.numpy().tobytes() if hasattr(t, "numpy") else bytes(t.untyped_storage())
        header[name] = {"dtype": "F32", "shape": list(t.shape), "data_offsets": [off, off + len(raw)]}
        blobs.append(raw)
        off += len(raw)
    h = json.dumps(header).encode()
    h += b" " * ((8 - len(h) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        for r in blobs:
            f.write(r)


def main():
    if len(sys.argv) != 2:
        fail(2, "usage: torch_steps.py RUN.json")
    with open(sys.argv[1]) as f:
        run = json.load(f)
    try:
        import torch
        import torch.nn.functional as F
    except Exception as e:
        fail(3, "%s cannot import torch (%s: %s)" % (sys.executable, type(e).__name__, e))
    torch.set_num_threads(int(run.get("threads", 1)))
    s = run["spec"]
    from bench_train_step import build  # the shared spec -> module builder (this directory)
    model = build(torch, s, False)
    init = read_safetensors(torch, run["init"])
    own = model.state_dict()
    missing = [k for k in own if k not in init and not k.endswith("num_batches_tracked")]
    unknown = [k for k in init if k not in own]
    if missing or unknown:
        fail(2, "weights do not match the module by name: missing %s, unknown %s" % (missing[:5], unknown[:5]))
    for k, v in init.items():
        if tuple(own[k].shape) != tuple(v.shape):
            fail(2, "%s: shape %s, module has %s" % (k, list(v.shape), list(own[k].shape)))
    model.load_state_dict(init, strict=False)
    model.train()
    if run["optimizer"] == "sgd":
        opt = torch.optim.SGD(model.parameters(), lr=run["lrs"][0], momentum=run["momentum"],
                              weight_decay=run["weight_decay"], nesterov=bool(run["nesterov"]))
    elif run["optimizer"] == "adamw":
        opt = torch.optim.AdamW(model.parameters(), lr=run["lrs"][0], weight_decay=run["weight_decay"])
    else:
        fail(2, "optimizer %r: sgd or adamw" % run["optimizer"])
    steps, n, size = run["steps"], run["batch"], run["size"]
    c, k = s["in_chans"], s["num_classes"]
    with open(run["x"], "rb") as f:
        xs = torch.frombuffer(bytearray(f.read()), dtype=torch.float32).reshape(steps, n, c, size, size)
    with open(run["y"], "rb") as f:
        ys = torch.frombuffer(bytearray(f.read()), dtype=torch.float32).reshape(steps, n, k)
    losses = []
    for i in range(steps):
        for g in opt.param_groups:
            g["lr"] = run["lrs"][i]
        opt.zero_grad()
        loss = F.binary_cross_entropy_with_logits(model(xs[i]), ys[i])
        loss.backward()
        opt.step()
        losses.append(float(loss.item()))
    write_safetensors(run["out"], model.state_dict())
    print(json.dumps({"losses": losses, "torch_version": torch.__version__}))


if __name__ == "__main__":
    main()
