// Package synth makes synthetic Human Protein Atlas data in the exact competition format: fields
// of cells with nuclei (blue), microtubules (red), ER (yellow) and a protein (green) whose spatial
// pattern depends on its classes, with label sets drawn from the real label distribution.
//
// Everything is a pure function of the seed: the same options give byte-identical files whatever
// the worker count (on a given platform; floating-point contraction may differ between CPU
// architectures).
package synth

import (
	"bytes"
	"context"
	"fmt"
	"image/png"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"time"

	"github.com/hpa-plates/hpa/internal/labels"
	"github.com/hpa-plates/hpa/internal/pipeline"
)

// Limits of Options.
const (
	MinSize    = 16
	MaxSize    = 4096
	MaxSamples = 10_000_000
)

// Options of Generate.
type Options struct {
	Out     string // dataset directory: images in Out/train, labels in Out/train.csv
	Samples int    // number of samples (each 4 PNG files)
	Size    int    // image side in pixels (the real data is 512)
	Seed    int64  // everything derives from it
	Workers int    // concurrent renderers; 0 means GOMAXPROCS
}

// Summary describes a generated dataset.
type Summary struct {
	Out         string
	Samples     int
	Size        int
	Seed        int64
	Files       int   // PNG files written
	Bytes       int64 // bytes written, PNGs and train.csv
	ClassCounts [labels.NumClasses]int
	Elapsed     time.Duration
}

// OptionError reports an invalid option.
type OptionError struct {
	Option string
	Reason string
}

func (e *OptionError) Error() string { return fmt.Sprintf("synth: option %s: %s", e.Option, e.Reason) }

// FileError reports a file that could not be written.
type FileError struct {
	Path string
	Err  error
}

func (e *FileError) Error() string { return fmt.Sprintf("synth: write %s: %v", e.Path, e.Err) }
func (e *FileError) Unwrap() error { return e.Err }

// Validate checks the options.
func (o Options) Validate() error {
	switch {
	case o.Out == "":
		return &OptionError{"out", "empty output directory"}
	case o.Samples < 1 || o.Samples > MaxSamples:
		return &OptionError{"samples", fmt.Sprintf("%d, want 1..%d", o.Samples, MaxSamples)}
	case o.Size < MinSize || o.Size > MaxSize:
		return &OptionError{"size", fmt.Sprintf("%d, want %d..%d", o.Size, MinSize, MaxSize)}
	case o.Workers < 0:
		return &OptionError{"workers", fmt.Sprintf("%d, want >= 0 (0: one per CPU)", o.Workers)}
	}
	return nil
}

// Plan returns the Ids and label sets of a dataset of n samples: label sets are drawn from the real
// HPA distribution (RealLabelSets), Ids look like the competition's (UUID version 1 text) but carry
// a multicast node id derived from the seed, which no real HPA Id has.
func Plan(seed int64, n int) ([]LabeledID, error) {
	if n < 0 || n > MaxSamples {
		return nil, &OptionError{"samples", fmt.Sprintf("%d, want 0..%d", n, MaxSamples)}
	}
	smp, err := newLabelSampler(realLabelSets)
	if err != nil {
		return nil, err
	}
	r := newRNGFor(seed, "plan")
	node := r.uint64()&0xffffffffffff | 0x010000000000
	rows := make([]LabeledID, 0, n)
	seen := make(map[string]bool, n)
	for len(rows) < n {
		a, b := r.uint64(), r.uint64()
		id := fmt.Sprintf("%08x-%04x-11e8-%04x-%012x", a>>32, (a>>16)&0xffff, (b>>48)&0x3fff|0x8000, node)
		if seen[id] {
			continue
		}
		seen[id] = true
		rows = append(rows, LabeledID{ID: id, Labels: smp.draw(r)})
	}
	return rows, nil
}

