package folds

import (
	"fmt"
	"image/png"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"sync/atomic"
)

// hashChannelNames are the valid channel suffixes (pipeline.ChannelNames).
var hashChannelNames = map[string]bool{"red": true, "green": true, "blue": true, "yellow": true}

// DefaultHashChannels are the channels SampleHashes reads by default: the protein (green) and the
// nucleus (blue), the two that identify a field of view.
var DefaultHashChannels = []string{"green", "blue"}

// SampleHashes computes one PHash per sample Id from the PNGs dir/{Id}_{channel}.png of the given
// channels: the channel planes (8-bit gray; other PNG types are converted to gray) are averaged
// pixel by pixel and the mean plane is hashed. workers <= 0 uses all CPUs. A missing or undecodable
// file, or channels of different sizes, is a *HashError naming the file; with several bad samples
// the one earliest in ids is reported.
func SampleHashes(dir string, ids []string, channels []string, workers int) ([]uint64, error) {
	if len(channels) == 0 {
		return nil, &HashError{Name: dir, Reason: "no channels to hash"}
	}
	for _, c := range channels {
		if !hashChannelNames[c] {
			return nil, &HashError{Name: dir, Reason: fmt.Sprintf("unknown channel %q (want red, green, blue or yellow)", c)}
		}
	}
	if workers <= 0 {
		workers = runtime.NumCPU()
	}
	workers = min(workers, max(1, len(ids)))
	out := make([]uint64, len(ids))
	errs := make([]error, len(ids))
	var next atomic.Int64
	var failed atomic.Bool
	var wg sync.WaitGroup
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1) - 1)
				if i >= len(ids) || failed.Load() {
					return
				}
				h, err := hashSample(dir, ids[i], channels)
				if err != nil {
					errs[i] = err
					failed.Store(true)
					return
				}
				out[i] = h
			}
		}()
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			return nil, err
		}
	}
	return out, nil
}

func hashSample(dir, id string, channels []string) (uint64, error) {
	var sum []uint32
	var w, h int
	for _, c := range channels {
		path := filepath.Join(dir, id+"_"+c+".png")
		p, err := readGrayPNG(path)
		if err != nil {
			return 0, err
		}
		if sum == nil {
			w, h = p.W, p.H
			sum = make([]uint32, w*h)
		} else if p.W != w || p.H != h {
			return 0, &HashError{Name: path, Reason: fmt.Sprintf("%dx%d, but the other channels of %s are %dx%d", p.W, p.H, id, w, h)}
		}
		for i, v := range p.Pix {
			sum[i] += uint32(v)
		}
	}
	mean := GrayPlane{W: w, H: h, Pix: make([]uint8, w*h)}
	n := uint32(len(channels))
	for i, s := range sum {
		mean.Pix[i] = uint8((s + n/2) / n)
	}
	hash, err := PHash(mean)
	if err != nil {
		return 0, &HashError{Name: id, Reason: err.(*HashError).Reason}
	}
	return hash, nil
}

func readGrayPNG(path string) (GrayPlane, error) {
	f, err := os.Open(path)
	if err != nil {
		return GrayPlane{}, &HashError{Name: path, Reason: err.Error()}
	}
	defer f.Close()
	img, err := png.Decode(f)
	if err != nil {
		return GrayPlane{}, &HashError{Name: path, Reason: "decode PNG: " + err.Error()}
	}
	return GrayFromImage(img), nil
}
