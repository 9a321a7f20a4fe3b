// Command chartdocs writes the generated parts of a chart: the values table of README.md and
// values.schema.json, both from values.yaml (see package chartdocs). Usage: chartdocs CHART_DIR.
package main

import (
	"fmt"
	"os"
	"path/filepath"

	"github.com/hpa-plates/hpa/test/k8s/chartdocs"
)

func main() {
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: chartdocs CHART_DIR")
		os.Exit(2)
	}
	dir := os.Args[1]
	readme, schema, err := chartdocs.Generate(dir)
	if err == nil {
		err = os.WriteFile(filepath.Join(dir, "README.md"), readme, 0o644)
	}
	if err == nil {
		err = os.WriteFile(filepath.Join(dir, "values.schema.json"), schema, 0o644)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "chartdocs:", err)
		os.Exit(1)
	}
}
