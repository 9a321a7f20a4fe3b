// Package pipeline is the image side of hpa: decoding channel images, assembling 4-channel samples,
// preprocessing, test-time augmentation views, thresholds and the label JSON/CSV formats.
// It imports neither NATS nor ONNX Runtime.
package pipeline

// NumClasses is the number of HPA subcellular compartments.
const NumClasses = 28

// ClassNames are the HPA Kaggle 2018 class names, indexed by class id.
var ClassNames = [NumClasses]string{
	"Nucleoplasm", "Nuclear membrane", "Nucleoli", "Nucleoli fibrillar center",
	"Nuclear speckles", "Nuclear bodies", "Endoplasmic reticulum", "Golgi apparatus",
	"Peroxisomes", "Endosomes", "Lysosomes", "Intermediate filaments",
	"Actin filaments", "Focal adhesion sites", "Microtubules", "Microtubule ends",
	"Cytokinetic bridge", "Mitotic spindle", "Microtubule organizing center", "Centrosome",
	"Lipid droplets", "Plasma membrane", "Cell junctions", "Mitochondria",
	"Aggresome", "Cytosol", "Cytoplasmic bodies", "Rods & rings",
}

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
