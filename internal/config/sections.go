package config

import (
	"errors"
	"fmt"
	"runtime"
	"strings"
	"time"

	"github.com/spf13/cast"
	"github.com/spf13/viper"

	"github.com/hpa-plates/hpa/consumers/inference"
	"github.com/hpa-plates/hpa/internal/benchtrain"
	"github.com/hpa-plates/hpa/internal/bus"
	"github.com/hpa-plates/hpa/internal/labeling"
	"github.com/hpa-plates/hpa/internal/local"
	"github.com/hpa-plates/hpa/internal/local/s3local"
	"github.com/hpa-plates/hpa/internal/model"
	"github.com/hpa-plates/hpa/internal/model/onnx"
	"github.com/hpa-plates/hpa/internal/model/torch"
	"github.com/hpa-plates/hpa/internal/objstore"
	"github.com/hpa-plates/hpa/internal/pipeline"
	"github.com/hpa-plates/hpa/internal/serve"
	"github.com/hpa-plates/hpa/internal/synth"
	"github.com/hpa-plates/hpa/internal/train"
	"github.com/hpa-plates/hpa/internal/train/runner"
)

// The typed sections: each reads the keys of one section of config.yaml and returns the settings
// type of the package that uses them, so no other package reads configuration.

// Keys of the decoder (documented in config.yaml; env HPA_DECODE_MAX_PIXELS, HPA_DECODE_YELLOW_FROM).
const (
	keyDecodeMaxPixels  = "decode.max_pixels"
	keyDecodeYellowFrom = "decode.yellow_from"
)

// Log reads log.level and log.format.
func Log(v *viper.Viper) serve.LogConfig {
	return serve.LogConfig{Level: v.GetString("log.level"), Format: v.GetString("log.format")}
}

// NATS reads the nats.* connection settings.
func NATS(v *viper.Viper) bus.Config {
	return bus.Config{
		URL: v.GetString("nats.url"), User: v.GetString("nats.user"), Password: v.GetString("nats.password"),
		Token: v.GetString("nats.token"), NKey: v.GetString("nats.nkey"), Creds: v.GetString("nats.creds"),
		TLSCA: v.GetString("nats.tls_ca"), TLSCert: v.GetString("nats.tls_cert"), TLSKey: v.GetString("nats.tls_key"),
	}
}

// S3 reads the s3.* settings (endpoint, region, path style, bucket, static credentials).
func S3(v *viper.Viper) objstore.Config {
	return objstore.Config{
		Endpoint: v.GetString("s3.endpoint"), Region: v.GetString("s3.region"), PathStyle: v.GetBool("s3.path_style"),
		Bucket: v.GetString("s3.bucket"), AccessKey: v.GetString("s3.access_key"), SecretKey: v.GetString("s3.secret_key"),
	}
}

// Decode reads the decode.* keys (unset keys give the pipeline.DecodeOptions defaults) and
// validates them. A max_pixels that is not a whole number is an error naming the key.
func Decode(v *viper.Viper) (pipeline.DecodeOptions, error) {
	o := pipeline.DecodeOptions{YellowFrom: v.GetString(keyDecodeYellowFrom)}
	if v.IsSet(keyDecodeMaxPixels) {
		n, err := toInt64(v.Get(keyDecodeMaxPixels))
		if err != nil {
			return pipeline.DecodeOptions{}, fmt.Errorf("config %s: %w", keyDecodeMaxPixels, err)
		}
		o.MaxPixels = n
	}
	if err := o.Validate(); err != nil {
		return pipeline.DecodeOptions{}, fmt.Errorf("config: %w", err)
	}
	return o, nil
}

func toInt64(x any) (int64, error) {
	switch n := x.(type) {
	case int:
		return int64(n), nil
	case int64:
		return n, nil
	case float64:
		if n != float64(int64(n)) {
			return 0, fmt.Errorf("%v is not a whole number", n)
		}
		return int64(n), nil
	case string:
		var v int64
		if _, err := fmt.Sscan(n, &v); err != nil {
			return 0, fmt.Errorf("%q is not a whole number", n)
		}
		return v, nil
	}
	return 0, fmt.Errorf("%v (%T) is not a whole number", x, x)
}

