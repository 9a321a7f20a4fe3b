package config

// config.yaml at the repository root documents every key the program reads (issue 2). The keys
// come from a static scan of the sources (keyscan_test.go): viper reads with a resolvable key,
// SetDefault calls, and every flag bound with BindFlags.
//
// The documentation rule: a key is documented when
//   - its own line has a comment (`key: value  # ...`), or a comment block sits directly above it;
//   - or it belongs to a block of keys written on consecutive lines (no blank line between them)
//     whose first key is documented: one comment may describe a few related keys
//     (`intra_threads` / `inter_threads`);
//   - or it is in the first such block of a section whose own key has a comment (the section's
//     comment describes the keys written right below it).
//
// Besides presence and documentation the test checks that each value has the type the code reads
// it with (ints are ints, durations parse, lists are lists) and, where the code's default is a
// constant (a flag default or a SetDefault value), that config.yaml shows that default.

import (
	"fmt"
	"go/constant"
	"math"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/hpa-plates/hpa/internal/testenv"
)

const modulePath = "github.com/hpa-plates/hpa"

// The source trees whose keys config.yaml must document.
var scannedDirs = []string{"cmd", "internal", "consumers", "producers"}

// yamlEntry is one leaf key of config.yaml.
type yamlEntry struct {
	key        *yaml.Node
	value      *yaml.Node
	documented bool
}

// yamlKeys flattens config.yaml's nested maps into dotted keys (lower case, as viper reads them).
func yamlKeys(data []byte) (map[string]*yamlEntry, error) {
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return nil, err
	}
	out := map[string]*yamlEntry{}
	if doc.Kind == 0 { // empty file
		return out, nil
	}
	if doc.Kind != yaml.DocumentNode || len(doc.Content) != 1 || doc.Content[0].Kind != yaml.MappingNode {
		return nil, fmt.Errorf("the top level is not a map")
	}
	if err := flattenYAML(doc.Content[0], "", false, out); err != nil {
		return nil, err
	}
	return out, nil
}

func flattenYAML(m *yaml.Node, prefix string, sectionCommented bool, out map[string]*yamlEntry) error {
	prevEnd, prevDocumented := -1, false
	for i := 0; i+1 < len(m.Content); i += 2 {
		k, v := m.Content[i], m.Content[i+1]
		if k.Kind != yaml.ScalarNode {
			return fmt.Errorf("line %d: non-scalar key", k.Line)
		}
		key := strings.ToLower(k.Value)
		if prefix != "" {
			key = prefix + "." + key
		}
		own := k.HeadComment != "" || k.LineComment != "" || v.LineComment != ""
		var documented bool
		switch {
		case own:
			documented = true
		case i == 0:
			documented = sectionCommented
		default:
			documented = prevDocumented && k.Line == prevEnd+1
		}
		prevEnd, prevDocumented = endLine(v), documented
		if v.Kind == yaml.MappingNode {
			if err := flattenYAML(v, key, own, out); err != nil {
				return err
			}
			continue
		}
		if _, dup := out[key]; dup {
			return fmt.Errorf("line %d: key %s given twice", k.Line, key)
		}
		out[key] = &yamlEntry{key: k, value: v, documented: documented}
	}
	return nil
}

// endLine is the last line a node's text occupies (as far as yaml.Node tells).
func endLine(n *yaml.Node) int {
	end := n.Line
	for _, c := range n.Content {
		end = max(end, endLine(c))
	}
	return end
}

