package pipeline

import (
	"bytes"
	"compress/zlib"
	"encoding/binary"
	"errors"
	"hash/crc32"
	"image"
	"image/color"
	"image/png"
	"math/rand"
	"runtime"
	"testing"
)

// pngChunk appends one chunk with a correct CRC.
func pngChunk(b []byte, typ string, body []byte) []byte {
	b = binary.BigEndian.AppendUint32(b, uint32(len(body)))
	start := len(b)
	b = append(b, typ...)
	b = append(b, body...)
	return binary.BigEndian.AppendUint32(b, crc32.ChecksumIEEE(b[start:]))
}

func ihdr(w, h uint32, depth, ctype, interlace byte) []byte {
	d := binary.BigEndian.AppendUint32(nil, w)
	d = binary.BigEndian.AppendUint32(d, h)
	return append(d, depth, ctype, 0, 0, interlace)
}

// makePNG builds a PNG from already-filtered scanlines, splitting the zlib data over nidat chunks.
func makePNG(t testing.TB, w, h uint32, depth, ctype byte, filtered []byte, nidat int) []byte {
	t.Helper()
	var z bytes.Buffer
	zw := zlib.NewWriter(&z)
	zw.Write(filtered)
	zw.Close()
	b := append([]byte(nil), sigPNG...)
	b = pngChunk(b, "IHDR", ihdr(w, h, depth, ctype, 0))
	zd := z.Bytes()
	step := (len(zd) + nidat - 1) / nidat
	for i := 0; i < len(zd); i += step {
		b = pngChunk(b, "IDAT", zd[i:min(i+step, len(zd))])
	}
	return pngChunk(b, "IEND", nil)
}

// TestFastPNGAllFiltersVsImagePNG feeds random filtered scanlines with every filter type (so
// values wrap and every Paeth branch occurs) and compares with image/png, for 8 and 16 bit,
// several widths (SIMD body and scalar tails) and split IDAT chunks.
func TestFastPNGAllFiltersVsImagePNG(t *testing.T) {
	rng := rand.New(rand.NewSource(1))
	for _, depth := range []byte{8, 16} {
		for _, w := range []uint32{1, 2, 15, 16, 17, 33, 100} {
			h := uint32(23)
			rowbytes := int(w) * int(depth) / 8
			raw := make([]byte, int(h)*(1+rowbytes))
			for y := 0; y < int(h); y++ {
				raw[y*(1+rowbytes)] = byte(y % 5)
				rng.Read(raw[y*(1+rowbytes)+1 : (y+1)*(1+rowbytes)])
			}
			for _, nidat := range []int{1, 3} {
				data := makePNG(t, w, h, depth, 0, raw, nidat)
				got, err := DecodeChannel(data, "f.png", Red, DecodeOptions{})
				if err != nil {
					t.Fatalf("depth %d w %d: %v", depth, w, err)
				}
				ref, err := png.Decode(bytes.NewReader(data))
				if err != nil {
					t.Fatal(err)
				}
				want := planeFromImage(ref, Red, "rg")
				if !bytes.Equal(got.Pix, want.Pix) || got.W != int(w) || got.H != int(h) {
					t.Fatalf("depth %d w %d nidat %d: pixels differ from image/png", depth, w, nidat)
				}
			}
		}
	}
}

func wantKind(t *testing.T, err error, kind ErrKind, file string) {
	t.Helper()
	var ie *InputError
	if !errors.As(err, &ie) {
		t.Fatalf("want *InputError %s, got %T %v", kind, err, err)
	}
	if ie.Kind != kind {
		t.Fatalf("want kind %s, got %s (%v)", kind, ie.Kind, err)
	}
	if file != "" && ie.File != file {
		t.Fatalf("error names %q, want %q", ie.File, file)
	}
	if msg := err.Error(); !bytes.Contains([]byte(msg), []byte(string(kind))) || ie.Reason == "" {
		t.Fatalf("error message %q lacks kind or reason", msg)
	}
}

func gray64(t testing.TB) []byte {
	g := image.NewGray(image.Rect(0, 0, 64, 32))
	for i := range g.Pix {
		g.Pix[i] = uint8(i * 7)
	}
	return encodePNG(t, g)
}

// chunkPos returns the offset of the first chunk of type typ.
func chunkPos(data []byte, typ string) int {
	for pos := 8; pos+8 <= len(data); {
		n := int(binary.BigEndian.Uint32(data[pos:]))
		if string(data[pos+4:pos+8]) == typ {
			return pos
		}
		pos += 12 + n
	}
	return -1
}

