package synth

import (
	"fmt"
	"io"
	"path/filepath"
	"time"

	"github.com/hpa-plates/hpa/internal/labels"
)

// Write prints what Generate wrote: counts, size, where, and the samples per class.
func (s Summary) Write(w io.Writer) {
	fmt.Fprintf(w, "wrote %d samples (%d PNGs, %.1f MiB, %dx%d px, seed %d) to %s in %s\n",
		s.Samples, s.Files, float64(s.Bytes)/(1<<20), s.Size, s.Size, s.Seed,
		filepath.Join(s.Out, "train"), s.Elapsed.Round(time.Millisecond))
	fmt.Fprintf(w, "labels: %s\n", filepath.Join(s.Out, "train.csv"))
	for c, n := range s.ClassCounts {
		if n > 0 {
			fmt.Fprintf(w, "  %2d %-30s %d\n", c, labels.ClassNames[c], n)
		}
	}
}
