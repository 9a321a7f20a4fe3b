package k8s

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"
)

// One schema for the configuration: the chart's `config` values (rendered into the ConfigMap every
// role reads with --config) mirror the keys of the repository's config.yaml. A section of
// config.yaml is either mirrored, key for key, or listed here as never running in the cluster.
var localOnlySections = map[string]string{
	"label":        "`hpa label DIR` labels a local directory",
	"torch_check":  "`hpa torch check` is a local diagnostic",
	"bench_train":  "`hpa bench train` is a local benchmark",
	"model_export": "`hpa model export` writes a model set locally",
	"synth":        "`hpa synth` writes a synthetic dataset locally",
	"folds":        "`hpa folds` splits a local label file",
	"s3local":      "the built-in S3 server of `hpa up` (the cluster uses AWS or MinIO)",
	"up":           "`hpa up` is the single-machine all-in-one",
	"demo":         "`hpa demo` is the single-machine demo",
	"train":        "`hpa train` is the batch CLI; the training consumer reads `training` and `training_worker`",
}

// Keys of mirrored sections the chart sets from other values (so they are not under `config` in
// values.yaml); where: the value that sets them.
var chartOwnedKeys = map[string]string{
	"cache_dir":               "cache.mountPath",
	"ort.provider":            "inference.gpu.enabled / inference.gpu.provider",
	"inference.model":         "models.location (or models.bundledPath)",
	"inference.model_pointer": "models.pointer",
	"inference.metrics_addr":  "metrics.port",
	// Roles of the CLI contract whose sections config.yaml does not have yet: the chart sets these
	// through env (HPA_<SECTION>_<KEY>), so they stay chart-owned when the sections arrive.
	"training.metrics_addr":        "metrics.port (env HPA_TRAINING_METRICS_ADDR)",
	"training_worker.metrics_addr": "metrics.port (env HPA_TRAINING_WORKER_METRICS_ADDR)",
	"training_worker.device":       "training.worker.gpu.enabled (env HPA_TRAINING_WORKER_DEVICE)",
	"bridge.metrics_addr":          "metrics.port (env HPA_BRIDGE_METRICS_ADDR)",
	"bridge.sqs_queue_url":         "bridge.sqsQueueURL (env HPA_BRIDGE_SQS_QUEUE_URL)",
	"web.addr":                     "metrics.port (env HPA_WEB_ADDR)",
	"web.model":                    "models.location (or models.bundledPath)",
	"web.model_pointer":            "models.pointer",
}

// Secrets never go into values or the ConfigMap: env from existing Secrets.
var secretKeys = []string{"s3.access_key", "s3.secret_key", "nats.password", "nats.token", "web.token"}

// leaves flattens a YAML mapping into dotted keys -> values (lists and scalars are leaves).
func leaves(prefix string, m map[string]any, out map[string]any) {
	for k, v := range m {
		key := k
		if prefix != "" {
			key = prefix + "." + k
		}
		if mm, ok := v.(map[string]any); ok && len(mm) > 0 {
			leaves(key, mm, out)
			continue
		}
		out[key] = v
	}
}

func readYAMLMap(t testing.TB, path string) map[string]any {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := yaml.Unmarshal(b, &m); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return m
}

func section(key string) string { s, _, _ := strings.Cut(key, "."); return s }

func typeName(v any) string {
	switch v.(type) {
	case string:
		return "string"
	case int, int64, uint64:
		return "integer"
	case float64:
		return "number"
	case bool:
		return "boolean"
	case []any:
		return "list"
	case map[string]any:
		return "map"
	case nil:
		return "null"
	}
	return fmt.Sprintf("%T", v)
}

