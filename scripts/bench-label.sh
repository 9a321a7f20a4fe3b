#!/usr/bin/env bash
# make bench-label: `hpa label` against its peer a user would otherwise run, PyTorch eager
# (scripts/bench_label_eager.py: the same exported model set loaded by name into PyTorch, 8 dihedral
# views per sample, the same threads), on the same samples in the same run. For each model:
# samples/s of both, counted over the whole process (start, model load, labeling: what a user
# waits for) and over the labeling loop alone, their ratios (hpa / eager; goal >= 2.0), and the
# largest difference of their probabilities (the two must compute the same model). ratio_cpu is
# the same ratio on the processes' CPU time (user + system), which the neighbours of a shared
# machine distort less than the wall clock.
#
#   BENCH_LABEL_SAMPLES=16 BENCH_LABEL_THREADS=2 scripts/bench-label.sh
# Models: the bundled tiny set (models/bundled, seresnext_tiny 128 px, 2 members) and an exported
# seresnext50_32x4d at 256 px (1 member, fresh weights; `hpa model export`). Samples: `hpa synth`
# 512 px four-channel samples (hpa-data/bench-label). Needs bin/hpa, ONNX Runtime and Debian's
# python3-torch + python3-pil (scripts/setup.sh --only bench).
set -euo pipefail
cd "$(dirname "$0")/.."
N=${BENCH_LABEL_SAMPLES:-16}
T=${BENCH_LABEL_THREADS:-2}
B=${BENCH_LABEL_BATCH:-8}
PY=${BENCH_LABEL_PYTHON:-/usr/bin/python3}
W=hpa-data/bench-label
mkdir -p "$W"
if [ ! -d "$W/synth-$N/train" ]; then
  bin/hpa synth --out "$W/synth-$N" --samples "$N" --size 512 --seed 7 >/dev/null
fi
if [ ! -f "$W/seresnext50-256/manifest.json" ]; then
  bin/hpa model export --arch seresnext50_32x4d --size 256 --members 1 --out "$W/seresnext50-256" >/dev/null
fi
DATA=$W/synth-$N/train
echo "hpa bench-label: $N samples of $DATA (512 px PNGs), $T threads both sides, batch $B, 8 TTA views"
echo "load average: $(cut -d' ' -f1-3 /proc/loadavg), $(nproc) CPUs"
printf '%-26s %7s %7s %10s %10s %12s %12s %8s %8s %9s %8s %s\n' model members samples \
  hpa_proc/s hpa_loop/s eager_proc/s eager_loop/s ratio_p ratio_l ratio_cpu max_dp verdict
fail=0
for m in models/bundled/manifest.json "$W/seresnext50-256/manifest.json"; do
  out=$(mktemp -d)
  t0=$(date +%s.%N)
  /usr/bin/time -f '%U %S' -o "$out.hpa.cpu" bin/hpa label "$DATA" --model "$m" --out "$out" --threads "$T" --batch "$B" 2>"$out.log" >/dev/null
  t1=$(date +%s.%N)
  /usr/bin/time -f '%U %S' -o "$out.eager.cpu" "$PY" scripts/bench_label_eager.py "$m" "$DATA" --threads "$T" --batch "$B" >"$out.eager.json"
  t2=$(date +%s.%N)
  "$PY" - "$m" "$out" "$t0" "$t1" "$t2" "$N" <<'PYEOF' || fail=1
import glob, json, os, re, sys
m, out, t0, t1, t2, n = sys.argv[1], sys.argv[2], float(sys.argv[3]), float(sys.argv[4]), float(sys.argv[5]), int(sys.argv[6])
man = json.load(open(m))
eager = json.load(open(out + ".eager.json"))
loop = [float(x) for x in re.findall(r"([0-9.]+) samples/s", open(out + ".log").read())]
hpa_loop = loop[-1] if loop else 0.0
labels = {}
for f in glob.glob(os.path.join(out, "*.json")):
    d = json.load(open(f))
    if "probabilities" in d:
        labels[d["sample_id"]] = [c["p"] for c in d["probabilities"]]
if len(labels) != n or eager["samples"] != n:
    sys.exit("bench-label: hpa labeled %d, eager %d of %d samples" % (len(labels), eager["samples"], n))
dp = max(abs(a - b) for sid, ps in labels.items() for a, b in zip(ps, eager["probabilities"][sid]))
hpa_p, eager_p = n / (t1 - t0), n / (t2 - t1)
cpu = lambda f: sum(float(x) for x in open(f).read().split()[-2:])
rc = cpu(out + ".eager.cpu") / cpu(out + ".hpa.cpu")
rp, rl = hpa_p / eager_p, hpa_loop / eager["samples_per_s"]
name = "%s %dpx" % (man["arch"]["name"], man["input_size"])
ok = rp >= 2.0 and dp < 0.02
print("%-26s %7d %7d %10.3f %10.3f %12.3f %12.3f %8.2f %8.2f %9.2f %8.4f %s" % (name, eager["members"], n, hpa_p, hpa_loop,
      eager_p, eager["samples_per_s"], rp, rl, rc, dp, "PASS" if ok else "FAIL"))
PYEOF
  rm -rf "$out" "$out.log" "$out.eager.json" "$out.hpa.cpu" "$out.eager.cpu"
done
echo "ratio_p: hpa / eager samples/s over the whole process (goal >= 2.0, the verdict); ratio_l: the labeling loops alone;"
echo "ratio_cpu: eager / hpa process CPU time for the same samples;"
echo "max_dp: largest |p_hpa - p_eager| over all samples and classes (must be < 0.02: the same model)"
exit $fail
