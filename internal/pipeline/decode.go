package pipeline

import (
	"bytes"
	"fmt"
)

// Plane is one 8-bit channel image, row-major, len(Pix) == W*H.
type Plane struct {
	W, H int
	Pix  []uint8
}

// Image4 is a decoded 4-channel sample; Planes is indexed by Channel (Red, Green, Blue, Yellow).
// All four planes have the same size W x H.
type Image4 struct {
	ID     string
	W, H   int
	Planes [4]Plane
}

// DefaultMaxPixels is the MaxPixels used when DecodeOptions.MaxPixels is 0: 50 megapixels, well
// above the 3072x3072 HPA originals (9.4 MP) and far below what a decompression bomb claims.
const DefaultMaxPixels = 50_000_000

// DecodeOptions control DecodeChannel and LoadSample. The zero value is ready to use.
type DecodeOptions struct {
	// MaxPixels refuses images whose header says W*H > MaxPixels, before any pixel buffer is
	// allocated (0 = DefaultMaxPixels).
	MaxPixels int64
	// YellowFrom says how a COLOR image (RGB PNG/JPEG/TIFF, as in the HPAv18 external data) gives
	// the yellow channel: "rg" (default) = (R+G+1)/2, "r", "g", or "gray" (ITU-R 601 luma, as
	// image/color.GrayModel). The default is "rg" because the HPA yellow stain (endoplasmic
	// reticulum) is rendered as yellow = red + green light, so its intensity is carried equally by
	// the R and G planes of a color export. Red, green and blue channels always take the R, G and B
	// planes. Grayscale images are taken as they are for every channel.
	YellowFrom string
}

// Validate reports whether the options are usable.
func (o DecodeOptions) Validate() error {
	if o.MaxPixels < 0 {
		return fmt.Errorf("pipeline: DecodeOptions.MaxPixels %d is negative (0 = default %d)", o.MaxPixels, int64(DefaultMaxPixels))
	}
	switch o.YellowFrom {
	case "", "rg", "r", "g", "gray":
	default:
		return fmt.Errorf("pipeline: DecodeOptions.YellowFrom %q: want rg, r, g or gray", o.YellowFrom)
	}
	return nil
}

func (o DecodeOptions) maxPixels() int64 {
	if o.MaxPixels <= 0 {
		return DefaultMaxPixels
	}
	return o.MaxPixels
}

// checkDims refuses non-positive or too large header dimensions before anything is allocated.
func (o DecodeOptions) checkDims(name string, w, h int64) error {
	if w <= 0 || h <= 0 {
		return inputErr(name, KindCorrupt, "image header has non-positive size %dx%d", w, h)
	}
	// w and h come from 32-bit header fields, so w*h cannot overflow int64.
	if w > 1<<31-1 || h > 1<<31-1 || w*h > o.maxPixels() {
		return inputErr(name, KindTooLarge, "image header claims %dx%d = %d pixels, limit is %d", w, h, w*h, o.maxPixels())
	}
	return nil
}

var (
	sigPNG     = []byte("\x89PNG\r\n\x1a\n")
	sigTIFFLE  = []byte("II*\x00")
	sigTIFFBE  = []byte("MM\x00*")
	sigBigTIFF = [][]byte{[]byte("II+\x00"), []byte("MM\x00+")}
	sigJPEG    = []byte{0xFF, 0xD8, 0xFF}
)

