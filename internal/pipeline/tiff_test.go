package pipeline

import (
	"bytes"
	"encoding/binary"
	"image"
	"image/color"
	"testing"

	xtiff "golang.org/x/image/tiff"
)

// tiffSpec describes a TIFF for writeTIFF, a small test encoder covering what x/image/tiff's
// encoder cannot write: LZW, tiles, separate planes, MinIsWhite.
type tiffSpec struct {
	w, h, bps, spp int
	photometric    int // 0 MinIsWhite, 1 MinIsBlack, 2 RGB
	separate       bool
	tile           int // tile side (multiple of 16); 0 = strips
	rowsPerStrip   int
	lzw            bool
	bigEndian      bool
}

// lzwLiteral encodes b as a valid TIFF LZW stream using only literal 9-bit codes, with a Clear
// code every 200 literals so the code width never grows.
func lzwLiteral(b []byte) []byte {
	var out []byte
	var acc uint32
	var nbits uint
	put := func(code uint32) {
		acc = acc<<9 | code
		nbits += 9
		for nbits >= 8 {
			out = append(out, byte(acc>>(nbits-8)))
			nbits -= 8
		}
	}
	for i, c := range b {
		if i%200 == 0 {
			put(256)
		}
		put(uint32(c))
	}
	if len(b) == 0 {
		put(256)
	}
	put(257)
	if nbits > 0 {
		out = append(out, byte(acc<<(8-nbits)))
	}
	return out
}

// writeTIFF encodes samples (interleaved, spp per pixel, values < 1<<bps) as a TIFF.
func writeTIFF(s tiffSpec, samples []uint16) []byte {
	var bo interface {
		binary.ByteOrder
		binary.AppendByteOrder
	} = binary.LittleEndian
	hdr := []byte("II*\x00\x00\x00\x00\x00")
	if s.bigEndian {
		bo = binary.BigEndian
		hdr = []byte("MM\x00*\x00\x00\x00\x00")
	}
	bytesPer := s.bps / 8
	putSample := func(dst []byte, v uint16) []byte {
		if bytesPer == 1 {
			return append(dst, byte(v))
		}
		return bo.AppendUint16(dst, v)
	}
	planes := 1
	per := s.spp
	if s.separate {
		planes, per = s.spp, 1
	}
	// Build the chunks (strips or tiles), plane-major.
	var chunks [][]byte
	for pl := 0; pl < planes; pl++ {
		emit := func(x0, y0, cw, ch int) {
			var c []byte
			for y := y0; y < y0+ch; y++ {
				for x := x0; x < x0+cw; x++ {
					for k := 0; k < per; k++ {
						sidx := pl + k
						var v uint16
						if x < s.w && y < s.h {
							v = samples[(y*s.w+x)*s.spp+sidx]
						}
						c = putSample(c, v)
					}
				}
			}
			if s.lzw {
				c = lzwLiteral(c)
			}
			chunks = append(chunks, c)
		}
		if s.tile > 0 {
			for ty := 0; ty < s.h; ty += s.tile {
				for tx := 0; tx < s.w; tx += s.tile {
					emit(tx, ty, s.tile, s.tile)
				}
			}
		} else {
			for y := 0; y < s.h; y += s.rowsPerStrip {
				emit(0, y, s.w, min(s.rowsPerStrip, s.h-y))
			}
		}
	}
	buf := append([]byte(nil), hdr...)
	offsets := make([]uint32, len(chunks))
	counts := make([]uint32, len(chunks))
	for i, c := range chunks {
		offsets[i] = uint32(len(buf))
		counts[i] = uint32(len(c))
		buf = append(buf, c...)
		if len(buf)%2 == 1 {
			buf = append(buf, 0)
		}
	}
	type entry struct {
		tag, typ uint16
		vals     []uint32
	}
	short := func(tag uint16, v ...uint32) entry { return entry{tag, 3, v} }
	long := func(tag uint16, v ...uint32) entry { return entry{tag, 4, v} }
	bpsv := make([]uint32, s.spp)
	for i := range bpsv {
		bpsv[i] = uint32(s.bps)
	}
	comp := uint32(1)
	if s.lzw {
		comp = 5
	}
	planar := uint32(1)
	if s.separate {
		planar = 2
	}
	es := []entry{long(256, uint32(s.w)), long(257, uint32(s.h)), short(258, bpsv...), short(259, comp),
		short(262, uint32(s.photometric))}
	if s.tile == 0 {
		es = append(es, long(273, offsets...))
	}
	es = append(es, short(277, uint32(s.spp)))
	if s.tile == 0 {
		es = append(es, long(278, uint32(s.rowsPerStrip)), long(279, counts...))
	}
	es = append(es, short(284, planar))
	if s.tile > 0 {
		es = append(es, long(322, uint32(s.tile)), long(323, uint32(s.tile)), long(324, offsets...), long(325, counts...))
	}
	if s.photometric == 3 { // palette: a gray ramp colormap
		cm := make([]uint32, 3*(1<<s.bps))
		for i := range cm {
			cm[i] = uint32(i%(1<<s.bps)) * 257
		}
		es = append(es, short(320, cm...))
	}
	if extra := s.spp - map[bool]int{true: 3, false: 1}[s.photometric == 2]; extra > 0 {
		v := make([]uint32, extra) // unspecified extra samples
		es = append(es, short(338, v...))
	}
	ifd := uint32(len(buf))
	bo.PutUint32(buf[4:], ifd)
	ext := ifd + 2 + uint32(len(es))*12 + 4
	var extData []byte
	buf = bo.AppendUint16(buf, uint16(len(es)))
	for _, e := range es {
		buf = bo.AppendUint16(buf, e.tag)
		buf = bo.AppendUint16(buf, e.typ)
		buf = bo.AppendUint32(buf, uint32(len(e.vals)))
		var val []byte
		for _, v := range e.vals {
			if e.typ == 3 {
				val = bo.AppendUint16(val, uint16(v))
			} else {
				val = bo.AppendUint32(val, v)
			}
		}
		if len(val) <= 4 {
			buf = append(buf, append(val, make([]byte, 4-len(val))...)...)
		} else {
			buf = bo.AppendUint32(buf, ext+uint32(len(extData)))
			extData = append(extData, val...)
		}
	}
	buf = bo.AppendUint32(buf, 0)
	return append(buf, extData...)
}

