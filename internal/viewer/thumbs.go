package viewer

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"image"
	"image/color"
	"image/png"
	"strconv"
	"sync"

	"github.com/hpa-plates/hpa/internal/pipeline"
)

// Image kinds served per sample: the composite and each channel in its own color.
const (
	KindComposite = "composite"
)

// imageKinds are the kinds a view render produces, composite first.
var imageKinds = [5]string{KindComposite, "red", "green", "blue", "yellow"}

// Size classes of sample images.
const (
	SizeThumb = "thumb" // grid thumbnails (Config.ThumbSize, composite only)
	SizeView  = "view"  // the sample page (Config.ViewSize, all five kinds)
)

// Composite blends the four 8-bit channel planes (same size) into an RGB image in the HPA
// convention: green = protein of interest, blue = nucleus, red = microtubules, and the
// endoplasmic reticulum (yellow) added at half intensity to both red and green, so where it is
// alone it shows as yellow:
//
//	R = min(255, red   + yellow/2)
//	G = min(255, green + yellow/2)
//	B = blue
//
// (yellow/2 is integer division: yellow >> 1).
func Composite(planes [4]pipeline.Plane) *image.NRGBA {
	w, h := planes[0].W, planes[0].H
	img := image.NewNRGBA(image.Rect(0, 0, w, h))
	r, g, b, y := planes[pipeline.Red].Pix, planes[pipeline.Green].Pix, planes[pipeline.Blue].Pix, planes[pipeline.Yellow].Pix
	for i := 0; i < w*h; i++ {
		half := uint16(y[i] >> 1)
		o := img.Pix[4*i : 4*i+4 : 4*i+4]
		o[0] = uint8(min(255, uint16(r[i])+half))
		o[1] = uint8(min(255, uint16(g[i])+half))
		o[2] = b[i]
		o[3] = 255
	}
	return img
}

// tint is the color a channel is shown in on its own.
var tint = [4][3]uint8{pipeline.Red: {1, 0, 0}, pipeline.Green: {0, 1, 0}, pipeline.Blue: {0, 0, 1}, pipeline.Yellow: {1, 1, 0}}

// ChannelImage shows one channel plane in its stain's color (a 256-entry palette ramp).
func ChannelImage(p pipeline.Plane, ch pipeline.Channel) *image.Paletted {
	pal := make(color.Palette, 256)
	t := tint[ch]
	for v := range 256 {
		pal[v] = color.RGBA{uint8(v) * t[0], uint8(v) * t[1], uint8(v) * t[2], 255}
	}
	img := image.NewPaletted(image.Rect(0, 0, p.W, p.H), pal)
	copy(img.Pix, p.Pix)
	return img
}

// fitSize scales w x h so the longer side is at most side (never up).
func fitSize(w, h, side int) (int, int) {
	if w <= side && h <= side {
		return w, h
	}
	if w >= h {
		return side, max(1, (h*side+w/2)/w)
	}
	return max(1, (w*side+h/2)/h), side
}

// thumbKey is where a rendered image is cached: below the thumbnail prefix, named by the plate,
// the sample, the version of its channel objects, the kind and the pixel size.
func (v *Viewer) thumbKey(plate, id, version, kind string, px int) string {
	return v.cfg.ThumbsPrefix + plate + "/" + id + "/" + version + "/" + kind + "-" + strconv.Itoa(px) + ".png"
}

// imageError is a sample whose image cannot be rendered (missing or undecodable channel).
type imageError struct{ reason string }

func (e *imageError) Error() string { return e.reason }

// thumbMaker renders sample images and caches them in the object store.
type thumbMaker struct {
	v      *Viewer
	sem    chan struct{}
	mu     sync.Mutex
	flight map[string]*renderCall
}

type renderCall struct {
	done chan struct{}
	imgs map[string][]byte
	errs map[string]error
}

func newThumbMaker(v *Viewer) *thumbMaker {
	return &thumbMaker{v: v, sem: make(chan struct{}, v.cfg.ThumbWorkers), flight: map[string]*renderCall{}}
}

// maxThumbBytes bounds a cached image read.
const maxThumbBytes = 64 << 20

