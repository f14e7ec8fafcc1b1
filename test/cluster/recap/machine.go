package main

import (
	"bufio"
	"fmt"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"time"
)

// sample is the machine's cumulative counters at a moment: the CPU time
// (in clock ticks) busy, stolen by the hypervisor, waiting on IO and in
// all, from /proc/stat; and the time (µs) some task waited for a CPU and
// for IO, from the kernel's pressure stall information, when it has it.
type sample struct {
	at                         time.Time
	busy, steal, iowait, total int64
	cpuPressure, ioPressure    int64
	hasPressure                bool
}

// machine keeps a sample a second.
type machine struct {
	mu      sync.Mutex
	samples []sample
}

func watchMachine() *machine {
	m := &machine{}
	m.add()
	go func() {
		for range time.Tick(time.Second) {
			m.add()
		}
	}()
	return m
}

func (m *machine) add() {
	s, err := read()
	if err != nil {
		return // not Linux: nothing to say
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	m.samples = append(m.samples, s)
}

// between describes the machine from the last sample at or before from to
// the first at or after to.
func (m *machine) between(from, to time.Time) string {
	m.mu.Lock()
	defer m.mu.Unlock()
	var a, b *sample
	for i := range m.samples {
		s := &m.samples[i]
		if a == nil || !s.at.After(from) {
			a = s
		}
		if b == nil && !s.at.Before(to) {
			b = s
		}
	}
	if b == nil && len(m.samples) > 0 {
		b = &m.samples[len(m.samples)-1]
	}
	if a == nil || b == nil || b.total <= a.total {
		return "not measured"
	}
	pct := func(part int64) float64 { return 100 * float64(part) / float64(b.total-a.total) }
	out := fmt.Sprintf("%s, CPU %.0f%% busy, %.0f%% stolen, %.0f%% waiting on IO", b.at.Sub(a.at).Round(time.Second),
		pct(b.busy-a.busy), pct(b.steal-a.steal), pct(b.iowait-a.iowait))
	if a.hasPressure && b.hasPressure {
		wall := float64(b.at.Sub(a.at).Microseconds())
		out += fmt.Sprintf("; some task waited for a CPU %.0f%% of the time, for IO %.0f%%",
			100*float64(b.cpuPressure-a.cpuPressure)/wall, 100*float64(b.ioPressure-a.ioPressure)/wall)
	}
	return out
}

func read() (sample, error) {
	s := sample{at: time.Now()}
	f, err := os.Open("/proc/stat")
	if err != nil {
		return s, err
	}
	defer f.Close()
	line, err := bufio.NewReader(f).ReadString('\n')
	if err != nil {
		return s, err
	}
	// cpu user nice system idle iowait irq softirq steal ...
	fields := strings.Fields(line)
	if len(fields) < 9 || fields[0] != "cpu" {
		return s, fmt.Errorf("/proc/stat begins %q", line)
	}
	var v [8]int64
	for i := range v {
		if v[i], err = strconv.ParseInt(fields[i+1], 10, 64); err != nil {
			return s, err
		}
		s.total += v[i]
	}
	s.busy = v[0] + v[1] + v[2] + v[5] + v[6]
	s.iowait, s.steal = v[4], v[7]
	cpu, errCPU := stallTotal("/proc/pressure/cpu")
	io, errIO := stallTotal("/proc/pressure/io")
	if errCPU == nil && errIO == nil {
		s.cpuPressure, s.ioPressure, s.hasPressure = cpu, io, true
	}
	return s, nil
}

// stallTotal is the "some" line's total (µs) of a pressure file.
func stallTotal(path string) (int64, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, err
	}
	for _, f := range strings.Fields(strings.SplitN(string(b), "\n", 2)[0]) {
		if v, ok := strings.CutPrefix(f, "total="); ok {
			return strconv.ParseInt(v, 10, 64)
		}
	}
	return 0, fmt.Errorf("%s has no total", path)
}

// describeMachine names the CPUs and the memory.
func describeMachine() string {
	model := ""
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, l := range strings.Split(string(b), "\n") {
			if k, v, ok := strings.Cut(l, ":"); ok && strings.TrimSpace(k) == "model name" {
				model = " (" + strings.TrimSpace(v) + ")"
				break
			}
		}
	}
	mem := ""
	if b, err := os.ReadFile("/proc/meminfo"); err == nil {
		if f := strings.Fields(string(b)); len(f) > 1 && f[0] == "MemTotal:" {
			if kb, err := strconv.ParseInt(f[1], 10, 64); err == nil {
				mem = fmt.Sprintf(", %.1f GiB", float64(kb)/(1<<20))
			}
		}
	}
	return fmt.Sprintf("%d CPUs%s%s", runtime.NumCPU(), model, mem)
}
