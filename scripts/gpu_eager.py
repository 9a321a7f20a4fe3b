#!/usr/bin/env python3
"""PyTorch eager baseline of the issue-3 GPU check: the same SE-ResNeXt (built from the spec JSON by
scripts/bench_train_step.py's build()), SGD Nesterov, BCE, random data, timed fp32 and bfloat16-autocast
training steps. Prints one JSON object.

    python3 scripts/gpu_eager.py SPEC.json --size 512 --batch 32 --steps 20 [--device cuda:0]
"""
import argparse
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench_train_step as B  # noqa: E402


def main():
    p = argparse.ArgumentParser()
    p.add_argument("spec")
    p.add_argument("--size", type=int, default=512)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--device", default="cuda:0")
    a = p.parse_args()
    import torch
    import torch.nn.functional as F
    s = B.load_spec(a.spec)
    dev = torch.device(a.device)
    out = {"torch": torch.__version__, "device": str(dev), "size": a.size, "batch": a.batch, "steps": a.steps}
    for amp in (False, True):
        if amp and dev.type != "cuda":
            continue
        torch.manual_seed(1)
        model = B.build(torch, s, True).to(dev).train()
        opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-4, nesterov=True)
        x = torch.randn(a.batch, s["in_chans"], a.size, a.size, device=dev)
        y = (torch.rand(a.batch, s["num_classes"], device=dev) < 0.1).float()

        def step():
            opt.zero_grad(set_to_none=True)
            with torch.autocast(device_type=dev.type, dtype=torch.bfloat16, enabled=amp):
                logits = model(x)
            loss = F.binary_cross_entropy_with_logits(logits.float(), y)
            loss.backward()
            opt.step()
            return loss.item()  # syncs, as the Go side's step does

        for _ in range(3):
            step()
        t0 = time.perf_counter()
        for _ in range(a.steps):
            loss = step()
        el = time.perf_counter() - t0
        out["amp_bf16_images_per_s" if amp else "fp32_images_per_s"] = a.steps * a.batch / el
        out["amp_loss" if amp else "fp32_loss"] = loss
    print(json.dumps(out))


if __name__ == "__main__":
    main()