// image returns the PNG of kind at size class sc for sample s of plate: from the cache when it is
// there, else rendered (once, however many requests ask at the same time) and cached.
func (t *thumbMaker) image(ctx context.Context, plate string, s *sampleObjects, kind, sc string) ([]byte, error) {
	px := t.v.cfg.ViewSize
	if sc == SizeThumb {
		px = t.v.cfg.ThumbSize
	}
	ver := s.version()
	key := t.v.thumbKey(plate, s.ID, ver, kind, px)
	if err := keyUnder(key, t.v.cfg.ThumbsPrefix); err != nil {
		return nil, err
	}
	b, err := t.v.store.Get(ctx, key, maxThumbBytes)
	if err == nil {
		t.v.stats.thumbsCached.Add(1)
		return b, nil
	}
	if !errors.Is(err, ErrNotFound) {
		return nil, err
	}
	flightKey := key
	if sc == SizeView {
		flightKey = t.v.thumbKey(plate, s.ID, ver, "*", px)
	}
	t.mu.Lock()
	c := t.flight[flightKey]
	if c == nil {
		c = &renderCall{done: make(chan struct{})}
		t.flight[flightKey] = c
		go func() {
			// Rendering outlives the request that started it, bounded by the request timeout.
			rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), t.v.cfg.RequestTimeout)
			defer cancel()
			c.imgs, c.errs = t.render(rctx, plate, s, ver, sc, px)
			t.mu.Lock()
			delete(t.flight, flightKey)
			t.mu.Unlock()
			close(c.done)
		}()
	}
	t.mu.Unlock()
	select {
	case <-c.done:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	if b, ok := c.imgs[kind]; ok {
		return b, nil
	}
	if err := c.errs[kind]; err != nil {
		return nil, err
	}
	return nil, &imageError{fmt.Sprintf("no %s image", kind)}
}

// render fetches and decodes the channels and makes the images of size class sc: the composite
// (thumb), or the composite and the four channels (view). Each image is cached under thumbKey.
func (t *thumbMaker) render(ctx context.Context, plate string, s *sampleObjects, ver, sc string, px int) (map[string][]byte, map[string]error) {
	select {
	case t.sem <- struct{}{}:
		defer func() { <-t.sem }()
	case <-ctx.Done():
		return nil, map[string]error{KindComposite: ctx.Err()}
	}
	imgs, errs := map[string][]byte{}, map[string]error{}
	var planes [4]pipeline.Plane
	var chErr [4]error
	var wg sync.WaitGroup
	for c := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			o := s.Channels[c]
			if o.Key == "" {
				chErr[c] = &imageError{fmt.Sprintf("the %s channel is not uploaded", pipeline.Channel(c))}
				return
			}
			data, err := t.v.store.Get(ctx, o.Key, t.v.cfg.MaxObjectBytes)
			if err != nil {
				if errors.Is(err, ErrNotFound) || errors.Is(err, ErrTooLarge) {
					err = &imageError{err.Error()}
				}
				chErr[c] = err
				return
			}
			p, err := pipeline.DecodeChannel(data, o.Key, pipeline.Channel(c), t.v.cfg.Decode)
			if err != nil {
				if pipeline.KindOf(err) != "" {
					err = &imageError{err.Error()}
				}
				chErr[c] = err
				return
			}
			planes[c] = p
		}()
	}
	wg.Wait()
	t.v.stats.renders.Add(1)
	// All planes are shown at the size of the first decoded one, fitted to px.
	w, h := 0, 0
	for c := range 4 {
		if chErr[c] == nil {
			w, h = fitSize(planes[c].W, planes[c].H, px)
			break
		}
	}
	for c := range 4 {
		if chErr[c] == nil && (planes[c].W != w || planes[c].H != h) {
			planes[c] = pipeline.Resize(planes[c], w, h)
		}
	}
	encode := func(kind string, img image.Image) {
		var buf bytes.Buffer
		enc := png.Encoder{CompressionLevel: png.BestSpeed}
		if err := enc.Encode(&buf, img); err != nil {
			errs[kind] = err
			return
		}
		imgs[kind] = buf.Bytes()
		key := t.v.thumbKey(plate, s.ID, ver, kind, px)
		if err := keyUnder(key, t.v.cfg.ThumbsPrefix); err != nil {
			return
		}
		if err := t.v.store.Put(ctx, key, buf.Bytes(), "image/png"); err != nil {
			t.v.log.Warn("viewer: could not cache a thumbnail", "key", key, "err", err)
		}
	}
	if err := errors.Join(chErr[:]...); err != nil {
		errs[KindComposite] = err
	} else {
		encode(KindComposite, Composite(planes))
	}
	if sc == SizeView {
		for c := range 4 {
			if chErr[c] != nil {
				errs[imageKinds[c+1]] = chErr[c]
				continue
			}
			encode(imageKinds[c+1], ChannelImage(planes[c], pipeline.Channel(c)))
		}
	}
	return imgs, errs
}
