//go:build !linux

package minio

import "os/exec"

func setSysProcAttr(cmd *exec.Cmd) {}
