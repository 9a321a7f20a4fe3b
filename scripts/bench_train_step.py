#!/usr/bin/env python3
"""PyTorch baseline of `hpa bench train`: timed SGD training steps of one SE-ResNeXt.

The model is built from a model.Spec JSON (internal/model/arch.go) as timm builds it -- conv1/bn1/act1
and maxpool (or timm's replace_stem_pool conv stem), Bottleneck blocks with a grouped conv2, an SE module
with biases, a 1x1 downsample where the shape changes, global average pooling and fc -- with timm's
module and parameter names, so its state dict can be compared name by name with Spec.Tensors().

It runs SGD (Nesterov momentum) steps with per-class sigmoid BCE on a fixed random batch, the work of
one Go+libtorch TrainStep: set the lr, zero the gradients, forward, loss, backward, step, read the loss.
Warm-up steps are excluded from the timings. It prints one JSON object on stdout:

  torch_version, python, threads, tcmalloc (libtcmalloc mapped, from /proc/self/maps), params,
  tensors [[name, shape], ...] (state dict, buffers included), wall_s / cpu_s per timed step,
  loss per timed step.

Exit status 3: torch cannot be imported by this interpreter (message on stderr); 2: bad arguments or
spec. Run it with the interpreter of Debian's python3-torch (/usr/bin/python3), which uses the same
libtorch as the hpa training shim; `hpa bench train` starts it with LD_PRELOAD=libtcmalloc_minimal.so.4.
"""

import argparse
import json
import sys
import time


def fail(code, msg):
    print("bench_train_step.py: " + msg, file=sys.stderr)
    sys.exit(code)


def parse_args():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--spec", required=True, help="model.Spec JSON file")
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--steps", type=int, default=10, help="timed steps")
    ap.add_argument("--warmup", type=int, default=2, help="untimed steps first")
    ap.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--lr", type=float, default=0.1)
    ap.add_argument("--momentum", type=float, default=0.9)
    ap.add_argument("--weight-decay", type=float, default=1e-4)
    ap.add_argument("--no-inplace", action="store_true",
                    help="out-of-place ReLUs (timm uses inplace=True; the libtorch shim out-of-place)")
    a = ap.parse_args()
    for k in ("size", "batch", "steps", "threads"):
        if getattr(a, k) <= 0:
            fail(2, "--%s must be positive, got %d" % (k, getattr(a, k)))
    if a.warmup < 0:
        fail(2, "--warmup must be >= 0, got %d" % a.warmup)
    return a


def load_spec(path):
    try:
        with open(path) as f:
            s = json.load(f)
    except (OSError, ValueError) as e:
        fail(2, "spec %s: %s" % (path, e))
    need = ("in_chans", "num_classes", "stem", "stem_width", "depths", "planes", "cardinality",
            "base_width", "expansion", "se_reduction", "se_divisor")
    missing = [k for k in need if k not in s]
    if missing:
        fail(2, "spec %s: missing %s" % (path, ", ".join(missing)))
    if s["stem"] not in ("maxpool", "conv"):
        fail(2, "spec %s: stem %r is not maxpool or conv" % (path, s["stem"]))
    if len(s["depths"]) == 0 or len(s["depths"]) != len(s["planes"]):
        fail(2, "spec %s: depths and planes must have the same non-zero length" % path)
    return s


