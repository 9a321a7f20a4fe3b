package k8s

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/moby/buildkit/frontend/dockerfile/instructions"
	"github.com/moby/buildkit/frontend/dockerfile/linter"
	"github.com/moby/buildkit/frontend/dockerfile/parser"
)

// parseDockerfile parses deploy/Dockerfile with BuildKit's own parser and runs BuildKit's linter
// over it (the checks of `docker build --check`); every lint warning is a test error.
func parseDockerfile(t *testing.T) ([]instructions.Stage, []instructions.ArgCommand) {
	t.Helper()
	f, err := os.Open(filepath.Join(repoRoot, "deploy", "Dockerfile"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	res, err := parser.Parse(f)
	if err != nil {
		t.Fatalf("deploy/Dockerfile: %v", err)
	}
	for _, w := range res.Warnings {
		t.Errorf("deploy/Dockerfile: parser warning: %s", w.Short)
	}
	lint := linter.New(&linter.Config{Warn: func(rule, desc, url, msg string, loc []parser.Range) {
		line := 0
		if len(loc) > 0 {
			line = loc[0].Start.Line
		}
		t.Errorf("deploy/Dockerfile:%d: %s: %s (%s)", line, rule, msg, url)
	}})
	stages, metaArgs, err := instructions.Parse(res.AST, lint)
	if err != nil {
		t.Fatalf("deploy/Dockerfile: %v", err)
	}
	return stages, metaArgs
}

// The image rules of the chart: multi-stage, the final stages run as a non-root numeric user, have
// no compiler or build tools, carry the files the chart's config points at, and every target the
// chart names exists.
func TestDockerfile(t *testing.T) {
	stages, _ := parseDockerfile(t)
	byName := map[string]instructions.Stage{}
	for _, s := range stages {
		byName[s.Name] = s
	}
	if len(stages) < 4 {
		t.Fatalf("%d stages: want a multi-stage build", len(stages))
	}
	finals := []string{"cpu", "cpu-train", "gpu", "gpu-train"}
	// Files the chart's values reference, and where each final image must have them.
	wantFiles := map[string][]string{
		"cpu":       {"/usr/local/bin/hpa", "/opt/hpa/lib/libonnxruntime.so", "/opt/hpa/models/bundled"},
		"cpu-train": {"/opt/hpa/lib/libhpatorch.so"},
		"gpu":       {"/usr/local/bin/hpa", "/opt/hpa/lib/", "/opt/hpa/models/bundled"},
		"gpu-train": {"/opt/hpa/lib/libhpatorch.so", "/opt/libtorch/lib"},
	}
	for _, name := range finals {
		s, ok := byName[name]
		if !ok {
			t.Errorf("no stage %q (a target the chart's image tags name)", name)
			continue
		}
		// The user a final stage ends with, following FROM <earlier stage>.
		user := ""
		var copies []string
		for cur := &s; cur != nil; {
			for i := len(cur.Commands) - 1; i >= 0 && user == ""; i-- {
				if u, ok := cur.Commands[i].(*instructions.UserCommand); ok {
					user = u.User
				}
			}
			for _, c := range cur.Commands {
				switch x := c.(type) {
				case *instructions.CopyCommand:
					copies = append(copies, x.DestPath)
				case *instructions.RunCommand:
					for _, word := range buildToolsIn(strings.Join(x.CmdLine, " ")) {
						t.Errorf("stage %s installs or runs build tool %q in a final image", cur.Name, word)
					}
				}
			}
			parent, ok := byName[cur.BaseName]
			if !ok {
				break
			}
			cur = &parent
		}
		uid, _, _ := strings.Cut(user, ":")
		if uid == "" || uid == "0" || uid == "root" || strings.Trim(uid, "0123456789") != "" {
			t.Errorf("stage %s runs as %q: want a numeric non-root USER (runAsNonRoot can verify only numbers)", name, user)
		}
		if uid != "" && uid != "65532" {
			t.Errorf("stage %s runs as %s, the chart's podSecurityContext uses 65532", name, uid)
		}
		for _, f := range wantFiles[name] {
			if !slices.ContainsFunc(copies, func(d string) bool { return d == f || strings.HasPrefix(f, d) && strings.HasSuffix(d, "/") }) {
				t.Errorf("stage %s: nothing is copied to %s (COPY destinations %v)", name, f, copies)
			}
		}
	}
	// Build stages hold the toolchains, and the finals do not inherit from them.
	for _, name := range finals {
		s, ok := byName[name]
		if ok && (strings.HasPrefix(s.BaseName, "build") || strings.HasPrefix(s.BaseName, "golang") || s.BaseName == "go") {
			t.Errorf("final stage %s is based on the build stage %s", name, s.BaseName)
		}
	}
}

// buildToolsIn lists the compilers, build tools, -dev packages and download tools a shell command
// names (a final image has none).
func buildToolsIn(cmd string) []string {
	tools := map[string]bool{"gcc": true, "g++": true, "cc": true, "clang": true, "make": true, "cmake": true,
		"build-essential": true, "golang": true, "go": true, "git": true, "unzip": true, "curl": true, "wget": true}
	var out []string
	for _, w := range strings.FieldsFunc(cmd, func(r rune) bool { return strings.ContainsRune(" \t\n;&|()", r) }) {
		if tools[w] || strings.HasSuffix(w, "-dev") {
			out = append(out, w)
		}
	}
	return out
}

// The rules catch what they are for.
func TestDockerfileRulesCatch(t *testing.T) {
	for cmd, bad := range map[string]bool{
		"apt-get install -y libtiff6 libdeflate0 libtorch1.13": false,
		"useradd --system --uid 65532 hpa":                     false,
		"apt-get install -y build-essential":                   true,
		"apt-get update && apt-get install -y libtiff-dev":     true,
		"apt-get install -y --no-install-recommends g++":       true,
		"curl -fsSL x | sh":                                    true,
	} {
		if got := len(buildToolsIn(cmd)) > 0; got != bad {
			t.Errorf("%q: flagged %v, want %v", cmd, got, bad)
		}
	}
}