// Runtime reads the ort.* keys: library, provider, device_id, intra_threads, inter_threads.
// MaxBatch is left to the command (it is the command's batch size).
func Runtime(v *viper.Viper) model.RuntimeOptions {
	return model.RuntimeOptions{
		Library:      v.GetString("ort.library"),
		Provider:     v.GetString("ort.provider"),
		DeviceID:     v.GetInt("ort.device_id"),
		IntraThreads: v.GetInt("ort.intra_threads"),
		InterThreads: v.GetInt("ort.inter_threads"),
	}
}

// Torch reads torch.library and torch.threads.
func Torch(v *viper.Viper) torch.Options {
	return torch.Options{Library: v.GetString("torch.library"), Threads: v.GetInt("torch.threads")}
}

// Inference reads the inference.* keys, s3.bucket and decode.* into the consumer's Config. Keys
// that are not set keep inference.DefaultConfig's values (`hpa up` and `hpa demo` read them
// without the flags of `hpa inference`).
func Inference(v *viper.Viper) (inference.Config, error) {
	c := inference.DefaultConfig()
	str := func(key string, dst *string) {
		if s := v.GetString(key); s != "" {
			*dst = s
		}
	}
	str("s3.bucket", &c.Bucket)
	str("inference.upload_prefix", &c.UploadPrefix)
	str("inference.labels_prefix", &c.LabelsPrefix)
	str("inference.key_pattern", &c.KeyPattern)
	str("inference.events_stream", &c.EventsStream)
	str("inference.events_filter", &c.EventsFilter)
	str("inference.ready_stream", &c.ReadyStream)
	str("inference.ready_subject", &c.ReadySubject)
	str("inference.dlq_stream", &c.DLQStream)
	str("inference.dlq_subject", &c.DLQSubject)
	str("inference.labels_subject", &c.LabelsSubject)
	str("inference.promoted_subject", &c.PromotedSubject)
	str("inference.events_consumer", &c.EventsConsumer)
	str("inference.label_consumer", &c.LabelConsumer)
	str("inference.model_pointer", &c.ModelPointer)
	if s := v.GetStringSlice("inference.events_subjects"); len(s) > 0 {
		c.EventsSubjects = s
	}
	c.ModelPrefixes = v.GetStringSlice("inference.model_prefixes")
	num := func(key string, dst *int) {
		if v.IsSet(key) {
			*dst = v.GetInt(key)
		}
	}
	num("inference.batch", &c.MaxBatch)
	num("inference.fetch_workers", &c.FetchWorkers)
	num("inference.write_workers", &c.WriteWorkers)
	num("inference.event_workers", &c.EventWorkers)
	num("inference.max_ack_pending", &c.MaxAckPending)
	num("inference.max_deliver", &c.MaxDeliver)
	num("nats.replicas", &c.Replicas)
	if c.Replicas < 1 {
		return c, fmt.Errorf("inference: nats.replicas must be at least 1, not %d", c.Replicas)
	}
	dur := func(key string, dst *time.Duration) {
		if v.IsSet(key) {
			*dst = v.GetDuration(key)
		}
	}
	dur("inference.max_batch_delay", &c.MaxBatchDelay)
	dur("inference.ack_wait", &c.AckWait)
	dur("inference.incomplete_age", &c.IncompleteAge)
	dur("inference.op_timeout", &c.OpTimeout)
	if v.IsSet("inference.max_object_bytes") {
		c.MaxObjectBytes = v.GetInt64("inference.max_object_bytes")
	}
	for key, val := range map[string]int{"inference.batch": c.MaxBatch, "inference.fetch_workers": c.FetchWorkers,
		"inference.write_workers": c.WriteWorkers, "inference.event_workers": c.EventWorkers, "inference.max_ack_pending": c.MaxAckPending} {
		if val < 1 {
			return c, fmt.Errorf("inference: %s must be at least 1, not %d", key, val)
		}
	}
	dec, err := Decode(v)
	if err != nil {
		return c, fmt.Errorf("inference: %w", err)
	}
	c.Decode = dec
	return c, nil
}

