package pipeline

/*
#include <stdlib.h>
#include "tiff_mem.h"
*/
import "C"

import (
	"unsafe"
)

const tiffErrLen = 512

// decodeTIFF decodes the first image of a TIFF with libtiff, reading from memory. Supported:
// 8- or 16-bit unsigned samples, grayscale (MinIsBlack, MinIsWhite is inverted) or RGB (extra
// samples such as alpha are ignored), strips or tiles, contiguous or separate planes, and every
// compression this libtiff build has (none, LZW, deflate, PackBits, ...).
func decodeTIFF(data []byte, name string, ch Channel, opt DecodeOptions) (Plane, error) {
	var info C.hpa_tiff_info_t
	var errbuf [tiffErrLen]C.char
	var short C.int
	dp := (*C.uint8_t)(unsafe.Pointer(&data[0]))
	if C.hpa_tiff_info(dp, C.size_t(len(data)), &info, &errbuf[0], tiffErrLen, &short) != 0 {
		return Plane{}, tiffErr(name, errbuf[:], short != 0)
	}
	w, h := int64(info.width), int64(info.height)
	if err := opt.checkDims(name, w, h); err != nil {
		return Plane{}, err
	}
	bps, spp, photo := int(info.bps), int(info.spp), int(info.photometric)
	if info.sampleformat != 1 {
		return Plane{}, inputErr(name, KindUnsupported, "TIFF sample format %d (only unsigned integer samples are supported)", int(info.sampleformat))
	}
	if bps != 8 && bps != 16 {
		return Plane{}, inputErr(name, KindUnsupported, "TIFF with %d bits per sample (only 8 and 16 are supported)", bps)
	}
	if info.has_photometric == 0 {
		photo = 1 // MinIsBlack
		if spp >= 3 {
			photo = 2 // RGB
		}
	}
	nout := 1
	switch photo {
	case 0, 1: // MinIsWhite, MinIsBlack
	case 2:
		if spp < 3 {
			return Plane{}, inputErr(name, KindCorrupt, "TIFF says RGB but has %d samples per pixel", spp)
		}
		nout = 3
	default:
		return Plane{}, inputErr(name, KindUnsupported, "TIFF photometric interpretation %d (only gray and RGB are supported)", photo)
	}
	out := make([]uint8, int(w*h)*nout)
	// Bound libtiff's own buffers (a strip or a tile): at most the whole image at 4 samples x 16 bit.
	maxAlloc := C.int64_t(opt.maxPixels()*8 + 1<<20)
	if C.hpa_tiff_read(dp, C.size_t(len(data)), (*C.uint8_t)(unsafe.Pointer(&out[0])), C.size_t(len(out)),
		C.int(nout), maxAlloc, &errbuf[0], tiffErrLen, &short) != 0 {
		return Plane{}, tiffErr(name, errbuf[:], short != 0)
	}
	if nout == 1 {
		return Plane{W: int(w), H: int(h), Pix: out}, nil
	}
	return pickChannel(out, int(w), int(h), ch, opt.YellowFrom), nil
}

func tiffErr(name string, errbuf []C.char, short bool) error {
	msg := C.GoString(&errbuf[0])
	if short {
		return inputErr(name, KindTruncated, "TIFF data ends early (libtiff: %s)", msg)
	}
	return inputErr(name, KindCorrupt, "TIFF: %s", msg)
}
