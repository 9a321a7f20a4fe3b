// Package ort runs a model set (an ensemble of ONNX members described by a model.Manifest) with ONNX
// Runtime: preprocessing, test-time augmentation folded into the batch, every member, sigmoid, and the
// average over views and members.
package ort

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"github.com/hpa-plates/hpa/internal/model"
	onnx "github.com/yalue/onnxruntime_go"
)

// DefaultLibrary is where scripts/setup.sh puts the ONNX Runtime shared library, relative to the
// repository (or working) directory.
const DefaultLibrary = ".cache/libonnxruntime.so"

// Execution providers.
const (
	ProviderCPU      = "cpu"
	ProviderCUDA     = "cuda"
	ProviderTensorRT = "tensorrt"
)

// DefaultMaxBatch is the default number of samples per ONNX Runtime run (each with its TTA views).
const DefaultMaxBatch = 4

// Options configure the runner (model.RuntimeOptions: config section ort.*).
type Options = model.RuntimeOptions

// LibraryError says the ONNX Runtime shared library is missing or unusable.
type LibraryError struct {
	Path   string
	Reason string
}

func (e *LibraryError) Error() string {
	return fmt.Sprintf("ort: ONNX Runtime library %s: %s (run scripts/setup.sh or set HPA_ORT_LIBRARY)", e.Path, e.Reason)
}

// ProviderError says an execution provider was requested that this ONNX Runtime cannot give.
type ProviderError struct {
	Provider string
	Reason   string
}

func (e *ProviderError) Error() string {
	return fmt.Sprintf("ort: execution provider %q unavailable: %s", e.Provider, e.Reason)
}

// ResolveLibrary returns the path the library would be loaded from, or a *LibraryError.
func ResolveLibrary(path string) (string, error) {
	if path == "" {
		path = DefaultLibrary
	}
	candidates := []string{path}
	if !filepath.IsAbs(path) {
		if wd, err := os.Getwd(); err == nil {
			for dir := wd; ; dir = filepath.Dir(dir) {
				if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
					candidates = append(candidates, filepath.Join(dir, path))
					break
				}
				if filepath.Dir(dir) == dir {
					break
				}
			}
		}
	}
	for _, c := range candidates {
		st, err := os.Stat(c)
		if err == nil && !st.IsDir() {
			abs, err := filepath.Abs(c)
			if err != nil {
				return "", &LibraryError{c, err.Error()}
			}
			return abs, nil
		}
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			return "", &LibraryError{c, err.Error()}
		}
	}
	return "", &LibraryError{path, "not found"}
}

var (
	envOnce    sync.Once
	envErr     error
	envLibrary string
)

// initEnv initializes the process-wide ONNX Runtime environment once. Later calls naming another
// library get an error: a process can load only one.
func initEnv(library string) error {
	path, err := ResolveLibrary(library)
	if err != nil {
		return err
	}
	envOnce.Do(func() {
		envLibrary = path
		onnx.SetSharedLibraryPath(path)
		if err := onnx.InitializeEnvironment(onnx.WithLogLevelError()); err != nil {
			envErr = &LibraryError{path, err.Error()}
		}
	})
	if envErr != nil {
		return envErr
	}
	if path != envLibrary {
		return &LibraryError{path, "this process already loaded ONNX Runtime from " + envLibrary}
	}
	return nil
}

// Version initializes ONNX Runtime from the library and returns its version string.
func Version(library string) (string, error) {
	if err := initEnv(library); err != nil {
		return "", err
	}
	return onnx.GetVersion(), nil
}

// sessionOptions builds the ORT session options for opt.
func sessionOptions(opt Options) (*onnx.SessionOptions, error) {
	so, err := onnx.NewSessionOptions()
	if err != nil {
		return nil, fmt.Errorf("ort: session options: %w", err)
	}
	fail := func(err error) (*onnx.SessionOptions, error) {
		so.Destroy()
		return nil, err
	}
	if opt.IntraThreads < 0 || opt.InterThreads < 0 {
		return fail(fmt.Errorf("ort: thread counts must not be negative (intra %d, inter %d)", opt.IntraThreads, opt.InterThreads))
	}
	if opt.IntraThreads > 0 {
		if err := so.SetIntraOpNumThreads(opt.IntraThreads); err != nil {
			return fail(fmt.Errorf("ort: intra_threads %d: %w", opt.IntraThreads, err))
		}
	}
	if opt.InterThreads > 0 {
		if err := so.SetInterOpNumThreads(opt.InterThreads); err != nil {
			return fail(fmt.Errorf("ort: inter_threads %d: %w", opt.InterThreads, err))
		}
	}
	dev := map[string]string{"device_id": fmt.Sprint(opt.DeviceID)}
	switch strings.ToLower(opt.Provider) {
	case "", ProviderCPU:
	case ProviderCUDA:
		co, err := onnx.NewCUDAProviderOptions()
		if err != nil {
			return fail(&ProviderError{ProviderCUDA, providerHint(err)})
		}
		defer co.Destroy()
		if err := co.Update(dev); err != nil {
			return fail(&ProviderError{ProviderCUDA, providerHint(err)})
		}
		if err := so.AppendExecutionProviderCUDA(co); err != nil {
			return fail(&ProviderError{ProviderCUDA, providerHint(err)})
		}
	case ProviderTensorRT:
		to, err := onnx.NewTensorRTProviderOptions()
		if err != nil {
			return fail(&ProviderError{ProviderTensorRT, providerHint(err)})
		}
		defer to.Destroy()
		if err := to.Update(dev); err != nil {
			return fail(&ProviderError{ProviderTensorRT, providerHint(err)})
		}
		if err := so.AppendExecutionProviderTensorRT(to); err != nil {
			return fail(&ProviderError{ProviderTensorRT, providerHint(err)})
		}
	default:
		return fail(&ProviderError{opt.Provider, "unknown provider (want cpu, cuda or tensorrt)"})
	}
	return so, nil
}

func providerHint(err error) string {
	return err.Error() + "; the library at " + envLibrary + " needs to be an ONNX Runtime GPU build with its provider libraries, on a machine with a GPU"
}
