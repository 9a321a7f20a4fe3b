package runner

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/hpa-plates/hpa/internal/labels"
	"github.com/hpa-plates/hpa/internal/train/folds"
)

// FoldsOptions configure Folds (`hpa folds`, config section folds.*).
type FoldsOptions struct {
	Labels, Images, Out string
	K                   int
	Seed                uint64
	MaxHamming          int
	Channels            []string
	Workers             int
}

// Folds assigns every sample of a label file to one of K multilabel-stratified folds, keeping
// near-duplicate images (pHash, with Images) in one fold, writes Id,fold to o.Out and the per-fold
// and per-class balance to w.
func Folds(w io.Writer, o FoldsOptions) error {
	if o.Labels == "" {
		return errors.New("folds: --labels is required")
	}
	if o.Out == "" {
		return errors.New("folds: --out is empty")
	}
	start := time.Now()
	ex, err := labels.ReadTargetsFile(o.Labels)
	if err != nil {
		return err
	}
	if len(ex) == 0 {
		return fmt.Errorf("folds: %s has no samples", o.Labels)
	}
	matrix := folds.LabelMatrix(ex)
	opt := folds.Options{K: o.K, Seed: o.Seed}
	if o.Images != "" {
		ids := make([]string, len(ex))
		for i, e := range ex {
			ids[i] = e.ID
		}
		hashes, err := folds.SampleHashes(o.Images, ids, o.Channels, o.Workers)
		if err != nil {
			return err
		}
		opt.Groups = folds.GroupByHash(hashes, o.MaxHamming)
		size := map[int]int{}
		for _, g := range opt.Groups {
			size[g]++
		}
		dupGroups, dupSamples := 0, 0
		for _, n := range size {
			if n > 1 {
				dupGroups++
				dupSamples += n
			}
		}
		fmt.Fprintf(w, "hashed %d samples (%v) in %s: %d near-duplicate groups (max Hamming %d) hold %d samples\n",
			len(ids), o.Channels, time.Since(start).Round(time.Millisecond), dupGroups, o.MaxHamming, dupSamples)
	}
	assign, err := folds.StratifiedKFold(matrix, labels.NumClasses, opt)
	if err != nil {
		return fmt.Errorf("%s: %w", o.Labels, err)
	}
	k := o.K
	if k == 0 {
		k = folds.DefaultK
	}
	if err := writeFoldsCSV(o.Out, ex, assign); err != nil {
		return err
	}
	b, err := folds.ComputeBalance(matrix, assign, k, labels.NumClasses)
	if err != nil {
		return err
	}
	fmt.Fprintf(w, "%d samples from %s -> %d folds (seed %d) in %s: %s\n", len(ex), o.Labels, k, o.Seed,
		time.Since(start).Round(time.Millisecond), o.Out)
	return b.Write(w, labels.ClassNames[:])
}

// writeFoldsCSV writes Id,fold next to the target and renames it into place.
func writeFoldsCSV(path string, ex []folds.Example, assign []int) error {
	if dir := filepath.Dir(path); dir != "." {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return fmt.Errorf("folds: %w", err)
		}
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), ".folds-*.csv")
	if err != nil {
		return fmt.Errorf("folds: %w", err)
	}
	defer os.Remove(tmp.Name())
	bw := bufio.NewWriter(tmp)
	err = folds.Write(bw, ex, assign)
	if err == nil {
		err = bw.Flush()
	}
	if err != nil {
		tmp.Close()
		return fmt.Errorf("folds: write %s: %w", path, err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("folds: write %s: %w", path, err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("folds: %w", err)
	}
	return nil
}