// setIHDR rewrites the IHDR size and fixes its CRC.
func setIHDR(data []byte, w, h uint32) []byte {
	d := append([]byte(nil), data...)
	binary.BigEndian.PutUint32(d[16:], w)
	binary.BigEndian.PutUint32(d[20:], h)
	binary.BigEndian.PutUint32(d[29:], crc32.ChecksumIEEE(d[12:29]))
	return d
}

func TestDecodeBadInput(t *testing.T) {
	good := gray64(t)
	idat := chunkPos(good, "IDAT")
	idatLen := int(binary.BigEndian.Uint32(good[idat:]))

	badCRC := append([]byte(nil), good...)
	badCRC[idat+8+idatLen/2] ^= 0x55

	// Damage the deflate stream but keep the chunk CRC valid: only libdeflate can notice.
	badZlib := append([]byte(nil), good...)
	for i := idat + 8 + 2; i < idat+8+idatLen-4; i++ {
		badZlib[i] = 0xff
	}
	binary.BigEndian.PutUint32(badZlib[idat+8+idatLen:], crc32.ChecksumIEEE(badZlib[idat+4:idat+8+idatLen]))

	badFilter := make([]byte, 4*(1+4))
	badFilter[5] = 7

	bomb := append([]byte(nil), sigPNG...)
	bomb = pngChunk(bomb, "IHDR", ihdr(100000, 100000, 8, 0, 0))
	bombRGB := append([]byte(nil), sigPNG...)
	bombRGB = pngChunk(bombRGB, "IHDR", ihdr(100000, 100000, 8, 2, 0))

	noIDAT := append([]byte(nil), sigPNG...)
	noIDAT = pngChunk(noIDAT, "IHDR", ihdr(4, 4, 8, 0, 0))
	noIDAT = pngChunk(noIDAT, "IEND", nil)

	cases := []struct {
		name string
		data []byte
		opt  DecodeOptions
		kind ErrKind
	}{
		{"empty", nil, DecodeOptions{}, KindEmpty},
		{"gif", []byte("GIF89a\x01\x00\x01\x00\x00\x00\x00;"), DecodeOptions{}, KindUnsupported},
		{"text", []byte("Id,Target\nabc,1 2\n"), DecodeOptions{}, KindUnsupported},
		{"bad signature", append([]byte("\x89PNX\r\n\x1a\n"), good[8:]...), DecodeOptions{}, KindCorrupt},
		{"signature only", sigPNG[:6], DecodeOptions{}, KindTruncated},
		{"crc", badCRC, DecodeOptions{}, KindCorrupt},
		{"zlib", badZlib, DecodeOptions{}, KindCorrupt},
		{"half", good[:len(good)/2], DecodeOptions{}, KindTruncated},
		{"no IEND", good[:len(good)-12], DecodeOptions{}, KindTruncated},
		{"header only", good[:33], DecodeOptions{}, KindTruncated},
		{"short data", setIHDR(good, 64, 64), DecodeOptions{}, KindTruncated},
		{"too much data", setIHDR(good, 64, 16), DecodeOptions{}, KindCorrupt},
		{"zero width", setIHDR(good, 0, 32), DecodeOptions{}, KindCorrupt},
		{"filter type", makePNG(t, 4, 4, 8, 0, badFilter, 1), DecodeOptions{}, KindCorrupt},
		{"no IDAT", noIDAT, DecodeOptions{}, KindCorrupt},
		{"bomb gray", bomb, DecodeOptions{}, KindTooLarge},
		{"bomb rgb", bombRGB, DecodeOptions{}, KindTooLarge},
		{"max pixels", good, DecodeOptions{MaxPixels: 64*32 - 1}, KindTooLarge},
		{"bad depth", makePNG(t, 4, 4, 7, 0, make([]byte, 4*5), 1), DecodeOptions{}, KindUnsupported},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			p, err := DecodeChannel(c.data, c.name+".png", Green, c.opt)
			if err == nil {
				t.Fatalf("decoded %dx%d, want error %s", p.W, p.H, c.kind)
			}
			wantKind(t, err, c.kind, c.name+".png")
		})
	}
	if _, err := DecodeChannel(good, "ok.png", Green, DecodeOptions{MaxPixels: 64 * 32}); err != nil {
		t.Fatalf("exactly MaxPixels must pass: %v", err)
	}
}

