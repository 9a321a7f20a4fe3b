#!/usr/bin/env python3
"""PyTorch-eager peer of `hpa label` (make bench-label): the same exported model set, loaded by name
into PyTorch, labels the same sample directory with the same TTA (8 dihedral views per sample,
sigmoid, mean over views and members) on the same number of threads. Prints one JSON object.

    /usr/bin/python3 scripts/bench_label_eager.py MANIFEST.json DIR --threads 2 --batch 8

The SE-ResNeXt is built from the manifest's arch spec by scripts/bench_train_step.py's build(); the
weights are the initializers of each member's ONNX file, matched to the module's state dict by name
and shape (every parameter and buffer must be found; the run fails otherwise). Images: the four
`{Id}_{red,green,blue,yellow}.png` of each complete sample in DIR, decoded with PIL, resized to the
input size (PIL box filter), stacked in the manifest's channel order, /255, normalized.
"""
import argparse
import json
import os
import struct
import sys
import time

T0 = time.perf_counter()
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench_train_step as B  # noqa: E402


def varint(b, i):
    v = s = 0
    while True:
        c = b[i]
        i += 1
        v |= (c & 0x7F) << s
        s += 7
        if c < 0x80:
            return v, i


def fields(b):
    """Yields (field number, wire type, value) of a protobuf message; value is bytes for wire type 2."""
    i = 0
    while i < len(b):
        key, i = varint(b, i)
        f, w = key >> 3, key & 7
        if w == 0:
            v, i = varint(b, i)
        elif w == 1:
            v, i = b[i:i + 8], i + 8
        elif w == 5:
            v, i = b[i:i + 4], i + 4
        elif w == 2:
            n, i = varint(b, i)
            v, i = b[i:i + n], i + n
        else:
            raise ValueError("unsupported wire type %d" % w)
        yield f, w, v


def onnx_initializers(path, torch, np):
    """name -> float32 tensor of the ONNX model's graph initializers (ModelProto.graph = 7,
    GraphProto.initializer = 5; TensorProto dims = 1, data_type = 2, float_data = 4, name = 8,
    raw_data = 9)."""
    with open(path, "rb") as f:
        data = f.read()
    graph = next(v for f, w, v in fields(data) if f == 7)
    out = {}
    for f, w, v in fields(graph):
        if f != 5:
            continue
        dims, dtype, name, raw, floats = [], 1, "", None, []
        for tf, tw, tv in fields(v):
            if tf == 1:
                if tw == 2:
                    j = 0
                    while j < len(tv):
                        d, j = varint(tv, j)
                        dims.append(d)
                else:
                    dims.append(tv)
            elif tf == 2:
                dtype = tv
            elif tf == 4:
                if tw == 2:
                    floats.extend(struct.unpack("<%df" % (len(tv) // 4), tv))
                else:
                    floats.append(struct.unpack("<f", tv)[0])
            elif tf == 8:
                name = tv.decode()
            elif tf == 9:
                raw = tv
        if dtype == 1:
            arr = np.frombuffer(raw, dtype="<f4") if raw is not None else np.array(floats, dtype="<f4")
        elif dtype == 7:
            arr = np.frombuffer(raw, dtype="<i8") if raw is not None else np.array([], dtype="<i8")
        else:
            continue
        out[name] = torch.from_numpy(arr.copy().reshape(dims))
    return out


def samples(d):
    chans = ("red", "green", "blue", "yellow")
    have = {}
    for n in os.listdir(d):
        if not n.endswith(".png"):
            continue
        sid, _, ch = n[:-4].rpartition("_")
        if ch in chans:
            have.setdefault(sid, {})[ch] = os.path.join(d, n)
    return [(sid, have[sid]) for sid in sorted(have) if len(have[sid]) == 4]


def main():
    p = argparse.ArgumentParser()
    p.add_argument("manifest")
    p.add_argument("dir")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--batch", type=int, default=8)
    a = p.parse_args()
    import numpy as np
    import torch
    from PIL import Image
    torch.set_num_threads(a.threads)
    with open(a.manifest) as f:
        m = json.load(f)
    spec, size = m["arch"], m["input_size"]
    order = m["channel_order"]
    mean = torch.tensor(m["normalization"]["mean"]).view(1, -1, 1, 1)
    std = torch.tensor(m["normalization"]["std"]).view(1, -1, 1, 1)
    base = os.path.dirname(os.path.abspath(a.manifest))
    t_load = time.perf_counter()
    members = []
    for mem in m["members"]:
        net = B.build(torch, spec, True).eval()
        inits = onnx_initializers(os.path.join(base, mem["file"]), torch, np)
        sd = net.state_dict()
        missing = [k for k, v in sd.items() if not k.endswith("num_batches_tracked") and
                   (k not in inits or tuple(inits[k].shape) != tuple(v.shape))]
        if missing:
            print("bench_label_eager: %s: %d tensors not found by name and shape in the ONNX file, e.g. %s"
                  % (mem["file"], len(missing), missing[:3]), file=sys.stderr)
            sys.exit(1)
        net.load_state_dict({k: inits[k] for k in sd if k in inits}, strict=False)
        members.append(net)
    load_s = time.perf_counter() - t_load
    todo = samples(a.dir)
    if not todo:
        print("bench_label_eager: no complete samples in %s" % a.dir, file=sys.stderr)
        sys.exit(1)
    t_loop = time.perf_counter()
    probs = {}
    with torch.no_grad():
        for b0 in range(0, len(todo), a.batch):
            chunk = todo[b0:b0 + a.batch]
            xs = []
            for sid, files in chunk:
                planes = [np.asarray(Image.open(files[ch]).convert("L").resize((size, size), Image.BOX), dtype=np.float32)
                          for ch in order]
                xs.append(np.stack(planes))
            x = (torch.from_numpy(np.stack(xs)) / 255.0 - mean) / std
            views = []
            for t in (x, x.transpose(2, 3)):
                for k in range(4):
                    views.append(torch.rot90(t, k, (2, 3)))
            v = torch.cat(views)  # 8 views x batch
            out = 0
            for net in members:
                out = out + torch.sigmoid(net(v)).view(8, len(chunk), -1).mean(0)
            out = out / len(members)
            for (sid, _), pr in zip(chunk, out):
                probs[sid] = pr.tolist()
    loop_s = time.perf_counter() - t_loop
    print(json.dumps({"samples": len(probs), "members": len(members), "views": 8, "threads": torch.get_num_threads(),
                      "torch": torch.__version__, "load_s": load_s, "loop_s": loop_s,
                      "samples_per_s": len(probs) / loop_s, "process_s": time.perf_counter() - T0,
                      "probabilities": probs}))


if __name__ == "__main__":
    main()