// DecodeChannel decodes one channel file (PNG, TIFF or JPEG, recognised by content, not by name)
// into an 8-bit plane. name is only used in errors. ch selects the plane of a color image (see
// DecodeOptions.YellowFrom); grayscale images are returned as they are. 16-bit images are scaled
// to 8 bits by rounding: v8 = (v16*255 + 32767) / 65535, so 0 -> 0, 65535 -> 255 and every
// 8-bit value stored as v*257 comes back exactly. Bad input returns an *InputError (kinds empty,
// corrupt, truncated, unsupported, too_large); invalid options and decoder resource failures
// (not the file's fault) return plain errors. Safe for concurrent use.
//
// Decoders: 8/16-bit grayscale non-interlaced PNG (the HPA format) takes a fast path (chunk CRCs
// checked in Go, the IDAT zlib stream inflated by libdeflate into a buffer of exactly
// H*(1+rowbytes) bytes, filters undone in place in C; pixels identical to image/png); every
// other PNG goes through image/png. TIFF goes through libtiff, JPEG through TurboJPEG.
func DecodeChannel(data []byte, name string, ch Channel, opt DecodeOptions) (Plane, error) {
	if err := opt.Validate(); err != nil {
		return Plane{}, err
	}
	if ch < Red || ch > Yellow {
		return Plane{}, fmt.Errorf("pipeline: DecodeChannel %s: invalid channel %d", name, int(ch))
	}
	if len(data) == 0 {
		return Plane{}, inputErr(name, KindEmpty, "file is empty (0 bytes)")
	}
	switch {
	case bytes.HasPrefix(data, sigPNG):
		return decodePNG(data, name, ch, opt)
	case bytes.HasPrefix(data, sigTIFFLE), bytes.HasPrefix(data, sigTIFFBE),
		bytes.HasPrefix(data, sigBigTIFF[0]), bytes.HasPrefix(data, sigBigTIFF[1]):
		return decodeTIFF(data, name, ch, opt)
	case bytes.HasPrefix(data, sigJPEG):
		return decodeJPEG(data, name, ch, opt)
	}
	for _, sig := range [][]byte{sigPNG, sigTIFFLE, sigTIFFBE, sigJPEG} {
		if len(data) < len(sig) && bytes.HasPrefix(sig, data) {
			return Plane{}, inputErr(name, KindTruncated, "file ends after %d bytes, inside the image signature", len(data))
		}
	}
	if nearPNGSignature(data) {
		return Plane{}, inputErr(name, KindCorrupt, "bad PNG signature %q (damaged, or altered by a text-mode transfer)", data[:8])
	}
	return Plane{}, inputErr(name, KindUnsupported, "not a PNG, TIFF or JPEG file (%s)", sniffKind(data))
}

// nearPNGSignature reports whether data starts with a damaged PNG signature: at least 4 of its
// 8 bytes in place (e.g. "\x89PNG\n\x1a\n" after a CRLF->LF conversion, or one flipped byte).
func nearPNGSignature(data []byte) bool {
	if len(data) < 8 {
		return false
	}
	n := 0
	for i, c := range sigPNG {
		if data[i] == c {
			n++
		}
	}
	return n >= 4
}

// sniffKind names the content of a file that is not a supported image, for error messages.
func sniffKind(data []byte) string {
	switch {
	case bytes.HasPrefix(data, []byte("GIF87a")), bytes.HasPrefix(data, []byte("GIF89a")):
		return "GIF image"
	case bytes.HasPrefix(data, []byte("BM")):
		return "looks like BMP"
	case bytes.HasPrefix(data, []byte("RIFF")) && len(data) >= 12 && string(data[8:12]) == "WEBP":
		return "WebP image"
	}
	n := min(len(data), 8)
	return fmt.Sprintf("starts with %q", data[:n])
}

// pickChannel returns channel ch of an interleaved 8-bit RGB buffer (len 3*w*h) as in the
// HPAv18 color exports: red->R, green->G, blue->B, yellow->YellowFrom.
func pickChannel(rgb []uint8, w, h int, ch Channel, yellowFrom string) Plane {
	out := make([]uint8, w*h)
	n := w * h
	switch {
	case ch == Red, ch == Yellow && yellowFrom == "r":
		for i := 0; i < n; i++ {
			out[i] = rgb[3*i]
		}
	case ch == Green, ch == Yellow && yellowFrom == "g":
		for i := 0; i < n; i++ {
			out[i] = rgb[3*i+1]
		}
	case ch == Blue:
		for i := 0; i < n; i++ {
			out[i] = rgb[3*i+2]
		}
	case yellowFrom == "gray":
		for i := 0; i < n; i++ {
			out[i] = luma(rgb[3*i], rgb[3*i+1], rgb[3*i+2])
		}
	default: // yellow, "rg"
		for i := 0; i < n; i++ {
			out[i] = uint8((uint16(rgb[3*i]) + uint16(rgb[3*i+1]) + 1) >> 1)
		}
	}
	return Plane{W: w, H: h, Pix: out}
}

// luma is image/color.GrayModel on 8-bit values (ITU-R 601 weights).
func luma(r, g, b uint8) uint8 {
	// 19595+38470+7471 = 65536; values scaled by 257 as color.GrayModel does on 16-bit input.
	y := (19595*uint32(r)*257 + 38470*uint32(g)*257 + 7471*uint32(b)*257 + 1<<15) >> 24
	return uint8(y)
}

// scale16 maps a 16-bit sample to 8 bits by rounding (v*255 + 32767) / 65535.
func scale16(v uint16) uint8 {
	return uint8((uint32(v)*255 + 32767) / 65535)
}
