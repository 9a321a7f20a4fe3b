package pipeline

import (
	"bytes"
	"image"
	"image/color"
	"testing"

	xtiff "golang.org/x/image/tiff"
)

// benchGray16 is a smooth, noisy 16-bit image of the given side, like a raw HPA original.
func benchGray16(side int) *image.Gray16 {
	g := image.NewGray16(image.Rect(0, 0, side, side))
	seed := uint32(1)
	for y := 0; y < side; y++ {
		for x := 0; x < side; x++ {
			seed = seed*1664525 + 1013904223
			v := uint32((x*y)%4096)*8 + seed>>28
			g.SetGray16(x, y, color.Gray16{Y: uint16(v)})
		}
	}
	return g
}

// BenchmarkDecodeTIFF2048 decodes a 2048x2048 16-bit deflate TIFF (the size of the HPA
// originals) through libtiff.
func BenchmarkDecodeTIFF2048(b *testing.B) {
	var buf bytes.Buffer
	if err := xtiff.Encode(&buf, benchGray16(2048), &xtiff.Options{Compression: xtiff.Deflate}); err != nil {
		b.Fatal(err)
	}
	data := buf.Bytes()
	b.SetBytes(int64(len(data)))
	for b.Loop() {
		if _, err := DecodeChannel(data, "x.tif", Green, DecodeOptions{}); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkDecodeJPEG2048 decodes a 2048x2048 color JPEG through TurboJPEG and takes the
// yellow plane.
func BenchmarkDecodeJPEG2048(b *testing.B) {
	m := image.NewRGBA(image.Rect(0, 0, 2048, 2048))
	for i := range m.Pix {
		m.Pix[i] = uint8(i*7 + i>>11)
	}
	data := encodeJPEG(b, m, 90)
	b.SetBytes(int64(len(data)))
	for b.Loop() {
		if _, err := DecodeChannel(data, "x.jpg", Yellow, DecodeOptions{}); err != nil {
			b.Fatal(err)
		}
	}
}