// TestTrailingIDATDataLikeImagePNG: junk after the end of the zlib stream inside the IDAT data
// is ignored by image/png; the fast path does the same and gives the same pixels.
func TestTrailingIDATDataLikeImagePNG(t *testing.T) {
	raw := []byte{0, 1, 2, 3, 4, 1, 5, 5, 5, 5, 2, 1, 1, 1, 1, 4, 9, 8, 7, 6}
	var zb bytes.Buffer
	zw := zlib.NewWriter(&zb)
	zw.Write(raw)
	zw.Close()
	data := append([]byte(nil), sigPNG...)
	data = pngChunk(data, "IHDR", ihdr(4, 4, 8, 0, 0))
	data = pngChunk(data, "IDAT", append(zb.Bytes(), 1, 2, 3))
	data = pngChunk(data, "IEND", nil)
	ref, err := png.Decode(bytes.NewReader(data))
	if err != nil {
		t.Fatalf("image/png: %v", err)
	}
	got, err := DecodeChannel(data, "t.png", Red, DecodeOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got.Pix, ref.(*image.Gray).Pix) {
		t.Fatalf("got %v want %v", got.Pix, ref.(*image.Gray).Pix)
	}
}

// TestDecodeBombNoAllocation shows the 100000x100000 header is refused before any pixel
// buffer (10 GB) is allocated.
func TestDecodeBombNoAllocation(t *testing.T) {
	bomb := append([]byte(nil), sigPNG...)
	bomb = pngChunk(bomb, "IHDR", ihdr(100000, 100000, 8, 0, 0))
	bomb = pngChunk(bomb, "IDAT", []byte{0x78, 0x9c})
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	_, err := DecodeChannel(bomb, "bomb.png", Red, DecodeOptions{})
	runtime.ReadMemStats(&after)
	if KindOf(err) != KindTooLarge {
		t.Fatalf("got %v", err)
	}
	// Only the error value and its message: far below one row of the claimed image.
	if n := after.TotalAlloc - before.TotalAlloc; n > 16<<10 {
		t.Fatalf("%d bytes allocated for a refused header", n)
	}
}

