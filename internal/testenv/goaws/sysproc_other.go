//go:build !linux

package goaws

import "os/exec"

func setSysProcAttr(cmd *exec.Cmd) {}
