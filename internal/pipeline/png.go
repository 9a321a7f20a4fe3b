package pipeline

/*
#cgo CFLAGS: -O2
#cgo LDFLAGS: -ldeflate -ltiff -lturbojpeg
#include <libdeflate.h>
#include "png_unfilter.h"
*/
import "C"

import (
	"bytes"
	"compress/flate"
	"compress/zlib"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"image"
	"image/png"
	"io"
	"runtime"
	"unsafe"
)

// pngHeader is the IHDR of a PNG plus where its image data lies.
type pngHeader struct {
	w, h      int
	depth     int
	colorType int
	interlace int
	comp      int
	filter    int
	hasPLTE   bool
	hasTRNS   bool
	idat      [][]byte // IDAT payloads in file order (sub-slices of the file)
	idatLen   int
}

// fast reports whether the PNG is a kind decodeFastPNG handles: non-interlaced 8- or 16-bit
// grayscale without palette or transparency (the HPA format).
func (h *pngHeader) fast() bool {
	return h.colorType == 0 && (h.depth == 8 || h.depth == 16) && h.interlace == 0 &&
		h.comp == 0 && h.filter == 0 && !h.hasPLTE && !h.hasTRNS
}

// parsePNGHeader reads the IHDR (the first chunk) and checks the size limit.
func parsePNGHeader(data []byte, name string, opt DecodeOptions) (*pngHeader, error) {
	if len(data) < 8+8+13+4 {
		return nil, inputErr(name, KindTruncated, "PNG ends inside the IHDR chunk (%d bytes)", len(data))
	}
	p := data[8:]
	if binary.BigEndian.Uint32(p) != 13 || string(p[4:8]) != "IHDR" {
		return nil, inputErr(name, KindCorrupt, "PNG does not start with a 13-byte IHDR chunk (got %q)", p[4:8])
	}
	if crc32.ChecksumIEEE(p[4:8+13]) != binary.BigEndian.Uint32(p[8+13:]) {
		return nil, inputErr(name, KindCorrupt, "PNG chunk IHDR: CRC mismatch")
	}
	d := p[8 : 8+13]
	w := int64(binary.BigEndian.Uint32(d[0:]))
	h := int64(binary.BigEndian.Uint32(d[4:]))
	if w > 1<<31-1 || h > 1<<31-1 {
		return nil, inputErr(name, KindCorrupt, "PNG IHDR size %dx%d exceeds the PNG limit 2^31-1", w, h)
	}
	if err := opt.checkDims(name, w, h); err != nil {
		return nil, err
	}
	return &pngHeader{w: int(w), h: int(h), depth: int(d[8]), colorType: int(d[9]),
		comp: int(d[10]), filter: int(d[11]), interlace: int(d[12])}, nil
}

// walkPNGChunks verifies every chunk's length and CRC up to IEND (as image/png does) and
// collects the IDAT payloads.
func walkPNGChunks(data []byte, name string, hdr *pngHeader) error {
	pos := 8 + 8 + 13 + 4
	idatDone := false
	for {
		if len(data)-pos < 8 {
			return inputErr(name, KindTruncated, "PNG ends at byte %d before the IEND chunk", len(data))
		}
		n := binary.BigEndian.Uint32(data[pos:])
		typ := data[pos+4 : pos+8]
		if n > 0x7fffffff {
			return inputErr(name, KindCorrupt, "PNG chunk %q at byte %d has invalid length %d", typ, pos, n)
		}
		if int64(len(data)-pos-12) < int64(n) {
			return inputErr(name, KindTruncated, "PNG chunk %q at byte %d needs %d bytes, file has %d", typ, pos, n, len(data)-pos-12)
		}
		body := data[pos+8 : pos+8+int(n)]
		if crc32.ChecksumIEEE(data[pos+4:pos+8+int(n)]) != binary.BigEndian.Uint32(data[pos+8+int(n):]) {
			return inputErr(name, KindCorrupt, "PNG chunk %q at byte %d: CRC mismatch", typ, pos)
		}
		switch string(typ) {
		case "IDAT":
			if idatDone {
				return inputErr(name, KindCorrupt, "PNG IDAT chunks at byte %d are not consecutive", pos)
			}
			hdr.idat = append(hdr.idat, body)
			hdr.idatLen += len(body)
		case "IEND":
			if len(hdr.idat) == 0 {
				return inputErr(name, KindCorrupt, "PNG has no IDAT chunk")
			}
			return nil
		case "IHDR":
			return inputErr(name, KindCorrupt, "PNG has a second IHDR chunk at byte %d", pos)
		case "PLTE":
			hdr.hasPLTE = true
		case "tRNS":
			hdr.hasTRNS = true
		}
		if len(hdr.idat) > 0 && string(typ) != "IDAT" {
			idatDone = true
		}
		pos += 12 + int(n)
	}
}

