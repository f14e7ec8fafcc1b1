// Command recap reads `go test -json` on its standard input and prints the
// output as `go test -v` does, then, if anything failed, each failed test's
// last lines again. A CI log is often read from its end, and the cluster
// tier runs its tests in parallel: a failure's reason is otherwise among
// thousands of lines of other tests' output. With each failure it says how
// busy the machine was meanwhile, and at the end over the whole run: a
// test that passes here and fails on another machine often waited on a
// CPU. It exits 1 unless every package passed.
//
//	go test -json . | go run ./recap
package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"slices"
	"strings"
	"time"
)

// tail is how many of a failed test's last lines the recap shows.
const tail = 30

// event is the part of a test2json event recap reads.
type event struct {
	Action  string
	Package string
	// ImportPath names the package of a build's events.
	ImportPath string
	Test       string
	Output     string
	Time       time.Time
}

func main() { os.Exit(recap()) }

// recap prints the run and returns the exit code.
func recap() int {
	machine := watchMachine()
	lines := map[string][]string{}  // each test's output
	began := map[string]time.Time{} // when each test last ran on
	var failed []string
	var first time.Time
	passed, packages := 0, 0
	in := bufio.NewScanner(os.Stdin)
	in.Buffer(make([]byte, 1<<20), 16<<20)
	for in.Scan() {
		var e event
		if err := json.Unmarshal(in.Bytes(), &e); err != nil || e.Action == "" {
			// Not an event: go itself failed before the tests ran.
			fmt.Println(in.Text())
			continue
		}
		if first.IsZero() {
			first = e.Time
		}
		switch e.Action {
		case "run", "cont":
			began[e.Test] = e.Time
		case "output", "build-output":
			fmt.Print(e.Output)
			if e.Test != "" {
				lines[e.Test] = append(lines[e.Test], strings.TrimRight(e.Output, "\n"))
			}
		case "fail", "build-fail":
			if e.Test == "" {
				packages++
				failed = append(failed, e.Package+e.ImportPath)
			} else {
				failed = append(failed, e.Test)
				lines[e.Test] = append(lines[e.Test], "the machine meanwhile: "+machine.between(began[e.Test], e.Time))
			}
		case "pass":
			if e.Test == "" {
				packages++
				passed++
			}
		}
	}
	if err := in.Err(); err != nil {
		fmt.Fprintln(os.Stderr, "recap: reading go test's output:", err)
		return 1
	}
	// Last, where a log read from its end shows it.
	defer fmt.Printf("recap: the machine: %s; over the run: %s\n", describeMachine(), machine.between(first, time.Now()))
	if len(failed) == 0 && passed > 0 && passed == packages {
		return 0
	}
	fmt.Printf("\nrecap: %d failed: %s\n", len(failed), strings.Join(failed, ", "))
	for _, name := range failed {
		// A parent fails with its subtests: their lines say why.
		out := lines[name]
		if len(out) == 0 || slices.ContainsFunc(failed, func(f string) bool { return strings.HasPrefix(f, name+"/") }) {
			continue
		}
		fmt.Printf("\n--- %s, its last %d lines:\n", name, min(tail, len(out)))
		for _, l := range out[max(0, len(out)-tail):] {
			fmt.Println(l)
		}
	}
	if len(failed) == 0 {
		fmt.Println("recap: no package passed")
	}
	return 1
}