// Train reads the train.* keys (and decode.*) into the trainer's Config.
func Train(v *viper.Viper) (train.Config, error) {
	spec, err := model.Preset(v.GetString("train.arch"))
	if err != nil {
		return train.Config{}, err
	}
	if s := v.GetString("train.stem"); s != "" {
		spec.Stem = model.Stem(s)
	}
	c := train.DefaultConfig(spec)
	c.DataDir, c.OutDir = v.GetString("train.data"), v.GetString("train.out")
	c.Size = v.GetInt("train.size")
	c.Folds = v.GetInt("train.folds")
	c.TrainFolds = v.GetIntSlice("train.train_folds")
	c.FoldsFile = v.GetString("train.folds_file")
	c.DedupHamming = v.GetInt("train.dedup_hamming")
	c.Cycles, c.EpochsPerCycle, c.BatchSize = v.GetInt("train.cycles"), v.GetInt("train.epochs"), v.GetInt("train.batch")
	c.Optimizer = v.GetString("train.optimizer")
	c.LR, c.LRMin = v.GetFloat64("train.lr"), v.GetFloat64("train.lr_min")
	c.Momentum, c.WeightDecay, c.Nesterov = v.GetFloat64("train.momentum"), v.GetFloat64("train.weight_decay"), v.GetBool("train.nesterov")
	c.Loss, c.FocalGamma = v.GetString("train.loss"), v.GetFloat64("train.focal_gamma")
	c.Sampler = v.GetString("train.sampler")
	c.Init, c.PriorBias = v.GetString("train.init"), v.GetBool("train.prior_bias")
	c.WarmupEpochs = v.GetInt("train.warmup_epochs")
	c.Snapshots = v.GetString("train.snapshots")
	switch n := v.GetString("train.normalization"); n {
	case "data", "":
		c.NormFromData = true
	case "constant":
		c.NormFromData = false
	default:
		return c, fmt.Errorf("train.normalization %q: data or constant", n)
	}
	c.TTAViews = v.GetInt("train.tta_views")
	c.Seed = v.GetInt64("train.seed")
	c.Workers, c.Prefetch = v.GetInt("train.workers"), v.GetInt("train.prefetch")
	c.SkipMissing = v.GetBool("train.skip_missing")
	c.PricePerHour = v.GetFloat64("train.price_per_hour")
	c.Name, c.Version, c.ParentVersion = v.GetString("train.name"), v.GetString("train.version"), v.GetString("train.parent_version")
	a := &c.Augment
	a.Brightness = v.GetFloat64("train.augment.brightness")
	a.Contrast = v.GetFloat64("train.augment.contrast")
	a.Expand = v.GetFloat64("train.augment.expand")
	a.Rot90 = v.GetBool("train.augment.rot90")
	a.FlipLR = v.GetBool("train.augment.flip_lr")
	a.FlipUD = v.GetBool("train.augment.flip_ud")
	a.EraseProb = v.GetFloat64("train.augment.erase_prob")
	a.RotateDeg = v.GetFloat64("train.augment.rotate_deg")
	b := &c.Balance
	b.MinorBelow, b.MajorFrom = v.GetFloat64("train.balance.minor_below"), v.GetFloat64("train.balance.major_from")
	shares, err := cast.ToFloat64SliceE(v.Get("train.balance.shares"))
	if err != nil || len(shares) != 3 {
		return c, fmt.Errorf("train.balance.shares needs 3 values (minor, middle, major), got %v", shares)
	}
	copy(b.Shares[:], shares)
	b.MaxRepeat = v.GetFloat64("train.balance.max_repeat")
	c.ShrinkK = v.GetFloat64("train.threshold_shrink_k")
	if c.Decode, err = Decode(v); err != nil {
		return c, err
	}
	if c.Version == "" {
		c.Version = fmt.Sprintf("%s-%dpx-k%d-c%dx%d-s%d", spec.Name, c.Size, c.Folds, c.Cycles, c.EpochsPerCycle, c.Seed)
	}
	return c, nil
}

// Up reads the keys of `hpa up` (section "up") or of the service `hpa demo` starts ("demo"):
// data_dir, model, s3_addr, nats_port, metrics_addr, bucket, region, access_key, secret_key.
func Up(v *viper.Viper, section string) local.UpOptions {
	return local.UpOptions{
		Stack: local.StackOptions{
			DataDir: v.GetString(section + ".data_dir"), S3Addr: v.GetString(section + ".s3_addr"),
			NATSPort: v.GetInt(section + ".nats_port"), Bucket: v.GetString(section + ".bucket"),
			Region: v.GetString(section + ".region"), AccessKey: v.GetString(section + ".access_key"),
			SecretKey: v.GetString(section + ".secret_key"),
			S3Limits:  S3Limits(v),
		},
		Model:       v.GetString(section + ".model"),
		MetricsAddr: v.GetString(section + ".metrics_addr"),
	}
}

