package goaws

import (
	"os/exec"
	"syscall"
)

// setSysProcAttr makes the kernel kill goaws when the test process dies without cleaning up
// (a panic, a timeout, SIGKILL), so no server outlives its test.
func setSysProcAttr(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
