// Package labels holds what a labeling run writes and reads besides images: the 28 HPA classes,
// label and error records (hpa.label/v1, hpa.error/v1), the train.csv label file, the Kaggle
// submission CSV, thresholds, and sinks that store the per-sample records (a directory, an S3
// prefix). It imports neither NATS nor ONNX Runtime.
package labels

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
