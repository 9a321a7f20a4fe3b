package pipeline

/*
#include <stdlib.h>
#include <turbojpeg.h>
*/
import "C"

import (
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
		return Plane{}, inputErr(name, KindIO, "TurboJPEG: cannot create a decompressor")
	}
	defer C.tjDestroy(h)
	src := (*C.uchar)(unsafe.Pointer(&data[0]))
	var w, ht, subsamp, cs C.int
	if C.tjDecompressHeader3(h, src, C.ulong(len(data)), &w, &ht, &subsamp, &cs) != 0 {
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
