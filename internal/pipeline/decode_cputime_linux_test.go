package pipeline

import "golang.org/x/sys/unix"

// threadCPUNanos is the CPU time of the calling OS thread (CLOCK_THREAD_CPUTIME_ID): unlike wall
// time it does not grow while the thread waits for a core on a loaded machine.
func threadCPUNanos() (int64, bool) {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_THREAD_CPUTIME_ID, &ts); err != nil {
		return 0, false
	}
	return ts.Nano(), true
}