// checkConfigDoc returns every problem of config.yaml against the keys the code reads, one line each.
func checkConfigDoc(uses []keyUse, entries map[string]*yamlEntry) []string {
	byKey := map[string][]keyUse{}
	for _, u := range uses {
		byKey[u.Key] = append(byKey[u.Key], u)
	}
	keys := make([]string, 0, len(byKey))
	for k := range byKey {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var problems []string
	for _, key := range keys {
		us := byKey[key]
		where := us[0].How + " at " + us[0].Pos
		e, ok := entries[key]
		if !ok {
			def := ""
			for _, u := range us {
				if u.HasDefault {
					def = " (default " + showKindDefault(u) + ")"
					break
				}
			}
			problems = append(problems, fmt.Sprintf("config.yaml: key %s is missing%s; read by %s", key, def, where))
			continue
		}
		if !e.documented {
			problems = append(problems, fmt.Sprintf("config.yaml:%d: key %s has no comment (above it, on its line, or heading its block); read by %s",
				e.key.Line, key, where))
		}
		seenKind := map[valKind]bool{}
		var defaults []string
		match := false
		for _, u := range us {
			if u.Kind != kindAny && !seenKind[u.Kind] {
				seenKind[u.Kind] = true
				if err := checkKind(e.value, u.Kind); err != nil {
					problems = append(problems, fmt.Sprintf("config.yaml:%d: key %s: %v; read as %s by %s at %s",
						e.value.Line, key, err, u.Kind, u.How, u.Pos))
				}
			}
			if u.HasDefault {
				defaults = append(defaults, showKindDefault(u)+" ("+u.How+" at "+u.Pos+")")
				if sameValue(e.value, u.Default) {
					match = true
				}
			}
		}
		if len(defaults) > 0 && !match {
			problems = append(problems, fmt.Sprintf("config.yaml:%d: key %s = %s, but the program's default is %s",
				e.value.Line, key, showNode(e.value), strings.Join(defaults, ", ")))
		}
	}
	return problems
}

// checkKind says whether a config.yaml value reads as kind.
func checkKind(n *yaml.Node, kind valKind) error {
	scalar := func(tags ...string) error {
		if n.Kind != yaml.ScalarNode {
			return fmt.Errorf("value is a %s, expected %s", nodeKindName(n), kind)
		}
		for _, t := range tags {
			if n.Tag == t {
				return nil
			}
		}
		return fmt.Errorf("value %s is %s, expected %s", showNode(n), n.Tag, kind)
	}
	list := func(tags ...string) error {
		if n.Kind == yaml.ScalarNode && n.Tag == "!!str" && kind == kindStringSlice {
			return nil // viper splits a string into a list
		}
		if n.Kind != yaml.SequenceNode {
			return fmt.Errorf("value is a %s, expected %s", nodeKindName(n), kind)
		}
		for _, c := range n.Content {
			ok := false
			for _, t := range tags {
				ok = ok || (c.Kind == yaml.ScalarNode && c.Tag == t)
			}
			if !ok {
				return fmt.Errorf("list item %s (line %d) is %s, expected %s", showNode(c), c.Line, c.Tag, kind)
			}
		}
		return nil
	}
	switch kind {
	case kindString:
		return scalar("!!str")
	case kindInt:
		return scalar("!!int")
	case kindFloat:
		return scalar("!!int", "!!float")
	case kindBool:
		return scalar("!!bool")
	case kindDuration:
		if err := scalar("!!str"); err != nil {
			return err
		}
		if _, err := time.ParseDuration(n.Value); err != nil {
			return fmt.Errorf("value %q is not a duration (e.g. 30s, 5m): %v", n.Value, err)
		}
		return nil
	case kindStringSlice:
		return list("!!str")
	case kindIntSlice:
		return list("!!int")
	case kindFloatSlice:
		return list("!!int", "!!float")
	}
	return nil
}

func nodeKindName(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "map"
	case yaml.SequenceNode:
		return "list"
	case yaml.AliasNode:
		return "alias"
	}
	return "scalar"
}

func showNode(n *yaml.Node) string {
	if n.Kind == yaml.ScalarNode {
		if n.Tag == "!!str" {
			return strconv.Quote(n.Value)
		}
		return n.Value
	}
	items := make([]string, 0, len(n.Content))
	for _, c := range n.Content {
		items = append(items, showNode(c))
	}
	return "[" + strings.Join(items, ", ") + "]"
}

// showKindDefault shows a default as config.yaml would write it (durations as 30s).
func showKindDefault(u keyUse) string {
	if c, ok := u.Default.(constant.Value); ok && u.Kind == kindDuration && c.Kind() == constant.Int {
		if n, exact := constant.Int64Val(c); exact {
			return time.Duration(n).String()
		}
	}
	return showDefault(u.Default)
}

func showDefault(d any) string {
	switch d := d.(type) {
	case nil:
		return "[]"
	case constant.Value:
		return d.ExactString()
	case []constant.Value:
		items := make([]string, len(d))
		for i, c := range d {
			items[i] = c.ExactString()
		}
		return "[" + strings.Join(items, ", ") + "]"
	}
	return fmt.Sprint(d)
}

// sameValue compares a config.yaml value with a default from the code. Durations in the code are
// integer nanoseconds; config.yaml writes them as "30s".
func sameValue(n *yaml.Node, def any) bool {
	switch d := def.(type) {
	case nil:
		return (n.Kind == yaml.SequenceNode && len(n.Content) == 0) || (n.Kind == yaml.ScalarNode && n.Tag == "!!null")
	case []constant.Value:
		if n.Kind != yaml.SequenceNode || len(n.Content) != len(d) {
			return false
		}
		for i, c := range n.Content {
			if c.Kind != yaml.ScalarNode || !sameScalar(c, d[i]) {
				return false
			}
		}
		return true
	case constant.Value:
		return n.Kind == yaml.ScalarNode && sameScalar(n, d)
	}
	return false
}

