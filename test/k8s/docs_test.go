package k8s

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/hpa-plates/hpa/test/k8s/chartdocs"
)

// README.md's values table and values.schema.json are what `make chart-docs` generates from
// values.yaml, and every setting outside `config` (documented in config.yaml) and `nats` (the NATS
// chart's values) has a "# --" description.
func TestChartDocsInSync(t *testing.T) {
	readme, schema, err := chartdocs.Generate(chartSrc)
	if err != nil {
		t.Fatal(err)
	}
	for name, want := range map[string][]byte{"README.md": readme, "values.schema.json": schema} {
		have, err := os.ReadFile(filepath.Join(chartSrc, name))
		if err != nil {
			t.Fatal(err)
		}
		if string(have) != string(want) {
			t.Errorf("charts/hpa/%s is not what values.yaml generates: run `make chart-docs` and commit it", name)
		}
	}
	root, err := chartdocs.Parse(filepath.Join(chartSrc, "values.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range chartdocs.Undocumented(root, "config", "nats") {
		t.Errorf("values.yaml: %s has no \"# --\" description (a row of the README values table)", k)
	}
}

// The generator: a documented key becomes a row with its type and default, an undocumented leaf is
// reported, and the schema refuses unknown keys except in free-form values.
func TestChartDocsGenerator(t *testing.T) {
	dir := t.TempDir()
	values := "# -- Top.\ntop: 1\ngroup:\n  # -- A flag.\n  flag: true\n  bare: x\nresources:\n  limits: {cpu: 1}\n"
	if err := os.WriteFile(filepath.Join(dir, "values.yaml"), []byte(values), 0o644); err != nil {
		t.Fatal(err)
	}
	root, err := chartdocs.Parse(filepath.Join(dir, "values.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	vals, err := chartdocs.Documented(root)
	if err != nil {
		t.Fatal(err)
	}
	want := "| Key | Type | Default | Description |\n|---|---|---|---|\n| `top` | int | `1` | Top. |\n| `group.flag` | bool | `true` | A flag. |\n"
	if got := chartdocs.Table(vals); got != want {
		t.Errorf("table:\n%s\nwant:\n%s", got, want)
	}
	if got := chartdocs.Undocumented(root); len(got) != 2 || got[0] != "group.bare" || got[1] != "resources.limits.cpu" {
		t.Errorf("undocumented %v, want [group.bare resources.limits.cpu]", got)
	}
	s, err := chartdocs.Schema(root)
	if err != nil {
		t.Fatal(err)
	}
	props := s["properties"].(map[string]any)
	if s["additionalProperties"] != false || props["group"].(map[string]any)["additionalProperties"] != false {
		t.Error("objects must refuse unknown keys")
	}
	if _, closed := props["resources"].(map[string]any)["additionalProperties"]; closed {
		t.Error("resources is free-form")
	}
	if props["top"].(map[string]any)["type"] != "integer" {
		t.Errorf("top: %v", props["top"])
	}
}
