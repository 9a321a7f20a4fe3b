# The two commands of the README:  make demo  (set up + run the main job)  and  make test.
SHELL := /bin/bash
GO ?= go
export CGO_ENABLED := 1

.PHONY: setup setup-demo setup-bench build test bench vet demo
# Installs what is missing (apt packages, ONNX Runtime, the libtorch shim, MinIO, the S3 clients,
# chromium, helm: the parts `make test` uses) and builds bin/hpa, which then works from the
# repository root with no environment variables. `scripts/setup.sh --list` shows the parts.
setup:
	scripts/setup.sh
	$(GO) build -o bin/hpa ./cmd/hpa

# Only what labeling needs (the decode libraries and ONNX Runtime): no libtorch, MinIO or PyTorch.
setup-demo:
	scripts/setup.sh --only demo

# The training benchmarks: decode, ONNX Runtime, libtorch + the shim and the PyTorch baseline.
setup-bench:
	scripts/setup.sh --only bench

build:
	$(GO) build -o bin/hpa ./cmd/hpa

vet:
	$(GO) vet ./...

test: setup
	$(GO) vet ./...
	$(GO) test -race -count=1 -timeout 25m ./...
	$(MAKE) test-chart

# The Helm chart and the images (charts/hpa, deploy/): helm lint + template of the values matrix,
# strict decoding into k8s.io/api / KEDA types, generated docs in sync, config.yaml mirror,
# Dockerfile rules. A module of its own (test/k8s): Kubernetes' and KEDA's trees stay out of go.mod.
.PHONY: test-chart chart-docs test-k8s
test-chart:
	cd test/k8s && $(GO) vet ./... && $(GO) test -count=1 -timeout 15m ./...

# Regenerates the values table of charts/hpa/README.md and charts/hpa/values.schema.json from
# charts/hpa/values.yaml.
chart-docs:
	cd test/k8s && $(GO) run ./cmd/chartdocs ../../charts/hpa

# The install test against a real Kubernetes control plane (etcd, kube-apiserver,
# kube-controller-manager, kube-scheduler built from source into .cache/bin by setup --k8s: ~10 min
# cold on 2 idle cores, far more under load, so not part of `make test`; about a minute once built): helm
# install/upgrade/uninstall, scheduling of GPU and CPU workloads on kubelet-less nodes.
test-k8s: setup
	scripts/setup.sh --k8s
	cd test/k8s && HPA_K8S=1 $(GO) test -count=1 -timeout 20m -run 'TestInstall' -v ./...

# The main job on the embedded default: the whole service on this machine, a synthetic plate uploaded
# through S3, its labels and macro-F1 (hpa demo); it ends by printing the plate viewer's URL. Run from a
# terminal, the service and the viewer stay up until Ctrl-C (--serve). DEMO_ARGS overrides the flags.
DEMO_ARGS ?= $(if $(shell [ -t 0 ] && echo tty),--serve,)
demo: setup-demo build
	bin/hpa demo $(DEMO_ARGS)

bench: setup
	$(GO) test -run '^$$' -bench . -benchtime 3x ./...

# Training consumer orchestration overhead (issue 10): a K=4 run through the coordinator and one
# worker (S3 staging, per-epoch S3 checkpoints, merge) vs `hpa train` of the same folds in one
# process, alternating rounds; prints the wall ratio (goal <= 1.05). Workload:
# HPA_BENCH_TRAINING_SAMPLES/_SIZE/_EPOCHS (here 96 samples, 128 px, 8 epochs; the test alone defaults to 64 px, 3 epochs).
.PHONY: bench-training
bench-training: setup
	HPA_BENCH_TRAINING_SIZE=$${HPA_BENCH_TRAINING_SIZE:-128} HPA_BENCH_TRAINING_EPOCHS=$${HPA_BENCH_TRAINING_EPOCHS:-8} \
	  $(GO) test -run '^$$' -bench TrainingOverhead -benchtime 1x -timeout 60m ./consumers/training

# docs/benchmarks.md from the saved benchmark outputs docs/bench/*.txt (one file per section, a `#`
# header naming the title and the command): rerun a section's command, save its output there, then
# make bench-report. internal/benchreport's test fails while the two disagree.
.PHONY: bench-report
bench-report:
	$(GO) run ./internal/benchreport/cmd/benchreport docs/bench docs/benchmarks.md

# Regenerate the ONNX protobuf Go types (internal/model/onnx/onnxpb) from the committed onnx.proto.
.PHONY: gen-onnxpb
gen-onnxpb:
	scripts/gen-onnxpb.sh

# A synthetic HPA dataset in the competition format (hpa-data/synth, git-ignored). SYNTH_ARGS overrides.
.PHONY: synth
SYNTH_ARGS ?= --out hpa-data/synth --samples 200 --size 512 --seed 1
synth: build
	bin/hpa synth $(SYNTH_ARGS)

# Fuzz the channel decoders (PNG/TIFF/JPEG, internal/pipeline) for FUZZTIME; crashers land in
# internal/pipeline/testdata/fuzz. The short minimize time keeps the large real seeds from stalling it.
.PHONY: fuzz-decode
FUZZTIME ?= 30s
fuzz-decode:
	$(GO) test ./internal/pipeline -run '^$$' -fuzz FuzzDecodeChannel -fuzztime $(FUZZTIME) -fuzzminimizetime 2s