func sameScalar(n *yaml.Node, c constant.Value) bool {
	switch c.Kind() {
	case constant.String:
		return n.Value == constant.StringVal(c)
	case constant.Bool:
		b, err := strconv.ParseBool(n.Value)
		return err == nil && b == constant.BoolVal(c)
	case constant.Int, constant.Float:
		want, _ := constant.Float64Val(c)
		if n.Tag == "!!str" {
			if d, err := time.ParseDuration(n.Value); err == nil {
				return float64(d) == want
			}
			return false
		}
		got, err := strconv.ParseFloat(n.Value, 64)
		return err == nil && math.Abs(got-want) <= 1e-12*math.Max(1, math.Abs(want))
	}
	return false
}

func readConfigYAML(t *testing.T) (map[string]*yamlEntry, string) {
	t.Helper()
	path := filepath.Join(testenv.RepoRoot(t), "config.yaml")
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	entries, err := yamlKeys(data)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return entries, path
}

func TestConfigYAMLDocumentsEveryKey(t *testing.T) {
	entries, _ := readConfigYAML(t)
	s, err := scanKeys(testenv.RepoRoot(t), modulePath, scannedDirs...)
	if err != nil {
		t.Fatal(err)
	}
	for _, is := range s.issues {
		t.Errorf("%s: cannot resolve a configuration key: %s (use a string literal or constant, or extend keyscan_test.go)", is.Pos, is.What)
	}
	for _, p := range checkConfigDoc(s.uses, entries) {
		t.Error(p)
	}
	for _, p := range checkConfigExtra(s.uses, entries) {
		t.Error(p)
	}
}