func decodePNG(data []byte, name string, ch Channel, opt DecodeOptions) (Plane, error) {
	hdr, err := parsePNGHeader(data, name, opt)
	if err != nil {
		return Plane{}, err
	}
	if !hdr.fast() {
		return decodePNGStd(data, name, ch, opt)
	}
	if err := walkPNGChunks(data, name, hdr); err != nil {
		return Plane{}, err
	}
	return decodePNGFast(hdr, name)
}

// decompressors is a small free list of libdeflate decompressors (C memory, so not sync.Pool,
// which would drop and leak them). A decompressor is not safe for concurrent use.
var decompressors = make(chan *C.struct_libdeflate_decompressor, 4*runtime.GOMAXPROCS(0))

func getDecompressor() *C.struct_libdeflate_decompressor {
	select {
	case d := <-decompressors:
		return d
	default:
		return C.libdeflate_alloc_decompressor()
	}
}

func putDecompressor(d *C.struct_libdeflate_decompressor) {
	select {
	case decompressors <- d:
	default:
		C.libdeflate_free_decompressor(d)
	}
}

// decodePNGFast inflates the IDAT data with libdeflate straight into a buffer of exactly the
// expected filtered size, unfilters it in place in C and returns the compacted rows: one
// allocation for the pixels (plus one for the compressed data only when it is split over
// several IDAT chunks).
func decodePNGFast(hdr *pngHeader, name string) (Plane, error) {
	bpp := hdr.depth / 8
	rowbytes := hdr.w * bpp
	need := int64(hdr.h) * int64(1+rowbytes)
	z := hdr.idat[0]
	if len(hdr.idat) > 1 {
		z = make([]byte, 0, hdr.idatLen)
		for _, b := range hdr.idat {
			z = append(z, b...)
		}
	}
	if len(z) == 0 {
		return Plane{}, inputErr(name, KindTruncated, "PNG IDAT data is empty")
	}
	buf := make([]byte, need)
	d := getDecompressor()
	if d == nil {
		// Not the input's fault: a plain error, so callers can treat it as transient.
		return Plane{}, fmt.Errorf("pipeline: decoding %s: libdeflate cannot allocate a decompressor", name)
	}
	res := C.libdeflate_zlib_decompress(d, unsafe.Pointer(&z[0]), C.size_t(len(z)),
		unsafe.Pointer(&buf[0]), C.size_t(len(buf)), nil)
	putDecompressor(d)
	switch res {
	case C.LIBDEFLATE_SUCCESS:
	case C.LIBDEFLATE_SHORT_OUTPUT:
		return Plane{}, inputErr(name, KindTruncated, "PNG image data inflates to fewer than the %d bytes of %dx%d pixels", need, hdr.w, hdr.h)
	case C.LIBDEFLATE_INSUFFICIENT_SPACE:
		return Plane{}, inputErr(name, KindCorrupt, "PNG image data inflates to more than the %d bytes of %dx%d pixels", need, hdr.w, hdr.h)
	default:
		return Plane{}, inputErr(name, KindCorrupt, "PNG image data is not a valid zlib stream (bad header, data or Adler-32 checksum)")
	}
	r := C.hpa_png_unfilter((*C.uint8_t)(unsafe.Pointer(&buf[0])), C.size_t(len(buf)),
		C.size_t(hdr.h), C.size_t(rowbytes), C.int(bpp))
	if r >= 0 {
		return Plane{}, inputErr(name, KindCorrupt, "PNG row %d has an invalid filter type", int(r))
	} else if r != -1 {
		return Plane{}, inputErr(name, KindCorrupt, "PNG unfilter: internal size check failed")
	}
	n := hdr.w * hdr.h
	if hdr.depth == 16 {
		C.hpa_scale16((*C.uint8_t)(unsafe.Pointer(&buf[0])), C.size_t(len(buf)), C.size_t(n))
	}
	return Plane{W: hdr.w, H: hdr.h, Pix: buf[:n:n]}, nil
}

