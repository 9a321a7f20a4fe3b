// Command benchreport writes docs/benchmarks.md from docs/bench/*.txt (make bench-report).
//
//	go run ./internal/benchreport/cmd/benchreport [-check] DIR OUT
package main

import (
	"bytes"
	"flag"
	"fmt"
	"os"

	"github.com/hpa-plates/hpa/internal/benchreport"
)

func main() {
	check := flag.Bool("check", false, "only report whether OUT is up to date (exit 1 when not)")
	flag.Parse()
	if flag.NArg() != 2 {
		fmt.Fprintln(os.Stderr, "usage: benchreport [-check] DIR OUT")
		os.Exit(2)
	}
	dir, out := flag.Arg(0), flag.Arg(1)
	secs, err := benchreport.ParseDir(dir)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	doc := benchreport.Render(secs, dir)
	if *check {
		have, _ := os.ReadFile(out)
		if !bytes.Equal(have, doc) {
			fmt.Fprintf(os.Stderr, "%s is not what %s/*.txt generate: run make bench-report\n", out, dir)
			os.Exit(1)
		}
		return
	}
	if err := os.WriteFile(out, doc, 0o644); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	fmt.Printf("%s: %d sections from %s\n", out, len(secs), dir)
}