def make_divisible(v, divisor):
    # timm's make_divisible(v, divisor, min_value=None, round_limit=0.) as SEModule calls it.
    return max(divisor, int(v + divisor / 2) // divisor * divisor)


def build(torch, s, inplace):
    nn = torch.nn

    class SEModule(nn.Module):
        def __init__(self, ch, rd):
            super().__init__()
            self.fc1 = nn.Conv2d(ch, rd, 1, bias=True)
            self.act = nn.ReLU(inplace=inplace)
            self.fc2 = nn.Conv2d(rd, ch, 1, bias=True)

        def forward(self, x):
            se = x.mean((2, 3), keepdim=True)
            se = self.fc2(self.act(self.fc1(se)))
            return x * se.sigmoid()

    class Bottleneck(nn.Module):
        def __init__(self, inp, width, out, stride, groups, rd, downsample):
            super().__init__()
            self.conv1 = nn.Conv2d(inp, width, 1, bias=False)
            self.bn1 = nn.BatchNorm2d(width)
            self.act1 = nn.ReLU(inplace=inplace)
            self.conv2 = nn.Conv2d(width, width, 3, stride=stride, padding=1, groups=groups, bias=False)
            self.bn2 = nn.BatchNorm2d(width)
            self.act2 = nn.ReLU(inplace=inplace)
            self.conv3 = nn.Conv2d(width, out, 1, bias=False)
            self.bn3 = nn.BatchNorm2d(out)
            self.se = SEModule(out, rd)
            self.act3 = nn.ReLU(inplace=inplace)
            self.downsample = None
            if downsample:
                self.downsample = nn.Sequential(nn.Conv2d(inp, out, 1, stride=stride, bias=False),
                                                nn.BatchNorm2d(out))

        def forward(self, x):
            shortcut = x
            x = self.act1(self.bn1(self.conv1(x)))
            x = self.act2(self.bn2(self.conv2(x)))
            x = self.se(self.bn3(self.conv3(x)))
            if self.downsample is not None:
                shortcut = self.downsample(shortcut)
            x = x + shortcut
            return self.act3(x)

    class SEResNeXt(nn.Module):
        def __init__(self):
            super().__init__()
            sw = s["stem_width"]
            self.conv1 = nn.Conv2d(s["in_chans"], sw, 7, stride=2, padding=3, bias=False)
            self.bn1 = nn.BatchNorm2d(sw)
            self.act1 = nn.ReLU(inplace=inplace)
            if s["stem"] == "conv":
                self.maxpool = nn.Sequential(nn.Conv2d(sw, sw, 3, stride=2, padding=1, bias=False),
                                             nn.BatchNorm2d(sw), nn.ReLU(inplace=inplace))
            else:
                self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
            inp = sw
            for st, (depth, planes) in enumerate(zip(s["depths"], s["planes"])):
                blocks = []
                out = planes * s["expansion"]
                width = (planes * s["base_width"] // 64) * s["cardinality"]
                rd = make_divisible(out / s["se_reduction"], s["se_divisor"])
                for b in range(depth):
                    stride = 2 if b == 0 and st > 0 else 1
                    ds = b == 0 and (stride != 1 or inp != out)
                    blocks.append(Bottleneck(inp, width, out, stride, s["cardinality"], rd, ds))
                    inp = out
                self.add_module("layer%d" % (st + 1), nn.Sequential(*blocks))
            self.num_stages = len(s["depths"])
            self.fc = nn.Linear(inp, s["num_classes"])

        def forward(self, x):
            x = self.maxpool(self.act1(self.bn1(self.conv1(x))))
            for st in range(self.num_stages):
                x = getattr(self, "layer%d" % (st + 1))(x)
            return self.fc(x.mean((2, 3)))

    m = SEResNeXt()
    # timm ResNet init: kaiming-normal fan_out convs, BN 1/0, zero_init_last (bn3 weight 0).
    for mod in m.modules():
        if isinstance(mod, nn.Conv2d):
            nn.init.kaiming_normal_(mod.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(mod, nn.BatchNorm2d):
            nn.init.ones_(mod.weight)
            nn.init.zeros_(mod.bias)
    for mod in m.modules():
        if isinstance(mod, Bottleneck):
            nn.init.zeros_(mod.bn3.weight)
    return m


def tcmalloc_mapped():
    try:
        with open("/proc/self/maps") as f:
            return "libtcmalloc" in f.read()
    except OSError:
        return False


def main():
    a = parse_args()
    s = load_spec(a.spec)
    try:
        import torch
        import torch.nn.functional as F
    except Exception as e:  # ImportError, or a broken install raising something else
        fail(3, "%s cannot import torch (%s: %s); install Debian's python3-torch "
                "(scripts/setup.sh does with the libtorch shim)" % (sys.executable, type(e).__name__, e))

    torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)
    model = build(torch, s, not a.no_inplace)
    model.train()
    opt = torch.optim.SGD(model.parameters(), lr=a.lr, momentum=a.momentum, weight_decay=a.weight_decay,
                          nesterov=a.momentum > 0)
    g = torch.Generator().manual_seed(a.seed)
    x = torch.randn(a.batch, s["in_chans"], a.size, a.size, generator=g)
    y = (torch.rand(a.batch, s["num_classes"], generator=g) < 0.1).float()

    def step():
        for group in opt.param_groups:
            group["lr"] = a.lr
        opt.zero_grad()
        loss = F.binary_cross_entropy_with_logits(model(x), y)
        loss.backward()
        opt.step()
        return loss.item()

    for _ in range(a.warmup):
        step()
    wall, cpu, losses = [], [], []
    for _ in range(a.steps):
        w0, c0 = time.perf_counter(), time.process_time()
        losses.append(step())
        cpu.append(time.process_time() - c0)
        wall.append(time.perf_counter() - w0)

    print(json.dumps({
        "torch_version": torch.__version__,
        "python": sys.executable,
        "threads": torch.get_num_threads(),
        "tcmalloc": tcmalloc_mapped(),
        "inplace_relu": not a.no_inplace,
        "params": sum(p.numel() for p in model.parameters()),
        "tensors": [[k, list(v.shape)] for k, v in model.state_dict().items()],
        "wall_s": wall,
        "cpu_s": cpu,
        "loss": losses,
    }))


if __name__ == "__main__":
    main()
