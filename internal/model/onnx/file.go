package onnx

import (
	"bufio"
	"os"
	"path/filepath"

	"github.com/hpa-plates/hpa/internal/model"
	"github.com/hpa-plates/hpa/internal/model/onnx/onnxpb"
)

// ExportFile writes Export's output to path atomically (a temporary file renamed into place).
func ExportFile(path string, spec model.Spec, weights model.Weights, opt ExportOptions) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), ".export-*.onnx")
	if err != nil {
		return &ExportError{Arch: spec.Name, Reason: "create " + path, Err: err}
	}
	defer os.Remove(tmp.Name())
	bw := bufio.NewWriterSize(tmp, 1<<20)
	if err := Export(bw, spec, weights, opt); err != nil {
		tmp.Close()
		return err
	}
	if err := bw.Flush(); err != nil {
		tmp.Close()
		return &ExportError{Arch: spec.Name, Reason: "write " + path, Err: err}
	}
	if err := tmp.Close(); err != nil {
		return &ExportError{Arch: spec.Name, Reason: "write " + path, Err: err}
	}
	if err := os.Chmod(tmp.Name(), 0o644); err != nil {
		return &ExportError{Arch: spec.Name, Reason: "chmod " + path, Err: err}
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return &ExportError{Arch: spec.Name, Reason: "rename to " + path, Err: err}
	}
	return nil
}

func decodeFile(path string) (*onnxpb.ModelProto, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, &ReadError{Name: path, Reason: "open", Err: err}
	}
	defer f.Close()
	return Decode(bufio.NewReaderSize(f, 1<<20), path)
}