// configMirror compares config.yaml with the chart's values and returns one actionable line per
// difference.
func configMirror(configYAML, values map[string]any) []string {
	cfg := map[string]any{}
	leaves("", configYAML, cfg)
	vals := map[string]any{}
	if c, ok := values["config"].(map[string]any); ok {
		leaves("", c, vals)
	}
	var problems []string
	missing := map[string][]string{} // section -> keys config.yaml has and values lack
	for _, k := range chartdocsSorted(cfg) {
		s := section(k)
		if _, local := localOnlySections[s]; local {
			continue
		}
		_, inValues := vals[k]
		switch {
		case slices.Contains(secretKeys, k):
			if inValues {
				problems = append(problems, fmt.Sprintf("charts/hpa/values.yaml has config.%s, a secret: remove it (it comes from env HPA_%s set from an existing Secret)", k, envName(k)))
			}
		case chartOwnedKeys[k] != "":
			if inValues {
				problems = append(problems, fmt.Sprintf("charts/hpa/values.yaml has config.%s, which the chart sets from %s: remove it from config", k, chartOwnedKeys[k]))
			}
		case !inValues:
			missing[s] = append(missing[s], k)
		case typeName(vals[k]) != typeName(cfg[k]) && !(typeName(cfg[k]) == "null" || typeName(vals[k]) == "null"):
			problems = append(problems, fmt.Sprintf("config.%s is a %s in charts/hpa/values.yaml but a %s in config.yaml: use the same type",
				k, typeName(vals[k]), typeName(cfg[k])))
		}
	}
	for _, s := range chartdocsSorted(missing) {
		var b strings.Builder
		_, sectionMirrored := vals[s]
		if !sectionMirrored {
			for k := range vals {
				if section(k) == s {
					sectionMirrored = true
				}
			}
		}
		if sectionMirrored {
			fmt.Fprintf(&b, "config.yaml has keys that charts/hpa/values.yaml lacks: add them under `config:` in charts/hpa/values.yaml")
		} else {
			fmt.Fprintf(&b, "config.yaml has a section %q that the chart does not mirror: add it under `config:` in charts/hpa/values.yaml"+
				" if that role runs in the cluster, else list %q in localOnlySections of test/k8s/config_test.go with the reason", s, s)
		}
		b.WriteString(" (then `make chart-docs` regenerates values.schema.json; a key the chart must set itself goes to chartOwnedKeys instead):")
		for _, k := range missing[s] {
			y, _ := yaml.Marshal(cfg[k])
			fmt.Fprintf(&b, "\n      config.%s: %s", k, strings.TrimSpace(string(y)))
		}
		problems = append(problems, b.String())
	}
	for _, k := range chartdocsSorted(vals) {
		if _, ok := cfg[k]; !ok {
			problems = append(problems, fmt.Sprintf("charts/hpa/values.yaml has config.%s, which config.yaml does not have: remove it there (or add and document it in config.yaml if the program reads it)", k))
		}
	}
	for _, s := range chartdocsSorted(localOnlySections) {
		if _, ok := configYAML[s]; !ok {
			problems = append(problems, fmt.Sprintf("localOnlySections in test/k8s/config_test.go lists %q, which config.yaml no longer has: remove it", s))
		}
		for k := range vals {
			if section(k) == s {
				problems = append(problems, fmt.Sprintf("config.%s is in charts/hpa/values.yaml but section %q is listed as local-only in test/k8s/config_test.go", k, s))
			}
		}
	}
	for _, k := range chartdocsSorted(chartOwnedKeys) {
		if _, sectionThere := configYAML[section(k)]; sectionThere {
			if _, ok := cfg[k]; !ok {
				problems = append(problems, fmt.Sprintf("chartOwnedKeys in test/k8s/config_test.go has %s, which config.yaml's section %q lacks: fix the name or remove it (and its setting in the chart)", k, section(k)))
			}
		}
	}
	return problems
}

func envName(key string) string { return strings.ToUpper(strings.ReplaceAll(key, ".", "_")) }

func chartdocsSorted[V any](m map[string]V) []string { return keys(m) }

