//go:build !linux

package pipeline

func threadCPUNanos() (int64, bool) { return 0, false }
