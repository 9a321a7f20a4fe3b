// Package chartdocs derives the generated parts of charts/hpa from its values.yaml: the values
// table of README.md (from the "# --" comments, the helm-docs convention) and values.schema.json
// (types from the defaults, unknown keys rejected except where a value is free-form).
// `make chart-docs` writes them; test/k8s tests fail when the committed files differ.
package chartdocs

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"go.yaml.in/yaml/v3"
)

// Value is one documented key of values.yaml.
type Value struct {
	Key         string // dotted path
	Type        string // string, int, bool, float, object, list
	Default     string // compact JSON of the default
	Description string
}

// Parse reads values.yaml into its root mapping node.
func Parse(path string) (*yaml.Node, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var doc yaml.Node
	if err := yaml.Unmarshal(b, &doc); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if doc.Kind != yaml.DocumentNode || len(doc.Content) != 1 || doc.Content[0].Kind != yaml.MappingNode {
		return nil, fmt.Errorf("%s: not a YAML mapping", path)
	}
	return doc.Content[0], nil
}

// docComment returns the text of a "# --" head comment ("" when the key has none).
func docComment(k *yaml.Node) (string, bool) {
	lines := strings.Split(k.HeadComment, "\n")
	for i, l := range lines {
		l = strings.TrimSpace(l)
		if strings.HasPrefix(l, "# --") {
			var parts []string
			parts = append(parts, strings.TrimSpace(strings.TrimPrefix(l, "# --")))
			for _, m := range lines[i+1:] {
				parts = append(parts, strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(m), "#")))
			}
			return strings.Join(parts, " "), true
		}
	}
	return "", false
}

// Documented lists the keys with a "# --" comment, in file order. Below a documented mapping the
// walk goes on (its own documented children get rows too).
func Documented(root *yaml.Node) ([]Value, error) {
	var out []Value
	var walk func(prefix string, m *yaml.Node) error
	walk = func(prefix string, m *yaml.Node) error {
		for i := 0; i+1 < len(m.Content); i += 2 {
			k, v := m.Content[i], m.Content[i+1]
			key := k.Value
			if prefix != "" {
				key = prefix + "." + k.Value
			}
			if desc, ok := docComment(k); ok {
				def, err := compactJSON(v)
				if err != nil {
					return fmt.Errorf("%s: %w", key, err)
				}
				out = append(out, Value{Key: key, Type: kindName(v), Default: def, Description: desc})
			}
			if v.Kind == yaml.MappingNode {
				if err := walk(key, v); err != nil {
					return err
				}
			}
		}
		return nil
	}
	return out, walk("", root)
}

// Undocumented lists leaf keys (scalars, lists, empty maps) outside the excluded subtrees that
// neither have a "# --" comment nor sit below a documented key: every setting needs a row.
func Undocumented(root *yaml.Node, exclude ...string) []string {
	var out []string
	var walk func(prefix string, m *yaml.Node, covered bool)
	walk = func(prefix string, m *yaml.Node, covered bool) {
		for i := 0; i+1 < len(m.Content); i += 2 {
			k, v := m.Content[i], m.Content[i+1]
			key := k.Value
			if prefix != "" {
				key = prefix + "." + k.Value
			}
			skip := false
			for _, e := range exclude {
				if key == e || strings.HasPrefix(key, e+".") {
					skip = true
				}
			}
			if skip {
				continue
			}
			_, doc := docComment(k)
			if v.Kind == yaml.MappingNode && len(v.Content) > 0 {
				walk(key, v, covered || doc)
				continue
			}
			if !doc && !covered {
				out = append(out, key)
			}
		}
	}
	walk("", root, false)
	return out
}

func kindName(v *yaml.Node) string {
	switch v.Kind {
	case yaml.MappingNode:
		return "object"
	case yaml.SequenceNode:
		return "list"
	}
	switch v.Tag {
	case "!!int":
		return "int"
	case "!!float":
		return "float"
	case "!!bool":
		return "bool"
	case "!!null":
		return "null"
	}
	return "string"
}

