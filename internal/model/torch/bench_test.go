package torch

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/hpa-plates/hpa/internal/model"
)

// cpuTime is the process's user+system CPU time: on a shared machine it measures the work of a
// step far more steadily than wall time.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func minorFaults() int64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return ru.Minflt
}

type stepBench struct {
	arch        string
	size, batch int
}

var stepBenches = []stepBench{
	{"seresnext_tiny", 128, 8},
	{"seresnext_tiny", 256, 32},
	{"seresnext50_32x4d", 128, 4},
}

func (c stepBench) name() string { return fmt.Sprintf("%s_%dpx_b%d", c.arch, c.size, c.batch) }

// BenchmarkTrainStep times SGD steps (BCE, one libtorch thread) and reports wall and CPU ms per step
// and minor page faults per step, for the allocator this binary was linked with (Allocator).
func BenchmarkTrainStep(b *testing.B) {
	l := openLib(b)
	for _, c := range stepBenches {
		b.Run(c.name(), func(b *testing.B) {
			s := preset(b, c.arch, model.StemMaxPool)
			m := newModel(b, l, s, 1)
			opt, err := NewSGD(m, SGDOptions{LR: 0.01, Momentum: 0.9})
			if err != nil {
				b.Fatal(err)
			}
			defer opt.Close()
			x, y := fixedBatch(s, c.batch, c.size, 1)
			step := func() {
				if _, err := m.TrainStep(opt, x, c.batch, c.size, c.size, y, StepOptions{Loss: LossBCE}); err != nil {
					b.Fatal(err)
				}
			}
			step() // warm-up: first-touch allocations, kernel selection
			b.ResetTimer()
			cpu0, flt0 := cpuTime(), minorFaults()
			for i := 0; i < b.N; i++ {
				step()
			}
			b.StopTimer()
			b.ReportMetric(float64(b.Elapsed().Microseconds())/1000/float64(b.N), "ms/step")
			b.ReportMetric(float64((cpuTime()-cpu0).Microseconds())/1000/float64(b.N), "cpu-ms/step")
			b.ReportMetric(float64(minorFaults()-flt0)/float64(b.N), "minflt/step")
		})
	}
}

var metricRE = regexp.MustCompile(`([0-9.]+) (cpu-ms/step|ms/step)`)

// BenchmarkTCMallocSpeedup compares this binary (tcmalloc) with the same benchmark built with
// -tags hpa_glibc_malloc and run as a child process, on seresnext_tiny 256 px batch 32, and
// reports glibc/tcmalloc ratios of wall and CPU time per step. Needs the go tool.
func BenchmarkTCMallocSpeedup(b *testing.B) {
	if Allocator != "tcmalloc" {
		b.Skip("this binary is the glibc build")
	}
	openLib(b)
	goTool, err := exec.LookPath("go")
	if err != nil {
		b.Skip("go tool not found:", err)
	}
	bin := filepath.Join(b.TempDir(), "torch-glibc.test")
	build := exec.Command(goTool, "test", "-c", "-tags", "hpa_glibc_malloc", "-o", bin, ".")
	if out, err := build.CombinedOutput(); err != nil {
		b.Fatalf("building the glibc benchmark: %v\n%s", err, out)
	}
	const sub = "seresnext_tiny_256px_b32"
	run := func(cmd string, n int) (wall, cpu float64) {
		var args []string
		if cmd != bin {
			args = append(args, "-test.count=1")
		}
		args = append(args, "-test.run=^$", "-test.bench=^BenchmarkTrainStep$/^"+sub+"$", "-test.benchtime="+strconv.Itoa(n)+"x")
		out, err := exec.Command(cmd, args...).CombinedOutput()
		if err != nil {
			b.Fatalf("%s: %v\n%s", cmd, err, out)
		}
		for _, m := range metricRE.FindAllStringSubmatch(string(out), -1) {
			v, _ := strconv.ParseFloat(m[1], 64)
			if m[2] == "ms/step" {
				wall = v
			} else {
				cpu = v
			}
		}
		if wall == 0 || cpu == 0 {
			b.Fatalf("%s: no metrics in\n%s", cmd, out)
		}
		return wall, cpu
	}
	self, err := os.Executable()
	if err != nil {
		b.Fatal(err)
	}
	// Both sides run as children, interleaved, so they see the same machine load.
	var tw, tc, gw, gc float64
	for i := 0; i < b.N; i++ {
		w, c := run(self, 2)
		tw, tc = tw+w, tc+c
		w, c = run(bin, 2)
		gw, gc = gw+w, gc+c
	}
	n := float64(b.N)
	b.ReportMetric(tw/n, "tcmalloc-ms/step")
	b.ReportMetric(gw/n, "glibc-ms/step")
	b.ReportMetric(tc/n, "tcmalloc-cpu-ms/step")
	b.ReportMetric(gc/n, "glibc-cpu-ms/step")
	b.ReportMetric(gw/tw, "wall-ratio")
	b.ReportMetric(gc/tc, "cpu-ratio")
}