// Demo reads the demo.* keys.
func Demo(v *viper.Viper) local.DemoOptions {
	return local.DemoOptions{
		Up: Up(v, "demo"), Samples: v.GetInt("demo.samples"), Size: v.GetInt("demo.size"), Seed: v.GetInt64("demo.seed"),
		Plate: v.GetString("demo.plate"), Timeout: v.GetDuration("demo.timeout"), Serve: v.GetBool("demo.serve"),
	}
}

// S3Local reads the s3local.* keys and nats.user/nats.password (required by the embedded NATS
// server, used with s3local.nats_url).
func S3Local(v *viper.Viper) local.S3ServerOptions {
	return local.S3ServerOptions{
		Dir: v.GetString("s3local.dir"), Addr: v.GetString("s3local.addr"), Region: v.GetString("s3local.region"),
		AccessKey: v.GetString("s3local.access_key"), SecretKey: v.GetString("s3local.secret_key"),
		Buckets: splitList(v.GetStringSlice("s3local.buckets")), NATSURL: v.GetString("s3local.nats_url"),
		NATSEmbedded: v.GetBool("s3local.nats_embedded"), NATSDir: v.GetString("s3local.nats_dir"),
		NATSPort: v.GetInt("s3local.nats_port"), NATSSyncAlways: v.GetBool("s3local.nats_sync_always"),
		NATSUser: v.GetString("nats.user"), NATSPassword: v.GetString("nats.password"),
		SubjectPrefix: v.GetString("s3local.subject_prefix"), Stream: v.GetString("s3local.stream"),
		PublishTimeout: v.GetDuration("s3local.publish_timeout"),
		Limits:         S3Limits(v),
	}
}

// S3Limits reads the limits of the built-in S3 server (s3local.header_timeout, body_timeout,
// idle_timeout, max_requests, allow_sigv2, multipart_max_age); `hpa up` and `hpa demo` use them too.
func S3Limits(v *viper.Viper) s3local.Limits {
	return s3local.Limits{
		HeaderTimeout: v.GetDuration("s3local.header_timeout"), BodyTimeout: v.GetDuration("s3local.body_timeout"),
		IdleTimeout: v.GetDuration("s3local.idle_timeout"), MaxRequests: v.GetInt("s3local.max_requests"),
		AllowSigV2: v.GetBool("s3local.allow_sigv2"), MultipartMaxAge: v.GetDuration("s3local.multipart_max_age"),
	}
}

// splitList accepts lists written with commas or spaces (flags give "a,b"; HPA_* variables and
// config files may give "a b" or "a,b").
func splitList(in []string) []string {
	var out []string
	for _, s := range in {
		out = append(out, strings.FieldsFunc(s, func(r rune) bool { return r == ',' || r == ' ' })...)
	}
	return out
}

// Label reads the label.* keys (and decode.*) of `hpa label`: the run's options and the model
// location. Workers 0 means one per CPU.
func Label(v *viper.Viper) (o labeling.DirOptions, modelLocation string, err error) {
	o = labeling.DirOptions{Out: v.GetString("label.out"), CSV: v.GetString("label.csv"),
		Batch: v.GetInt("label.batch"), Workers: v.GetInt("label.workers")}
	modelLocation = v.GetString("label.model")
	switch {
	case modelLocation == "":
		return o, "", errors.New("label: --model (label.model) is required")
	case o.Out == "":
		return o, "", errors.New("label: --out (label.out) must not be empty")
	case o.Batch < 1:
		return o, "", fmt.Errorf("label: --batch must be at least 1, not %d", o.Batch)
	case o.Workers < 0:
		return o, "", fmt.Errorf("label: --workers must not be negative, not %d", o.Workers)
	}
	if o.Workers == 0 {
		o.Workers = runtime.NumCPU()
	}
	if o.Decode, err = Decode(v); err != nil {
		return o, "", fmt.Errorf("label: %w", err)
	}
	return o, modelLocation, nil
}