func TestDecodeOptionsValidate(t *testing.T) {
	for _, o := range []DecodeOptions{{YellowFrom: "b"}, {MaxPixels: -1}} {
		if err := o.Validate(); err == nil {
			t.Fatalf("%+v: want error", o)
		}
		if _, err := DecodeChannel(gray64(t), "x.png", Red, o); err == nil || KindOf(err) != "" {
			t.Fatalf("%+v: want a plain option error, got %v", o, err)
		}
	}
	for _, y := range []string{"", "rg", "r", "g", "gray"} {
		if err := (DecodeOptions{YellowFrom: y}).Validate(); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := DecodeChannel(gray64(t), "x.png", Channel(4), DecodeOptions{}); err == nil {
		t.Fatal("invalid channel accepted")
	}
}

// colorImage is a 64x48 RGB test pattern with independent R, G and B.
func colorImage() *image.NRGBA {
	m := image.NewNRGBA(image.Rect(0, 0, 64, 48))
	for y := 0; y < 48; y++ {
		for x := 0; x < 64; x++ {
			m.SetNRGBA(x, y, color.NRGBA{uint8(x * 4), uint8(y * 5), uint8((x + y) * 2), 255})
		}
	}
	return m
}

// wantChannel computes the expected plane of an RGB image per the documented rules.
func wantChannel(m image.Image, ch Channel, yellow string) []uint8 {
	b := m.Bounds()
	out := make([]uint8, 0, b.Dx()*b.Dy())
	for y := b.Min.Y; y < b.Max.Y; y++ {
		for x := b.Min.X; x < b.Max.X; x++ {
			r16, g16, b16, _ := m.At(x, y).RGBA()
			r, g, bl := uint8(r16>>8), uint8(g16>>8), uint8(b16>>8)
			var v uint8
			switch {
			case ch == Red || ch == Yellow && yellow == "r":
				v = r
			case ch == Green || ch == Yellow && yellow == "g":
				v = g
			case ch == Blue:
				v = bl
			case yellow == "gray":
				v = color.GrayModel.Convert(color.RGBA{r, g, bl, 255}).(color.Gray).Y
			default:
				v = uint8((int(r) + int(g) + 1) / 2)
			}
			out = append(out, v)
		}
	}
	return out
}

func TestDecodeColorPNGChannels(t *testing.T) {
	m := colorImage()
	pal := image.NewPaletted(m.Bounds(), nil)
	var p color.Palette
	for i := 0; i < 256; i++ {
		p = append(p, color.RGBA{uint8(i), uint8(255 - i), uint8(i * 3), 255})
	}
	pal.Palette = p
	for i := range pal.Pix {
		pal.Pix[i] = uint8(i * 11)
	}
	rgba16 := image.NewRGBA64(m.Bounds())
	for y := 0; y < 48; y++ {
		for x := 0; x < 64; x++ {
			rgba16.Set(x, y, m.At(x, y))
		}
	}
	for name, img := range map[string]image.Image{"rgb": m, "palette": pal, "rgb16": rgba16} {
		data := encodePNG(t, img)
		for _, yellow := range []string{"", "rg", "r", "g", "gray"} {
			for ch := Red; ch <= Yellow; ch++ {
				got, err := DecodeChannel(data, name+".png", ch, DecodeOptions{YellowFrom: yellow})
				if err != nil {
					t.Fatal(err)
				}
				if !bytes.Equal(got.Pix, wantChannel(img, ch, yellow)) {
					t.Fatalf("%s %s yellow=%q: wrong plane", name, ch, yellow)
				}
			}
		}
	}
}

// TestDecodeGrayVariantsViaImagePNG: <8-bit gray and gray with tRNS go through image/png and
// are taken as gray whatever the channel.
func TestDecodeGrayVariantsViaImagePNG(t *testing.T) {
	raw := []byte{0, 0b10110000, 0, 0b01000000}
	data := makePNG(t, 4, 2, 1, 0, raw, 1)
	got, err := DecodeChannel(data, "g1.png", Yellow, DecodeOptions{})
	if err != nil {
		t.Fatal(err)
	}
	want := []uint8{255, 0, 255, 255, 0, 255, 0, 0}
	if !bytes.Equal(got.Pix, want) {
		t.Fatalf("1-bit gray: got %v want %v", got.Pix, want)
	}
	ga := image.NewNRGBA(image.Rect(0, 0, 3, 1)) // gray+alpha stays gray for every channel
	ga.Pix = []uint8{50, 50, 50, 255, 90, 90, 90, 255, 200, 200, 200, 255}
	for ch := Red; ch <= Yellow; ch++ {
		p, err := DecodeChannel(encodePNG(t, ga), "ga.png", ch, DecodeOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(p.Pix, []uint8{50, 90, 200}) {
			t.Fatalf("%s: %v", ch, p.Pix)
		}
	}
}

// adam7PNG encodes g as an interlaced (Adam7) 8-bit gray PNG, filter type None.
func adam7PNG(t testing.TB, g *image.Gray) []byte {
	passes := [7][4]int{{0, 0, 8, 8}, {4, 0, 8, 8}, {0, 4, 4, 8}, {2, 0, 4, 4}, {0, 2, 2, 4}, {1, 0, 2, 2}, {0, 1, 1, 2}}
	w, h := g.Rect.Dx(), g.Rect.Dy()
	var raw []byte
	for _, p := range passes {
		for y := p[1]; y < h; y += p[3] {
			if p[0] >= w {
				break
			}
			raw = append(raw, 0)
			for x := p[0]; x < w; x += p[2] {
				raw = append(raw, g.Pix[y*w+x])
			}
		}
	}
	var z bytes.Buffer
	zw := zlib.NewWriter(&z)
	zw.Write(raw)
	zw.Close()
	b := append([]byte(nil), sigPNG...)
	b = pngChunk(b, "IHDR", ihdr(uint32(w), uint32(h), 8, 0, 1))
	b = pngChunk(b, "IDAT", z.Bytes())
	return pngChunk(b, "IEND", nil)
}

// TestDecodeInterlacedPNG: interlaced gray goes through image/png and gives the original pixels.
func TestDecodeInterlacedPNG(t *testing.T) {
	for _, sz := range [][2]int{{64, 64}, {13, 7}, {1, 1}, {3, 9}} {
		g := image.NewGray(image.Rect(0, 0, sz[0], sz[1]))
		for i := range g.Pix {
			g.Pix[i] = uint8(i*29 + i/7)
		}
		data := adam7PNG(t, g)
		hdr, err := parsePNGHeader(data, "i.png", DecodeOptions{})
		if err != nil || hdr.fast() {
			t.Fatalf("interlaced PNG must not take the fast path (%v)", err)
		}
		got, err := DecodeChannel(data, "i.png", Blue, DecodeOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got.Pix, g.Pix) || got.W != sz[0] || got.H != sz[1] {
			t.Fatalf("%v: interlaced pixels differ", sz)
		}
	}
}