func testSamples(w, h, spp, bps int) []uint16 {
	s := make([]uint16, w*h*spp)
	max := 1<<bps - 1
	for i := range s {
		s[i] = uint16((i*7919 + i/spp*31 + (i%spp)*5003) % (max + 1))
	}
	return s
}

func to8(v uint16, bps int) uint8 {
	if bps == 8 {
		return uint8(v)
	}
	return scale16(v)
}

func TestDecodeTIFFVariants(t *testing.T) {
	w, h := 70, 45
	for _, bps := range []int{8, 16} {
		for _, spec := range []tiffSpec{
			{spp: 1, photometric: 1, rowsPerStrip: 7},
			{spp: 1, photometric: 1, rowsPerStrip: 45, lzw: true},
			{spp: 1, photometric: 1, rowsPerStrip: 4, bigEndian: true},
			{spp: 1, photometric: 1, tile: 32, lzw: true},
			{spp: 1, photometric: 0, rowsPerStrip: 10},
			{spp: 2, photometric: 1, rowsPerStrip: 10}, // gray + alpha
			{spp: 3, photometric: 2, rowsPerStrip: 9},
			{spp: 4, photometric: 2, rowsPerStrip: 9, lzw: true},
			{spp: 3, photometric: 2, rowsPerStrip: 9, separate: true},
			{spp: 3, photometric: 2, tile: 16, separate: true, lzw: true},
			{spp: 3, photometric: 2, tile: 48, bigEndian: true},
		} {
			spec.w, spec.h, spec.bps = w, h, bps
			samples := testSamples(w, h, spec.spp, bps)
			data := writeTIFF(spec, samples)
			for ch := Red; ch <= Yellow; ch++ {
				got, err := DecodeChannel(data, "x.tif", ch, DecodeOptions{})
				if err != nil {
					t.Fatalf("%+v %s: %v", spec, ch, err)
				}
				if got.W != w || got.H != h || len(got.Pix) != w*h {
					t.Fatalf("%+v: size %dx%d", spec, got.W, got.H)
				}
				for i := 0; i < w*h; i++ {
					px := samples[i*spec.spp:]
					var want uint8
					if spec.photometric == 2 {
						r, g, b := to8(px[0], bps), to8(px[1], bps), to8(px[2], bps)
						want = [4]uint8{r, g, b, uint8((int(r) + int(g) + 1) / 2)}[ch]
					} else {
						want = to8(px[0], bps)
						if spec.photometric == 0 {
							want = 255 - want
						}
					}
					if got.Pix[i] != want {
						t.Fatalf("%+v %s pixel %d: got %d want %d", spec, ch, i, got.Pix[i], want)
					}
				}
			}
		}
	}
}