func TestConfigMirrorsConfigYAML(t *testing.T) {
	problems := configMirror(readYAMLMap(t, filepath.Join(repoRoot, "config.yaml")), readYAMLMap(t, filepath.Join(chartSrc, "values.yaml")))
	for _, p := range problems {
		t.Error(p)
	}
}

// The mirror check catches each kind of drift and says where to fix it.
func TestConfigMirrorReportsDrift(t *testing.T) {
	base := func() (map[string]any, map[string]any) {
		return readYAMLMap(t, filepath.Join(repoRoot, "config.yaml")), readYAMLMap(t, filepath.Join(chartSrc, "values.yaml"))
	}
	cases := []struct {
		name   string
		mutate func(cfg, vals map[string]any)
		want   string
	}{
		{"key added to config.yaml", func(cfg, _ map[string]any) {
			cfg["inference"].(map[string]any)["new_knob"] = 3
		}, "config.inference.new_knob: 3"},
		{"section added to config.yaml (a training-like role)", func(cfg, _ map[string]any) {
			cfg["newrole"] = map[string]any{"runs_prefix": "runs/", "metrics_addr": "127.0.0.1:9091"}
		}, `section "newrole"`},
		{"key only in values", func(_, vals map[string]any) {
			vals["config"].(map[string]any)["s3"].(map[string]any)["bukket"] = "x"
		}, "config.s3.bukket, which config.yaml does not have"},
		{"secret in values", func(_, vals map[string]any) {
			vals["config"].(map[string]any)["nats"].(map[string]any)["password"] = "x"
		}, "HPA_NATS_PASSWORD"},
		{"type differs", func(_, vals map[string]any) {
			vals["config"].(map[string]any)["inference"].(map[string]any)["batch"] = "8"
		}, "config.inference.batch is a string"},
	}
	for _, c := range cases {
		cfg, vals := base()
		c.mutate(cfg, vals)
		got := strings.Join(configMirror(cfg, vals), "\n")
		if !strings.Contains(got, c.want) {
			t.Errorf("%s: problems do not say %q:\n%s", c.name, c.want, got)
		}
		if strings.Contains(c.name, "training") && !strings.Contains(got, "runs_prefix") {
			t.Errorf("%s: the keys to add are not listed:\n%s", c.name, got)
		}
	}
	// The chart-owned training.metrics_addr is not asked for.
	cfg, vals := base()
	delete(vals["config"].(map[string]any), "training")
	cfg["training"] = map[string]any{"metrics_addr": "127.0.0.1:9091"}
	if got := configMirror(cfg, vals); len(got) != 0 {
		t.Errorf("a section of chart-owned keys only: %v", got)
	}
}

// The rendered ConfigMap holds exactly the mirrored keys plus the chart-owned ones of mirrored
// sections, each known to config.yaml, and no secret.
func TestConfigMapKeys(t *testing.T) {
	r := renderCase(t, false, map[string]any{})
	got := map[string]any{}
	leaves("", r.config(t), got)
	cfg := map[string]any{}
	leaves("", readYAMLMap(t, filepath.Join(repoRoot, "config.yaml")), cfg)
	vals := map[string]any{}
	leaves("", readYAMLMap(t, filepath.Join(chartSrc, "values.yaml"))["config"].(map[string]any), vals)
	for k := range got {
		if _, ok := cfg[k]; !ok {
			t.Errorf("ConfigMap key %s is not a key of config.yaml", k)
		}
	}
	for k := range vals {
		if _, ok := got[k]; !ok {
			t.Errorf("values config.%s is not in the ConfigMap", k)
		}
	}
	for k := range chartOwnedKeys {
		if _, inCfg := cfg[k]; inCfg && !strings.Contains(chartOwnedKeys[k], "env ") {
			if _, ok := got[k]; !ok {
				t.Errorf("chart-owned %s is not rendered into the ConfigMap", k)
			}
		}
	}
}
