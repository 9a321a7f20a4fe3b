// Package testenv holds what the project's tests share: where the repository, the real HPA sample
// data and the native libraries built by scripts/setup.sh are. Its subpackage minio runs a real
// MinIO server for integration tests.
package testenv

import (
	"os"
	"path/filepath"
	"testing"
)

// RepoRoot is the directory holding go.mod, found by walking up from the test's directory.
func RepoRoot(t testing.TB) string {
	t.Helper()
	dir, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir
		}
		up := filepath.Dir(dir)
		if up == dir {
			t.Fatal("testenv: no go.mod above the test directory")
		}
		dir = up
	}
}

// HPAFixture is testdata/hpa-real in the repository: the full real HPA train.csv and 40 real
// single-channel PNGs (20 under train_sample/, 20 under test_sample/, five per channel each), committed so
// that every clone can run the real-data tests. testdata/hpa-real/README.md gives the source and
// credit. It is always there: a missing fixture fails the test.
func HPAFixture(t testing.TB) string {
	t.Helper()
	dir := filepath.Join(RepoRoot(t), "testdata", "hpa-real")
	if _, err := os.Stat(filepath.Join(dir, "train.csv")); err != nil {
		t.Fatalf("testenv: the committed real-data fixture is missing: %v", err)
	}
	return dir
}

// HPAReal is ../shared/hpa-real beside the repository root: the real HPA train.csv,
// sample_submission.csv and 400 sample PNGs, for the tests that need more than HPAFixture. A
// newcomer's clone has no ../shared: the test then skips with a one-line notice; under CI (env CI
// set, as .ci/run does) CI lays shared/ beside its clone, so a missing folder fails the test.
func HPAReal(t testing.TB) string {
	t.Helper()
	dir := filepath.Join(RepoRoot(t), "..", "shared", "hpa-real")
	if _, err := os.Stat(filepath.Join(dir, "train.csv")); err != nil {
		if os.Getenv("CI") == "" {
			t.Skipf("testenv: %s not found (the full real sample set; testdata/hpa-real covers the rest); CI unset, so skipping", dir)
		}
		t.Fatalf("testenv: real HPA data not found beside the repository (CI=%s): %v", os.Getenv("CI"), err)
	}
	return dir
}

// NativeLibrary returns the library named by env (when set) or RepoRoot/def. A missing library skips
// the test outside CI (run scripts/setup.sh to build it) and fails it when env CI is set.
func NativeLibrary(t testing.TB, env, def string) string {
	t.Helper()
	p := os.Getenv(env)
	if p == "" {
		p = filepath.Join(RepoRoot(t), def)
	}
	if _, err := os.Stat(p); err != nil {
		if os.Getenv("CI") == "" {
			t.Skipf("%s not found (run scripts/setup.sh, or set %s); CI unset, so skipping", p, env)
		}
		t.Fatalf("%s not found (scripts/setup.sh builds it; or set %s): %v", p, env, err)
	}
	return p
}

// NeedTool skips the test with a one-line notice when a tool of the environment is missing, or
// fails it when env CI is set: under CI (.ci/run sets CI=true) scripts/setup.sh has installed
// everything, so nothing may skip. hint says how to get the tool.
func NeedTool(t testing.TB, what, hint string) {
	t.Helper()
	if os.Getenv("CI") != "" {
		t.Fatalf("%s is missing (under CI nothing may skip): %s", what, hint)
	}
	t.Skipf("skipped: %s is missing (%s); CI unset, so skipping", what, hint)
}