// TestDecodeTIFFXImage decodes TIFFs written by golang.org/x/image/tiff (deflate and none, 8 and
// 16 bit gray, RGBA) and compares with that package's own decoder.
func TestDecodeTIFFXImage(t *testing.T) {
	g8 := image.NewGray(image.Rect(0, 0, 96, 64))
	g16 := image.NewGray16(image.Rect(0, 0, 96, 64))
	for i := range g8.Pix {
		g8.Pix[i] = uint8(i*13 + i/96)
		g16.SetGray16(i%96, i/96, color.Gray16{Y: uint16(i * 977)})
	}
	for _, comp := range []xtiff.CompressionType{xtiff.Uncompressed, xtiff.Deflate} {
		for name, img := range map[string]image.Image{"gray8": g8, "gray16": g16, "rgba": colorImage()} {
			var b bytes.Buffer
			if err := xtiff.Encode(&b, img, &xtiff.Options{Compression: comp}); err != nil {
				t.Fatal(err)
			}
			ref, err := xtiff.Decode(bytes.NewReader(b.Bytes()))
			if err != nil {
				t.Fatal(err)
			}
			for ch := Red; ch <= Yellow; ch++ {
				got, err := DecodeChannel(b.Bytes(), name+".tif", ch, DecodeOptions{})
				if err != nil {
					t.Fatalf("%s %v: %v", name, comp, err)
				}
				want := planeFromImage(ref, ch, "rg")
				if !bytes.Equal(got.Pix, want.Pix) {
					t.Fatalf("%s comp %v %s: pixels differ", name, comp, ch)
				}
			}
		}
	}
}

func TestDecodeTIFFBadInput(t *testing.T) {
	spec := tiffSpec{w: 64, h: 64, bps: 8, spp: 1, photometric: 1, rowsPerStrip: 64, lzw: true}
	good := writeTIFF(spec, testSamples(64, 64, 1, 8))
	// LZW data sits right after the 8-byte header: garble it.
	garbled := append([]byte(nil), good...)
	for i := 8; i < 200; i++ {
		garbled[i] = 0xff
	}
	big := writeTIFF(tiffSpec{w: 64, h: 64, bps: 8, spp: 1, photometric: 1, rowsPerStrip: 64}, testSamples(64, 64, 1, 8))
	bomb := writeTIFF(tiffSpec{w: 1, h: 1, bps: 8, spp: 1, photometric: 1, rowsPerStrip: 1}, []uint16{0})
	bombPatched := patchTIFFSize(bomb, 100000, 100000)
	pal := writeTIFF(tiffSpec{w: 4, h: 4, bps: 8, spp: 1, photometric: 3, rowsPerStrip: 4}, testSamples(4, 4, 1, 8))
	bits4 := writeTIFF(tiffSpec{w: 4, h: 4, bps: 8, spp: 1, photometric: 1, rowsPerStrip: 4}, testSamples(4, 4, 1, 8))
	bits4 = patchTIFFShort(bits4, 258, 4)
	cases := []struct {
		name string
		data []byte
		kind ErrKind
	}{
		{"header only", good[:6], KindTruncated},
		{"no ifd", good[:8], KindTruncated},
		{"garbled lzw", garbled, KindCorrupt},
		{"bomb", bombPatched, KindTooLarge},
		{"palette", pal, KindUnsupported},
		{"4 bit", bits4, KindUnsupported},
		{"strip cut", truncateTIFFData(big), KindTruncated},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := DecodeChannel(c.data, c.name+".tif", Red, DecodeOptions{})
			wantKind(t, err, c.kind, c.name+".tif")
		})
	}
}

// tiffEntries returns the offsets of the IFD entries of a little-endian test TIFF.
func tiffEntries(d []byte) (pos []int) {
	ifd := int(binary.LittleEndian.Uint32(d[4:]))
	n := int(binary.LittleEndian.Uint16(d[ifd:]))
	for i := 0; i < n; i++ {
		pos = append(pos, ifd+2+12*i)
	}
	return pos
}

func patchTIFFShort(d []byte, tag uint16, v uint16) []byte {
	d = append([]byte(nil), d...)
	for _, p := range tiffEntries(d) {
		if binary.LittleEndian.Uint16(d[p:]) == tag {
			binary.LittleEndian.PutUint16(d[p+8:], v)
		}
	}
	return d
}

func patchTIFFSize(d []byte, w, h uint32) []byte {
	d = append([]byte(nil), d...)
	for _, p := range tiffEntries(d) {
		switch binary.LittleEndian.Uint16(d[p:]) {
		case 256:
			binary.LittleEndian.PutUint32(d[p+8:], w)
		case 257:
			binary.LittleEndian.PutUint32(d[p+8:], h)
		case 278:
			binary.LittleEndian.PutUint32(d[p+8:], h)
		}
	}
	return d
}

// truncateTIFFData makes a copy whose strip byte count points past the end of the file, as a
// file cut inside its image data (with the directory written first) looks to a reader.
func truncateTIFFData(d []byte) []byte {
	d = append([]byte(nil), d...)
	for _, p := range tiffEntries(d) {
		if binary.LittleEndian.Uint16(d[p:]) == 273 { // StripOffsets: move the strip near the end
			binary.LittleEndian.PutUint32(d[p+8:], uint32(len(d)-100))
		}
	}
	return d
}