// Generate writes a synthetic dataset: Out/train/{Id}_{red,green,blue,yellow}.png (8-bit gray,
// Size x Size) and Out/train.csv ("Id,Target"). train.csv is written last, through a temporary
// file and a rename, so its presence marks a complete dataset.
func Generate(ctx context.Context, o Options) (Summary, error) {
	start := time.Now()
	if err := o.Validate(); err != nil {
		return Summary{}, err
	}
	workers := o.Workers
	if workers == 0 {
		workers = runtime.GOMAXPROCS(0)
	}
	workers = min(workers, o.Samples)
	rows, err := Plan(o.Seed, o.Samples)
	if err != nil {
		return Summary{}, err
	}
	dir := filepath.Join(o.Out, "train")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return Summary{}, &FileError{dir, err}
	}

	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	jobs := make(chan int)
	var (
		wg      sync.WaitGroup
		mu      sync.Mutex
		written int64
	)
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			w := newSampleWriter(dir)
			for i := range jobs {
				n, err := w.write(o.Seed, rows[i], o.Size)
				if err != nil {
					cancel(err)
					return
				}
				mu.Lock()
				written += n
				mu.Unlock()
			}
		}()
	}
feed:
	for i := range rows {
		select {
		case jobs <- i:
		case <-ctx.Done():
			break feed
		}
	}
	close(jobs)
	wg.Wait()
	if err := context.Cause(ctx); err != nil {
		return Summary{}, err
	}

	csvPath := filepath.Join(o.Out, "train.csv")
	var buf bytes.Buffer
	if err := labels.WriteTargets(&buf, rows); err != nil {
		return Summary{}, err
	}
	if err := writeFileAtomic(csvPath, buf.Bytes()); err != nil {
		return Summary{}, err
	}
	return Summary{
		Out: o.Out, Samples: o.Samples, Size: o.Size, Seed: o.Seed,
		Files: 4 * o.Samples, Bytes: written + int64(buf.Len()),
		ClassCounts: ClassCounts(rows), Elapsed: time.Since(start),
	}, nil
}

// sampleWriter renders and encodes samples, reusing its buffers (one per worker).
type sampleWriter struct {
	dir string
	enc png.Encoder
	buf bytes.Buffer
}

func newSampleWriter(dir string) *sampleWriter {
	return &sampleWriter{dir: dir, enc: png.Encoder{CompressionLevel: png.BestSpeed}}
}

// write renders one sample and writes its four files; it returns the bytes written.
func (w *sampleWriter) write(seed int64, row LabeledID, size int) (int64, error) {
	imgs := Render(seed, row.ID, row.Labels, size)
	var n int64
	for c, img := range imgs {
		path := filepath.Join(w.dir, row.ID+"_"+pipeline.ChannelNames[c]+".png")
		w.buf.Reset()
		if err := w.enc.Encode(&w.buf, img); err != nil {
			return n, &FileError{path, err}
		}
		if err := os.WriteFile(path, w.buf.Bytes(), 0o644); err != nil {
			return n, &FileError{path, err}
		}
		n += int64(w.buf.Len())
	}
	return n, nil
}

// writeFileAtomic writes data to path through a temporary file in the same directory.
func writeFileAtomic(path string, data []byte) error {
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, data, 0o644); err != nil {
		return &FileError{path, err}
	}
	if err := os.Rename(tmp, path); err != nil {
		_ = os.Remove(tmp)
		return &FileError{path, err}
	}
	return nil
}

// ValidateSample checks the arguments of Render: Render itself never fails, it ignores bad labels
// and returns empty images for a non-positive size.
func ValidateSample(id string, classes []int, size int) error {
	if size < 1 || size > MaxSize {
		return &OptionError{"size", fmt.Sprintf("sample %q: %d, want 1..%d", id, size, MaxSize)}
	}
	for _, c := range classes {
		if c < 0 || c >= labels.NumClasses {
			return &OptionError{"labels", fmt.Sprintf("sample %q: unknown class id %d (want 0..%d)", id, c, labels.NumClasses-1)}
		}
	}
	return nil
}