# Every fuzz target of the module (S3 event parser, train.csv / label CSV / label JSON readers, the
# manifest reader, the channel decoders, aws-chunked bodies, ...), each for FUZZTIME, one after
# another (scripts/fuzz.sh finds them; FUZZ=regexp picks some). Crashers land in
# <package>/testdata/fuzz/ as regression seeds that `go test` then runs.
.PHONY: fuzz
fuzz:
	FUZZTIME=$(FUZZTIME) scripts/fuzz.sh

# Integration tests against a real MinIO server with native NATS JetStream notifications (binary
# built by scripts/setup.sh into .cache/bin/minio; HPA_MINIO_BIN overrides).
.PHONY: test-minio
test-minio:
	scripts/setup.sh --only demo,minio
	$(GO) test -race -count=1 -run 'MinIO|NativeNATS|NoStream|FindBinary|TailBuffer' ./internal/testenv/minio ./consumers/inference

# Training benchmarks in one command: Go+libtorch vs PyTorch train step on the same libtorch (goal
# ratio <= 1.05) and data-loader vs train-step samples/s (goal >= 1.5). BENCH_TRAIN_ARGS overrides
# (e.g. --arch seresnext50_32x4d --batch 8); results are recorded in docs/benchmarks.md.
.PHONY: bench-train bench-train-synth
BENCH_TRAIN_ARGS ?= --arch seresnext_tiny --size 128 --batch 16 --steps 10 --threads 1 --workers 2
# The loader decodes real HPA pixels when ../shared/hpa-real is there (100 four-channel samples
# regrouped from its PNGs by scripts/real-loader-set.sh), else an `hpa synth` set, whose noisier,
# Average-filtered PNGs decode about 2x slower than real ones.
bench-train: setup-bench build
	if [ -f ../shared/hpa-real/train.csv ]; then \
	  scripts/real-loader-set.sh hpa-data/real-loader && \
	  bin/hpa bench train $(BENCH_TRAIN_ARGS) --data hpa-data/real-loader --samples 0; \
	else bin/hpa bench train $(BENCH_TRAIN_ARGS); fi

# The loader on synthetic PNGs instead.
bench-train-synth: setup-bench build
	bin/hpa bench train $(BENCH_TRAIN_ARGS)

# `hpa label` vs PyTorch eager (the same exported model loaded by name, 8 dihedral views, the same
# threads) on the same samples: samples/s ratio, goal >= 2.0, for the bundled tiny set and
# seresnext50_32x4d at 256 px. BENCH_LABEL_SAMPLES / _THREADS / _BATCH override (16 / 2 / 8).
.PHONY: bench-label
bench-label: setup-bench build
	scripts/bench-label.sh

# Training quality (issue 7): hpa train at its defaults vs the plain PyTorch reference trainer
# (scripts/torch_ref_train.py) on `hpa synth` 2000/400 at 64 px, seresnext_tiny and seresnext_small,
# two seeds, 2 folds x 1 cycle x 15 epochs, batch 32, 8-view TTA; prints the held-out macro-F1s and
# hpa - PyTorch (goal >= +0.03); then seresnext_small at 5 folds x 3 cycles x 10 epochs, the ensemble
# against each member alone on 2000 held-out samples, each with its own OOF thresholds (goal >= +0.02;
# docs/quality-findings.md says why not seresnext_tiny). bench-ablate trains hpa with one recipe part changed at a time and
# writes docs/quality.md from the results (scripts/quality_doc.py). Long: run on an idle machine.
.PHONY: bench-quality bench-ablate
BENCH_QUALITY_ARGS ?= --work hpa-data/bench-quality --json hpa-data/bench-quality/rows.jsonl
bench-quality: setup-bench build
	nice -n 10 /usr/bin/python3 scripts/bench_quality.py $(BENCH_QUALITY_ARGS)
	nice -n 10 /usr/bin/python3 scripts/bench_quality.py $(BENCH_QUALITY_ARGS) --presets seresnext_small --sides hpa \
	  --folds 5 --cycles 3 --epochs 10 --test 2000 --tag ensemble-5x3x10 --score-members

bench-ablate: setup-bench build
	nice -n 10 scripts/bench_ablate.sh hpa-data/bench-ablate

# docs/quality.md from the committed result rows (append a run's rows to docs/quality-rows.jsonl first).
.PHONY: quality-doc
quality-doc:
	/usr/bin/python3 scripts/quality_doc.py --note-file docs/quality-notes.txt docs/quality-rows.jsonl > docs/quality.md

# Inference service benchmarks in one command: end-to-end samples/s through
# NATS + S3 + decode + batching + JSON vs the raw model in the same run (e2e/raw, goal >= 0.90) and
# sample-ready events/s from S3 events (vs_goal_20k, goal >= 1).
.PHONY: bench-inference
bench-inference:
	$(GO) test -run '^$$' -bench 'EndToEnd|ReadyEvents' -benchtime 3x ./consumers/inference
