package model

// RuntimeOptions configure the runtime that executes a model set (ONNX Runtime, internal/model/ort,
// config section ort.*). The zero value uses the default library, the CPU provider and the
// runtime's default thread counts. It lives here, not in ort, so that configuration can be handed
// to the runtime without importing it.
type RuntimeOptions struct {
	// Library is the path of libonnxruntime.so (config ort.library, env HPA_ORT_LIBRARY). A relative
	// path is looked up in the working directory and then in the enclosing module root (the nearest
	// parent directory holding go.mod). Empty means ort.DefaultLibrary.
	Library string
	// Provider is "cpu" (default), "cuda" or "tensorrt" (config ort.provider).
	Provider string
	// DeviceID is the GPU ordinal for cuda / tensorrt (config ort.device_id).
	DeviceID int
	// IntraThreads and InterThreads set the runtime's thread pools; 0 keeps its defaults
	// (config ort.intra_threads, ort.inter_threads).
	IntraThreads, InterThreads int
	// MaxBatch is the most samples per run; a run holds MaxBatch x tta_views images (default
	// ort.DefaultMaxBatch).
	MaxBatch int
}
