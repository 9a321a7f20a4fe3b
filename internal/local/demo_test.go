package local

import (
	"bytes"
	"strings"
	"testing"
)

func TestMacroF1(t *testing.T) {
	f1, n := MacroF1([]DemoResult{{Truth: []int{0, 2}, Predicted: []int{0}}, {Truth: []int{2}, Predicted: []int{2, 5}}, {Truth: []int{7}, Error: "corrupt"}})
	// class 0: tp1 -> 1; class 2: tp1 fn1 -> 2/3; class 5: fp1 -> 0; the failed sample does not count.
	if n != 3 || f1 < 0.5555 || f1 > 0.5556 {
		t.Errorf("macro-F1 %v over %d", f1, n)
	}
	if f1, n := MacroF1(nil); f1 != 0 || n != 0 {
		t.Errorf("no results: %v %d", f1, n)
	}
}

func TestPrintDemoTable(t *testing.T) {
	var buf bytes.Buffer
	PrintDemoTable(&buf, "p1", []DemoResult{{ID: "b", Truth: []int{25}, Predicted: []int{25}}, {ID: "a", Truth: []int{0}, Error: "corrupt: bad"}})
	want := "\nplate p1: 2 samples\n" +
		"sample  true labels    predicted labels\n" +
		"a       0 Nucleoplasm  ERROR corrupt: bad\n" +
		"b       25 Cytosol     25 Cytosol\n" +
		"macro-F1 1.0000 over 1 classes (1 labeled, 1 failed)\n"
	if got := buf.String(); got != want {
		t.Errorf("table\n%q\nwant\n%q", got, want)
	}
	if !strings.HasPrefix(classList(nil), "-") {
		t.Error("empty class list")
	}
}
