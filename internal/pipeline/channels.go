// Package pipeline is the image side of hpa: channels, decoding channel images (PNG, TIFF, JPEG),
// assembling 4-channel samples, resizing, normalization and test-time augmentation views. Label
// records, label files and thresholds are in internal/labels. It imports neither NATS nor ONNX
// Runtime.
package pipeline

// Channel is one of the four stains of a sample.
type Channel int

const (
	Red    Channel = iota // microtubules
	Green                 // the protein of interest
	Blue                  // nucleus
	Yellow                // endoplasmic reticulum
)

// ChannelNames are the file-name suffixes, indexed by Channel.
var ChannelNames = [4]string{"red", "green", "blue", "yellow"}

func (c Channel) String() string {
	if c < 0 || int(c) >= len(ChannelNames) {
		return "invalid"
	}
	return ChannelNames[c]
}
