package train

import (
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"

	"github.com/hpa-plates/hpa/internal/labels"
	"github.com/hpa-plates/hpa/internal/model"
	"github.com/hpa-plates/hpa/internal/pipeline"
)

// dataset is the labeled training data: every sample's four channel files, its labels, and a cache
// of its decoded planes at the training size (uint8, 4 x S x S: 256 KiB per sample at 256 px).
type dataset struct {
	ids    []string
	files  [][4]string
	labels [][]int
	size   int
	order  []pipeline.Channel // input channel order
	decode pipeline.DecodeOptions

	mu       sync.Mutex
	cache    map[int][]uint8
	cacheMax int // samples kept decoded (0 = none)
}

// MissingImagesError lists the samples of a label file whose images are missing.
type MissingImagesError struct {
	Missing []string // "Id: channel file ..." lines
}

func (e *MissingImagesError) Error() string {
	show := e.Missing
	if len(show) > 20 {
		show = show[:20]
	}
	more := ""
	if len(e.Missing) > len(show) {
		more = fmt.Sprintf("\n  ... and %d more", len(e.Missing)-len(show))
	}
	return fmt.Sprintf("%d labeled samples have missing images (use --skip-missing to train without them):\n  %s%s",
		len(e.Missing), strings.Join(show, "\n  "), more)
}

// ImageDir is where the images of a data directory are: DIR/train when it exists (Kaggle layout,
// `hpa synth`), else DIR itself.
func ImageDir(dataDir string) string {
	if st, err := os.Stat(filepath.Join(dataDir, "train")); err == nil && st.IsDir() {
		return filepath.Join(dataDir, "train")
	}
	return dataDir
}

// loadDataset reads DIR/train.csv and finds each sample's images (any extension ScanDir knows).
// Samples with missing channels are a *MissingImagesError unless skip is set; then they are dropped
// and returned as skipped.
func loadDataset(dataDir string, size int, order []pipeline.Channel, dec pipeline.DecodeOptions, skip bool, cacheMax int) (*dataset, []string, error) {
	examples, err := labels.ReadTargetsFile(filepath.Join(dataDir, "train.csv"))
	if err != nil {
		return nil, nil, err
	}
	if len(examples) == 0 {
		return nil, nil, fmt.Errorf("%s: no labeled samples", filepath.Join(dataDir, "train.csv"))
	}
	imgDir := ImageDir(dataDir)
	complete, incomplete, err := pipeline.ScanDir(imgDir)
	if err != nil {
		return nil, nil, err
	}
	byID := make(map[string][4]string, len(complete))
	for _, s := range complete {
		byID[s.ID] = s.Files
	}
	partial := make(map[string]pipeline.Incomplete, len(incomplete))
	for _, inc := range incomplete {
		partial[inc.ID] = inc
	}
	d := &dataset{size: size, order: order, decode: dec, cache: map[int][]uint8{}, cacheMax: cacheMax}
	var missing []string
	for _, ex := range examples {
		f, ok := byID[ex.ID]
		if !ok {
			what := "all four channel images"
			if inc, ok := partial[ex.ID]; ok {
				var names []string
				for _, c := range inc.Missing {
					names = append(names, c.String())
				}
				what = strings.Join(names, ", ") + " channel image(s)"
			}
			missing = append(missing, fmt.Sprintf("%s: %s missing in %s", ex.ID, what, imgDir))
			continue
		}
		for i, p := range f {
			if !filepath.IsAbs(p) && !strings.HasPrefix(p, imgDir) {
				f[i] = filepath.Join(imgDir, p)
			}
		}
		d.ids = append(d.ids, ex.ID)
		d.files = append(d.files, f)
		d.labels = append(d.labels, ex.Labels)
	}
	sort.Strings(missing)
	if len(missing) > 0 && !skip {
		return nil, nil, &MissingImagesError{Missing: missing}
	}
	if len(d.ids) == 0 {
		return nil, missing, errors.New("train: no sample has all four images")
	}
	return d, missing, nil
}

// planes returns sample i decoded and resized to size, channels in input order, 8-bit.
func (d *dataset) planes(i int) ([]uint8, error) {
	d.mu.Lock()
	if p, ok := d.cache[i]; ok {
		d.mu.Unlock()
		return p, nil
	}
	d.mu.Unlock()
	img, err := pipeline.LoadSample(d.ids[i], d.files[i], d.decode)
	if err != nil {
		return nil, err
	}
	s := d.size
	out := make([]uint8, len(d.order)*s*s)
	for c, ch := range d.order {
		p := pipeline.Resize(img.Planes[ch], s, s)
		copy(out[c*s*s:], p.Pix)
	}
	d.mu.Lock()
	if len(d.cache) < d.cacheMax {
		d.cache[i] = out
	}
	d.mu.Unlock()
	return out, nil
}

// fill writes sample i as [0,1] float32 CHW into dst.
func (d *dataset) fill(dst []float32, i int) error {
	p, err := d.planes(i)
	if err != nil {
		return err
	}
	for j, v := range p {
		dst[j] = float32(v) * (1.0 / 255)
	}
	return nil
}

// channelStats streams every sample once (at the training size, the planes the model sees before
// augmentation) and returns each input channel's mean and standard deviation of p/255 over all
// pixels of all samples. Sums are exact integers, so the result does not depend on the order.
func (d *dataset) channelStats(workers int) (model.Normalization, error) {
	c, s := len(d.order), d.size
	var mu sync.Mutex
	sum := make([]uint64, c)
	sq := make([]uint64, c)
	var firstErr error
	next := make(chan int)
	var wg sync.WaitGroup
	for range max(1, workers) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ls, lq := make([]uint64, c), make([]uint64, c)
			for i := range next {
				p, err := d.planes(i)
				if err != nil {
					mu.Lock()
					if firstErr == nil {
						firstErr = err
					}
					mu.Unlock()
					continue
				}
				for ch := 0; ch < c; ch++ {
					for _, v := range p[ch*s*s : (ch+1)*s*s] {
						ls[ch] += uint64(v)
						lq[ch] += uint64(v) * uint64(v)
					}
				}
			}
			mu.Lock()
			for ch := range c {
				sum[ch] += ls[ch]
				sq[ch] += lq[ch]
			}
			mu.Unlock()
		}()
	}
	for i := range d.ids {
		next <- i
	}
	close(next)
	wg.Wait()
	if firstErr != nil {
		return model.Normalization{}, firstErr
	}
	n := float64(len(d.ids) * s * s)
	out := model.Normalization{Mean: make([]float32, c), Std: make([]float32, c)}
	for ch := range c {
		m := float64(sum[ch]) / n / 255
		v := float64(sq[ch])/n/(255*255) - m*m
		out.Mean[ch] = float32(m)
		out.Std[ch] = float32(math.Max(math.Sqrt(math.Max(v, 0)), 1e-3))
	}
	return out, nil
}