// ModelExport reads the model_export.* keys of `hpa model export`.
func ModelExport(v *viper.Viper) onnx.SetOptions {
	return onnx.SetOptions{
		Arch: v.GetString("model_export.arch"), Out: v.GetString("model_export.out"),
		Members: v.GetInt("model_export.members"), Weights: v.GetString("model_export.weights"),
		Size: v.GetInt("model_export.size"), Seed: v.GetInt64("model_export.seed"),
		Stem: v.GetString("model_export.stem"),
	}
}

// TrainRun reads what `hpa train` runs: Train, train.device, train.amp, train.pretrained, the
// torch.* and s3.* sections and cache_dir.
func TrainRun(v *viper.Viper) (runner.Options, error) {
	c, err := Train(v)
	return runner.Options{Config: c, Device: v.GetString("train.device"), AMP: v.GetBool("train.amp"),
		Pretrained: v.GetString("train.pretrained"), Torch: Torch(v), S3: S3(v), CacheDir: v.GetString("cache_dir")}, err
}

// Folds reads the folds.* keys of `hpa folds`.
func Folds(v *viper.Viper) runner.FoldsOptions {
	return runner.FoldsOptions{
		Labels: v.GetString("folds.labels"), Images: v.GetString("folds.images"),
		K: v.GetInt("folds.k"), Seed: v.GetUint64("folds.seed"), Out: v.GetString("folds.out"),
		MaxHamming: v.GetInt("folds.max_hamming"), Channels: v.GetStringSlice("folds.hash_channels"),
		Workers: v.GetInt("folds.workers"),
	}
}

// Synth reads the synth.* keys of `hpa synth`.
func Synth(v *viper.Viper) synth.Options {
	return synth.Options{
		Out: v.GetString("synth.out"), Samples: v.GetInt("synth.samples"), Size: v.GetInt("synth.size"),
		Seed: v.GetInt64("synth.seed"), Workers: v.GetInt("synth.workers"),
	}
}

// TorchCheck reads the torch_check.* keys of `hpa torch check`.
func TorchCheck(v *viper.Viper) torch.CheckOptions {
	return torch.CheckOptions{
		Arch: v.GetString("torch_check.arch"), Device: v.GetString("torch_check.device"),
		Size: v.GetInt("torch_check.size"), Batch: v.GetInt("torch_check.batch"),
		Steps: v.GetInt("torch_check.steps"), Seed: v.GetUint64("torch_check.seed"),
	}
}

// BenchTrain reads the bench_train.* keys (and torch.library) of `hpa bench train`.
func BenchTrain(v *viper.Viper) (benchtrain.MainOptions, error) {
	spec, err := model.Preset(v.GetString("bench_train.arch"))
	if err != nil {
		return benchtrain.MainOptions{}, fmt.Errorf("bench train: %w", err)
	}
	if st := v.GetString("bench_train.stem"); st != "" {
		spec.Stem = model.Stem(st)
	}
	return benchtrain.MainOptions{
		Options: benchtrain.Options{
			StepOptions: benchtrain.StepOptions{
				Spec: spec, Size: v.GetInt("bench_train.size"), Batch: v.GetInt("bench_train.batch"),
				Steps: v.GetInt("bench_train.steps"), Warmup: v.GetInt("bench_train.warmup"), Seed: v.GetUint64("bench_train.seed"),
			},
			Threads: v.GetInt("bench_train.threads"), Rounds: v.GetInt("bench_train.rounds"),
			Python: v.GetString("bench_train.python"), Script: v.GetString("bench_train.script"),
			Preload: v.GetString("bench_train.tcmalloc"), NoInplace: v.GetBool("bench_train.no_inplace"),
			Loader: benchtrain.LoaderOptions{
				DataDir: v.GetString("bench_train.data"), Workers: v.GetInt("bench_train.workers"),
				Samples: v.GetInt("bench_train.samples"), Augment: train.RecipeAugment(),
			},
		},
		Library: v.GetString("torch.library"), SynthSize: v.GetInt("bench_train.synth_size"),
		Strict: v.GetBool("bench_train.strict"),
	}, nil
}
