package pipeline

import (
	"bytes"
	"image"
	"image/color"
	"image/jpeg"
	"testing"
)

func encodeJPEG(t testing.TB, img image.Image, q int) []byte {
	t.Helper()
	var b bytes.Buffer
	if err := jpeg.Encode(&b, img, &jpeg.Options{Quality: q}); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// closeTo compares with image/jpeg's decode of the same file: the two IDCTs and chroma
// upsamplers differ by a few levels, never more.
func closeTo(t *testing.T, what string, got, want []uint8) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%s: %d pixels, want %d", what, len(got), len(want))
	}
	var sum, worst int
	for i := range got {
		d := int(got[i]) - int(want[i])
		if d < 0 {
			d = -d
		}
		sum += d
		worst = max(worst, d)
	}
	if mean := float64(sum) / float64(len(got)); mean > 1.5 || worst > 12 {
		t.Fatalf("%s: mean abs diff %.2f, max %d vs image/jpeg", what, mean, worst)
	}
}

func TestDecodeJPEGGray(t *testing.T) {
	g := image.NewGray(image.Rect(0, 0, 80, 72))
	for y := 0; y < 72; y++ {
		for x := 0; x < 80; x++ {
			g.Pix[y*80+x] = uint8(x*3 + y)
		}
	}
	data := encodeJPEG(t, g, 95)
	ref, err := jpeg.Decode(bytes.NewReader(data))
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := ref.(*image.Gray); !ok {
		t.Fatalf("expected a grayscale JPEG, image/jpeg gave %T", ref)
	}
	want := planeFromImage(ref, Red, "rg").Pix
	for ch := Red; ch <= Yellow; ch++ { // gray is taken as is for every channel
		got, err := DecodeChannel(data, "g.jpg", ch, DecodeOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if got.W != 80 || got.H != 72 {
			t.Fatalf("size %dx%d", got.W, got.H)
		}
		closeTo(t, "gray "+ch.String(), got.Pix, want)
	}
}

func TestDecodeJPEGColorChannels(t *testing.T) {
	m := image.NewRGBA(image.Rect(0, 0, 96, 64))
	for y := 0; y < 64; y++ {
		for x := 0; x < 96; x++ {
			// smooth, independent planes so chroma subsampling costs little
			m.Set(x, y, color.RGBA{uint8(40 + x*2), uint8(30 + y*3), uint8(200 - x - y), 255})
		}
	}
	data := encodeJPEG(t, m, 100)
	ref, err := jpeg.Decode(bytes.NewReader(data))
	if err != nil {
		t.Fatal(err)
	}
	for _, yellow := range []string{"rg", "r", "g", "gray"} {
		for ch := Red; ch <= Yellow; ch++ {
			got, err := DecodeChannel(data, "c.jpg", ch, DecodeOptions{YellowFrom: yellow})
			if err != nil {
				t.Fatal(err)
			}
			closeTo(t, ch.String()+" yellow="+yellow, got.Pix, wantChannel(ref, ch, yellow))
		}
	}
	// And the planes really are the color planes, not a gray conversion: red is bright where x is.
	r, _ := DecodeChannel(data, "c.jpg", Red, DecodeOptions{})
	b, _ := DecodeChannel(data, "c.jpg", Blue, DecodeOptions{})
	if r.Pix[95] < 200 || b.Pix[95] > 120 || r.Pix[0] > 60 {
		t.Fatalf("red/blue planes wrong: r[0]=%d r[95]=%d b[95]=%d", r.Pix[0], r.Pix[95], b.Pix[95])
	}
}

func TestDecodeJPEGBadInput(t *testing.T) {
	g := image.NewGray(image.Rect(0, 0, 64, 64))
	for i := range g.Pix {
		g.Pix[i] = uint8(i * 31)
	}
	good := encodeJPEG(t, g, 90)
	garbage := append([]byte{0xFF, 0xD8, 0xFF, 0xE0}, bytes.Repeat([]byte{0x13, 0x37}, 64)...)
	// A SOF0 claiming 60000x60000 (the JPEG limit is 65535): refused on the header.
	bomb := bytes.Clone(good)
	if i := bytes.Index(bomb, []byte{0xFF, 0xC0}); i < 0 {
		t.Fatal("no SOF0")
	} else {
		bomb[i+5], bomb[i+6], bomb[i+7], bomb[i+8] = 0xEA, 0x60, 0xEA, 0x60
	}
	cases := []struct {
		name string
		data []byte
		kind ErrKind
	}{
		{"truncated", good[:len(good)*2/3], KindTruncated},
		{"header only", good[:20], KindTruncated},
		{"garbage", garbage, KindCorrupt},
		{"bomb", bomb, KindTooLarge},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := DecodeChannel(c.data, c.name+".jpg", Green, DecodeOptions{})
			wantKind(t, err, c.kind, c.name+".jpg")
		})
	}
}
