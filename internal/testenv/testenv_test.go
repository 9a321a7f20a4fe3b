package testenv

import (
	"os"
	"path/filepath"
	"testing"
)

func TestRepoRootAndData(t *testing.T) {
	root := RepoRoot(t)
	if _, err := os.Stat(filepath.Join(root, "go.mod")); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(HPAFixture(t), "train_sample")); err != nil {
		t.Fatal(err)
	}
}

func TestNativeLibraryFromEnv(t *testing.T) {
	f := filepath.Join(t.TempDir(), "lib.so")
	os.WriteFile(f, nil, 0o644)
	t.Setenv("HPA_TESTUTIL_LIB", f)
	if got := NativeLibrary(t, "HPA_TESTUTIL_LIB", "nowhere.so"); got != f {
		t.Fatalf("got %s", got)
	}
}