// decodePNGStd decodes every other PNG kind (palette, RGB(A), gray+alpha, interlaced, <8-bit,
// tRNS) with image/png after the header size check. A color image gives the channel's color
// plane (see DecodeOptions.YellowFrom); pixels with alpha are taken premultiplied, i.e.
// composited over black, the background of a fluorescence image.
func decodePNGStd(data []byte, name string, ch Channel, opt DecodeOptions) (Plane, error) {
	img, err := png.Decode(bytes.NewReader(data))
	if err != nil {
		return Plane{}, pngStdErr(name, err)
	}
	return planeFromImage(img, ch, opt.YellowFrom), nil
}

func pngStdErr(name string, err error) error {
	var fe png.FormatError
	var ue png.UnsupportedError
	var ce flate.CorruptInputError
	switch {
	case errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, io.EOF):
		return &InputError{File: name, Kind: KindTruncated, Reason: "PNG data ends early: " + err.Error(), Err: err}
	case errors.As(err, &ue):
		return &InputError{File: name, Kind: KindUnsupported, Reason: err.Error(), Err: err}
	case errors.As(err, &fe), errors.As(err, &ce), errors.Is(err, zlib.ErrChecksum), errors.Is(err, zlib.ErrHeader):
		return &InputError{File: name, Kind: KindCorrupt, Reason: err.Error(), Err: err}
	}
	return &InputError{File: name, Kind: KindCorrupt, Reason: err.Error(), Err: err}
}

// planeFromImage converts a decoded image/* image to one channel plane.
func planeFromImage(img image.Image, ch Channel, yellowFrom string) Plane {
	b := img.Bounds()
	w, h := b.Dx(), b.Dy()
	switch m := img.(type) {
	case *image.Gray:
		out := make([]uint8, w*h)
		for y := 0; y < h; y++ {
			copy(out[y*w:(y+1)*w], m.Pix[y*m.Stride:y*m.Stride+w])
		}
		return Plane{W: w, H: h, Pix: out}
	case *image.Gray16:
		out := make([]uint8, w*h)
		for y := 0; y < h; y++ {
			row := m.Pix[y*m.Stride:]
			for x := 0; x < w; x++ {
				out[y*w+x] = scale16(uint16(row[2*x])<<8 | uint16(row[2*x+1]))
			}
		}
		return Plane{W: w, H: h, Pix: out}
	}
	rgb := make([]uint8, 3*w*h)
	i := 0
	for y := b.Min.Y; y < b.Max.Y; y++ {
		for x := b.Min.X; x < b.Max.X; x++ {
			r, g, bl, _ := img.At(x, y).RGBA()
			rgb[i], rgb[i+1], rgb[i+2] = scale16(uint16(r)), scale16(uint16(g)), scale16(uint16(bl))
			i += 3
		}
	}
	return pickChannel(rgb, w, h, ch, yellowFrom)
}

// paethSelfTest returns how many of the 2^24 (a, b, c) inputs the fast 1-byte Paeth predictor of
// the C unfilter gets wrong (it must be 0); for tests.
func paethSelfTest() int { return int(C.hpa_paeth_selftest()) }
