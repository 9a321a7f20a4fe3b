package pipeline

/*
#include <stdlib.h>
#include <turbojpeg.h>
*/
import "C"

import (
	"fmt"
	"strings"
	"unsafe"
)

// decodeJPEG decodes a baseline or progressive 8-bit JPEG with libjpeg-turbo's TurboJPEG API. A
// grayscale JPEG is returned as is; a color JPEG gives the channel's color plane (see
// DecodeOptions.YellowFrom). Any libjpeg warning (e.g. corrupt entropy data, which libjpeg would
// paper over with gray) is an error: a silently damaged image must not be labelled.
func decodeJPEG(data []byte, name string, ch Channel, opt DecodeOptions) (Plane, error) {
	h := C.tjInitDecompress()
	if h == nil {
		// Not the input's fault: a plain error, so callers can treat it as transient.
		return Plane{}, fmt.Errorf("pipeline: decoding %s: TurboJPEG cannot create a decompressor", name)
	}
	defer C.tjDestroy(h)
	src := (*C.uchar)(unsafe.Pointer(&data[0]))
	var w, ht, subsamp, cs C.int
	if C.tjDecompressHeader3(h, src, C.ulong(len(data)), &w, &ht, &subsamp, &cs) != 0 {
		if jpegHeaderCut(data) {
			return Plane{}, inputErr(name, KindTruncated, "JPEG ends inside its header (%d bytes)", len(data))
		}
		return Plane{}, jpegErr(name, h, "header")
	}
	if err := opt.checkDims(name, int64(w), int64(ht)); err != nil {
		return Plane{}, err
	}
	var pf C.int
	nout := 1
	switch cs {
	case C.TJCS_GRAY:
		pf = C.TJPF_GRAY
	case C.TJCS_RGB, C.TJCS_YCbCr:
		pf = C.TJPF_RGB
		nout = 3
	default:
		return Plane{}, inputErr(name, KindUnsupported, "JPEG color space %d (CMYK/YCCK) is not supported", int(cs))
	}
	out := make([]uint8, int(w)*int(ht)*nout)
	if C.tjDecompress2(h, src, C.ulong(len(data)), (*C.uchar)(unsafe.Pointer(&out[0])), w, 0, ht, pf,
		C.TJFLAG_STOPONWARNING|C.TJFLAG_LIMITSCANS) != 0 {
		return Plane{}, jpegErr(name, h, "data")
	}
	if nout == 1 {
		return Plane{W: int(w), H: int(ht), Pix: out}, nil
	}
	return pickChannel(out, int(w), int(ht), ch, opt.YellowFrom), nil
}

func jpegErr(name string, h C.tjhandle, stage string) error {
	msg := C.GoString(C.tjGetErrorStr2(h))
	if strings.Contains(msg, "Premature end") {
		return inputErr(name, KindTruncated, "JPEG %s: %s", stage, msg)
	}
	if strings.Contains(msg, "Unsupported") || strings.Contains(msg, "Bogus") && strings.Contains(msg, "precision") {
		return inputErr(name, KindUnsupported, "JPEG %s: %s", stage, msg)
	}
	return inputErr(name, KindCorrupt, "JPEG %s: %s", stage, msg)
}

// jpegHeaderCut walks the marker segments from SOI up to SOS and reports whether the data ends
// before the scan starts (a segment running past the end, or no SOS at all), which tells a
// truncated file from a corrupt one when libjpeg fails on the header.
func jpegHeaderCut(data []byte) bool {
	pos := 2
	for {
		for pos < len(data) && data[pos] == 0xFF && pos+1 < len(data) && data[pos+1] == 0xFF {
			pos++ // fill bytes
		}
		if pos+2 > len(data) {
			return true
		}
		if data[pos] != 0xFF {
			return false // not a marker: corrupt, not cut
		}
		m := data[pos+1]
		if m == 0x01 || m >= 0xD0 && m <= 0xD8 {
			pos += 2
			continue
		}
		if m == 0xD9 {
			return false
		}
		if pos+4 > len(data) {
			return true
		}
		n := int(data[pos+2])<<8 | int(data[pos+3])
		if pos+2+n > len(data) {
			return true
		}
		if m == 0xDA {
			return false
		}
		pos += 2 + n
	}
}