func compactJSON(v *yaml.Node) (string, error) {
	var x any
	if err := v.Decode(&x); err != nil {
		return "", err
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(x); err != nil {
		return "", err
	}
	return strings.TrimSpace(buf.String()), nil
}

// Table renders the Markdown values table.
func Table(vals []Value) string {
	var b strings.Builder
	b.WriteString("| Key | Type | Default | Description |\n|---|---|---|---|\n")
	esc := func(s string) string { return strings.ReplaceAll(s, "|", `\|`) }
	for _, v := range vals {
		fmt.Fprintf(&b, "| `%s` | %s | `%s` | %s |\n", v.Key, v.Type, esc(v.Default), esc(v.Description))
	}
	return b.String()
}

// Markers around the generated table in README.md.
const (
	TableBegin = "<!-- values-table:begin (generated from values.yaml by `make chart-docs`; do not edit) -->"
	TableEnd   = "<!-- values-table:end -->"
)

// SpliceTable replaces the text between the markers of readme with table.
func SpliceTable(readme, table string) (string, error) {
	i := strings.Index(readme, TableBegin)
	j := strings.Index(readme, TableEnd)
	if i < 0 || j < i {
		return "", fmt.Errorf("README.md lacks the markers %q ... %q", TableBegin, TableEnd)
	}
	return readme[:i+len(TableBegin)] + "\n" + table + readme[j:], nil
}

// freeForm are values whose content is Kubernetes' or another chart's business: their type is
// checked, their keys are not.
var freeForm = map[string]bool{
	"commonLabels": true, "podAnnotations": true, "imagePullSecrets": true, "extraEnv": true,
	"extraVolumes": true, "extraVolumeMounts": true, "podSecurityContext": true,
	"containerSecurityContext": true, "serviceAccount.annotations": true,
	"metrics.serviceMonitor.labels": true, "networkPolicy.metricsFrom": true, "networkPolicy.extraEgress": true,
	"nats": true,
}

// freeFormLeaf are key names free-form wherever they appear (per-role scheduling and resources).
var freeFormLeaf = map[string]bool{
	"resources": true, "nodeSelector": true, "tolerations": true, "affinity": true,
	"podAnnotations": true, "extraEnv": true, "extraArgs": true, "annotations": true, "args": true,
}

// extra holds constraints beyond the type of the default.
var extra = map[string]map[string]any{
	"image.pullPolicy":                        {"enum": []string{"Always", "IfNotPresent", "Never"}},
	"models.location":                         {"pattern": "^(s3://.+)?$"},
	"inference.gpu.provider":                  {"enum": []string{"cuda", "tensorrt"}},
	"config.log.level":                        {"enum": []string{"debug", "info", "warn", "error"}},
	"config.log.format":                       {"enum": []string{"text", "json"}},
	"config.decode.yellow_from":               {"enum": []string{"rg", "r", "g", "gray"}},
	"web.service.type":                        {"enum": []string{"ClusterIP", "NodePort", "LoadBalancer"}},
	"metrics.port":                            {"minimum": 1, "maximum": 65535},
	"networkPolicy.natsPort":                  {"minimum": 1, "maximum": 65535},
	"inference.autoscaling.minReplicas":       {"minimum": 0},
	"inference.autoscaling.maxReplicas":       {"minimum": 1},
	"training.worker.autoscaling.maxReplicas": {"minimum": 1},
	"inference.gpu.count":                     {"minimum": 1},
	"training.worker.gpu.count":               {"minimum": 1},
}

// obj is a JSON-schema object with properties, for the conditions below.
func obj(props map[string]any, required ...string) map[string]any {
	o := map[string]any{"properties": props}
	if len(required) > 0 {
		o["required"] = required
	}
	return o
}

// conditions are the combinations that cannot work, refused by `helm lint` as well as by the
// templates' own checks (which `helm lint` does not evaluate).
var conditions = []any{
	// The bridge needs its queue.
	map[string]any{
		"if":   obj(map[string]any{"bridge": obj(map[string]any{"enabled": map[string]any{"const": true}}, "enabled")}, "bridge"),
		"then": obj(map[string]any{"bridge": obj(map[string]any{"sqsQueueURL": map[string]any{"minLength": 1}})}),
	},
	// A replay needs its arguments.
	map[string]any{
		"if":   obj(map[string]any{"replay": obj(map[string]any{"enabled": map[string]any{"const": true}}, "enabled")}, "replay"),
		"then": obj(map[string]any{"replay": obj(map[string]any{"args": map[string]any{"minItems": 1}})}),
	},
	// Without the bundled NATS: its URL, and KEDA's monitoring endpoint when KEDA is on.
	map[string]any{
		"if":   obj(map[string]any{"nats": obj(map[string]any{"enabled": map[string]any{"const": false}}, "enabled")}, "nats"),
		"then": obj(map[string]any{"config": obj(map[string]any{"nats": obj(map[string]any{"url": map[string]any{"minLength": 1}})})}),
	},
	map[string]any{
		"if": obj(map[string]any{
			"nats": obj(map[string]any{"enabled": map[string]any{"const": false}}, "enabled"),
			"keda": obj(map[string]any{"enabled": map[string]any{"const": true}}, "enabled"),
		}, "nats", "keda"),
		"then": obj(map[string]any{"keda": obj(map[string]any{"natsMonitoringEndpoint": map[string]any{"minLength": 1}})}),
	},
}

// Schema builds values.schema.json from the defaults.
func Schema(root *yaml.Node) (map[string]any, error) {
	s, err := schemaOf("", root)
	if err != nil {
		return nil, err
	}
	s["$schema"] = "https://json-schema.org/draft-07/schema#"
	s["title"] = "Values of the hpa chart (generated from values.yaml by `make chart-docs`)"
	// Helm passes `global` to every chart that has dependencies.
	s["properties"].(map[string]any)["global"] = map[string]any{"type": "object"}
	s["allOf"] = conditions
	return s, nil
}

func schemaOf(path string, v *yaml.Node) (map[string]any, error) {
	last := path[strings.LastIndex(path, ".")+1:]
	s := map[string]any{}
	switch {
	case v.Kind == yaml.MappingNode:
		s["type"] = "object"
		if freeForm[path] || freeFormLeaf[last] {
			if path == "nats" {
				s["properties"] = map[string]any{"enabled": map[string]any{"type": "boolean"}}
			}
			break
		}
		props := map[string]any{}
		for i := 0; i+1 < len(v.Content); i += 2 {
			k := v.Content[i].Value
			p := k
			if path != "" {
				p = path + "." + k
			}
			c, err := schemaOf(p, v.Content[i+1])
			if err != nil {
				return nil, err
			}
			if d, ok := docComment(v.Content[i]); ok {
				c["description"] = d
			}
			props[k] = c
		}
		s["properties"] = props
		s["additionalProperties"] = false
	case v.Kind == yaml.SequenceNode:
		s["type"] = "array"
		if len(v.Content) > 0 && !freeForm[path] && !freeFormLeaf[last] {
			t := ""
			for _, it := range v.Content {
				if it.Kind != yaml.ScalarNode {
					t = ""
					break
				}
				if tt := scalarType(it); t == "" || t == tt {
					t = tt
				}
			}
			if t != "" {
				s["items"] = map[string]any{"type": t}
			}
		}
	case v.Kind == yaml.ScalarNode:
		s["type"] = scalarType(v)
	default:
		return nil, fmt.Errorf("%s: unsupported YAML node kind %v", path, v.Kind)
	}
	for k, x := range extra[path] {
		s[k] = x
	}
	return s, nil
}

func scalarType(v *yaml.Node) string {
	switch v.Tag {
	case "!!int":
		return "integer"
	case "!!float":
		return "number"
	case "!!bool":
		return "boolean"
	case "!!null":
		return "null"
	}
	return "string"
}

// SchemaJSON is the file content of the schema.
func SchemaJSON(root *yaml.Node) ([]byte, error) {
	s, err := Schema(root)
	if err != nil {
		return nil, err
	}
	b, err := json.MarshalIndent(s, "", "  ")
	if err != nil {
		return nil, err
	}
	return append(b, '\n'), nil
}

// Generate returns the README and schema contents chartDir should have.
func Generate(chartDir string) (readme, schema []byte, err error) {
	root, err := Parse(filepath.Join(chartDir, "values.yaml"))
	if err != nil {
		return nil, nil, err
	}
	vals, err := Documented(root)
	if err != nil {
		return nil, nil, err
	}
	old, err := os.ReadFile(filepath.Join(chartDir, "README.md"))
	if err != nil {
		return nil, nil, err
	}
	r, err := SpliceTable(string(old), Table(vals))
	if err != nil {
		return nil, nil, err
	}
	schema, err = SchemaJSON(root)
	return []byte(r), schema, err
}

// SortedKeys is a helper for stable messages.
func SortedKeys[M ~map[string]V, V any](m M) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
