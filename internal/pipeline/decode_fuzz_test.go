package pipeline

import (
	"bytes"
	"errors"
	"image"
	"os"
	"testing"

	xtiff "golang.org/x/image/tiff"
)

// FuzzDecodeChannel: any input either decodes to a consistent plane or gives an *InputError;
// never a panic or crash (the C code is reached with every mutated header and stream). Run:
//
//	go test ./internal/pipeline -run '^$' -fuzz FuzzDecodeChannel -fuzztime 30s -fuzzminimizetime 2s
//
// (the short minimize time matters: the real 512x512 seeds make minimizing an interesting
// mutant take the default 60 s, during which the exec counter stands still).
func FuzzDecodeChannel(f *testing.F) {
	for _, p := range realPNGs(f)[:3] {
		d, err := os.ReadFile(p)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(d)
	}
	g := image.NewGray(image.Rect(0, 0, 24, 16))
	for i := range g.Pix {
		g.Pix[i] = uint8(i * 5)
	}
	f.Add(encodePNG(f, g))
	f.Add(encodePNG(f, colorImage()))
	f.Add(encodeJPEG(f, g, 80))
	f.Add(encodeJPEG(f, colorImage(), 80))
	var tb bytes.Buffer
	xtiff.Encode(&tb, g, &xtiff.Options{Compression: xtiff.Deflate})
	f.Add(tb.Bytes())
	f.Add(writeTIFF(tiffSpec{w: 20, h: 12, bps: 16, spp: 3, photometric: 2, tile: 16, lzw: true, separate: true}, testSamples(20, 12, 3, 16)))
	f.Add(writeTIFF(tiffSpec{w: 20, h: 12, bps: 8, spp: 1, photometric: 1, rowsPerStrip: 5, lzw: true}, testSamples(20, 12, 1, 8)))
	f.Add([]byte("GIF89a"))
	f.Fuzz(func(t *testing.T, data []byte) {
		for _, ch := range []Channel{Green, Yellow} {
			p, err := DecodeChannel(data, "fuzz", ch, DecodeOptions{MaxPixels: 1 << 22})
			if err != nil {
				var ie *InputError
				if !errors.As(err, &ie) || ie.File != "fuzz" || ie.Reason == "" {
					t.Fatalf("error %T %v is not a complete *InputError", err, err)
				}
				continue
			}
			if p.W <= 0 || p.H <= 0 || len(p.Pix) != p.W*p.H || int64(p.W)*int64(p.H) > 1<<22 {
				t.Fatalf("inconsistent plane %dx%d len %d", p.W, p.H, len(p.Pix))
			}
		}
	})
}