// checkConfigExtra finds config.yaml keys no code reads (a typo there is silently ignored by
// viper) and keys whose environment variables would collide (HPA_A_B_C for a.b_c and a_b.c).
func checkConfigExtra(uses []keyUse, entries map[string]*yamlEntry) []string {
	read := map[string]bool{}
	for _, u := range uses {
		read[u.Key] = true
	}
	keys := make([]string, 0, len(entries))
	for k := range entries {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var problems []string
	env := map[string]string{}
	for _, k := range keys {
		if !read[k] {
			problems = append(problems, fmt.Sprintf("config.yaml:%d: key %s is read by no code (misspelled, or left over?)", entries[k].key.Line, k))
		}
		name := EnvPrefix + "_" + strings.ToUpper(strings.NewReplacer(".", "_", "-", "_").Replace(k))
		if other, dup := env[name]; dup {
			problems = append(problems, fmt.Sprintf("config.yaml: keys %s and %s share the environment variable %s", other, k, name))
		}
		env[name] = k
	}
	return problems
}

// The scan must see the key forms the program uses; otherwise the test above could pass vacuously.
func TestKeyScanFindsEveryForm(t *testing.T) {
	s, err := scanKeys(testenv.RepoRoot(t), modulePath, scannedDirs...)
	if err != nil {
		t.Fatal(err)
	}
	found := map[string][]keyUse{}
	for _, u := range s.uses {
		found[u.Key] = append(found[u.Key], u)
	}
	for key, how := range map[string]string{
		"ort.intra_threads":         "GetInt",     // literal
		"torch.library":             "GetString",  // literal (config.Torch)
		"decode.max_pixels":         "IsSet",      // constant, IsSet
		"inference.events_consumer": "GetString",  // closure parameter (str("...", &c.X))
		"demo.data_dir":             "GetString",  // function parameter concatenated (section + ".data_dir")
		"up.secret_key":             "GetString",  // the other call site of the same function, in another package (config.Up)
		"train.augment.rot90":       "SetDefault", // defaults.go
		"train.dedup_hamming":       "flag --dedup-hamming",
		"ort.inter_threads":         "flag --inter-threads", // keys map literal
		"nats.tls_key":              "flag --nats-tls-key",  // keys map in a package variable
		"ort.provider":              "flag --provider",      // index assignment into that variable
		"torch_check.steps":         "flag --steps",         // flags defined with check.Flags().Int
		"torch.threads":             "flag --threads",       // flags defined by a closure given the command
		"demo.s3_addr":              "flag --s3-addr",       // flags defined by a helper given cmd.Flags()
	} {
		ok := false
		for _, u := range found[key] {
			ok = ok || u.How == how
		}
		if !ok {
			t.Errorf("scan did not find %s via %s (found %v)", key, how, found[key])
		}
	}
	// Defaults resolved through a helper's parameters differ per command.
	for key, want := range map[string]string{"up.s3_addr": `"127.0.0.1:9000"`, "demo.s3_addr": `"127.0.0.1:0"`,
		"demo.timeout": "300000000000", "train.weight_decay": "1/20"} {
		got := []string{}
		for _, u := range found[key] {
			if u.HasDefault {
				got = append(got, showDefault(u.Default))
			}
		}
		if len(got) == 0 || got[0] != want {
			t.Errorf("default of %s: got %v, want %s", key, got, want)
		}
	}
	// Header.Get("...") and other non-viper Get calls are not keys.
	for _, key := range []string{"uploadid", "prefix", "content-md5", "range", "expires", "x-amz-copy-source"} {
		if us := found[key]; len(us) > 0 {
			t.Errorf("scan took %q (%s at %s) for a key", key, us[0].How, us[0].Pos)
		}
	}
}

// A small source tree and config file with each kind of defect: the check names every one.
func TestConfigDocCheckFindsDefects(t *testing.T) {
	dir := t.TempDir()
	write := func(rel, text string) {
		p := filepath.Join(dir, rel)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("internal/k/k.go", `package k

import "github.com/spf13/viper"

const KeyDepth = "a.depth"

func Read(v *viper.Viper) {
	_ = v.GetInt(KeyDepth)
	_ = v.GetString("a.name")
	_ = v.GetDuration("a.wait")
	_ = v.GetBool("a.flag")
	_ = v.GetStringSlice("b.list")
	var h map[string]string
	_ = h
}
`)
	write("cmd/x/x.go", `package main

import (
	"github.com/spf13/cobra"
	"github.com/spf13/viper"

	"example.com/m/internal/config"
	"example.com/m/internal/k"
)

func newCmd(v *viper.Viper) *cobra.Command {
	cmd := &cobra.Command{RunE: func(c *cobra.Command, _ []string) error {
		config.BindFlags(v, c, "x", map[string]string{"lvl": "log.level"})
		_ = v.GetInt("x." + k.KeyDepth)
		return nil
	}}
	f := cmd.Flags()
	f.Int("max-size", 10, "")
	f.String("lvl", "info", "")
	return cmd
}
`)
	yamlText := `# header

a:
  # documented
  depth: 3
  name: ok          # same block as depth
  wait: soon

  flag: true
b:
  list: [1, 2]
x:
  # Maximum size.
  max_size: 12
log:
  # Level.
  level: info
  # Misspelled.
  levle: debug
`
	s, err := scanKeys(dir, "example.com/m", "cmd", "internal")
	if err != nil {
		t.Fatal(err)
	}
	entries, err := yamlKeys([]byte(yamlText))
	if err != nil {
		t.Fatal(err)
	}
	got := strings.Join(checkConfigDoc(s.uses, entries), "\n")
	for _, want := range []string{
		`key a.wait: value "soon" is not a duration`, // wrong type
		`key a.flag has no comment`,                  // after a blank line, no comment
		`key b.list has no comment`,                  // first key of an uncommented section
		`key b.list: list item 1 (line 11) is !!int`, // ints where strings are read
		`key x.max_size = 12, but the program's default is 10`,
		`key x.a.depth is missing`,
	} {
		if !strings.Contains(got, want) {
			t.Errorf("check output lacks %q; got:\n%s", want, got)
		}
	}
	extra := strings.Join(checkConfigExtra(s.uses, entries), "\n")
	if want := "config.yaml:19: key log.levle is read by no code"; !strings.Contains(extra, want) {
		t.Errorf("extra check lacks %q; got:\n%s", want, extra)
	}
	if strings.Count(extra, "\n") != 0 || strings.Contains(extra, "environment variable") {
		t.Errorf("extra check flags a read key or an env collision that is not there:\n%s", extra)
	}
	for _, clean := range []string{"key a.depth", "key a.name", "key log.level"} {
		if strings.Contains(got, clean+" ") || strings.Contains(got, clean+":") {
			t.Errorf("check flags %s, which is fine; got:\n%s", clean, got)
		}
	}
	if len(s.issues) != 0 {
		t.Errorf("unexpected scan issues: %v", s.issues)
	}
	// An unresolvable key expression is reported, not skipped.
	write("internal/k/dyn.go", `package k

import "github.com/spf13/viper"

func Dyn(v *viper.Viper, keys []string) {
	for _, key := range keys {
		_ = v.GetString(key)
	}
}
`)
	s, err = scanKeys(dir, "example.com/m", "cmd", "internal")
	if err != nil {
		t.Fatal(err)
	}
	if len(s.issues) != 1 || !strings.HasPrefix(s.issues[0].Pos, "internal/k/dyn.go:7") {
		t.Errorf("want one issue at internal/k/dyn.go:7, got %v", s.issues)
	}
}
