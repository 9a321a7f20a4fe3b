package labeling

import (
	"bytes"
	"strings"
	"testing"
)

func TestLabelProgress(t *testing.T) {
	var buf bytes.Buffer
	p := NewProgress(&buf, "label", 10)
	if p.tty {
		t.Fatal("a buffer is not a terminal")
	}
	p.Add(4) // first report is printed
	p.Add(3) // within two seconds: quiet
	p.Add(3) // the last is always printed
	p.Finish()
	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	if len(lines) != 2 || !strings.HasPrefix(lines[0], "label: 4/10 samples, ") || !strings.HasPrefix(lines[1], "label: 10/10 samples, ") || strings.Contains(buf.String(), "\r") {
		t.Errorf("plain progress:\n%s", buf.String())
	}
	buf.Reset()
	p = NewProgress(&buf, "label", 2)
	p.tty = true
	p.Add(1)
	p.Add(1)
	p.Finish()
	s := buf.String()
	if strings.Count(s, "\r") != 2 || !strings.Contains(s, "1/2 samples") || !strings.Contains(s, "ETA") || !strings.Contains(s, "2/2 samples") || !strings.HasSuffix(s, "\n") {
		t.Errorf("terminal progress %q", s)
	}
}
