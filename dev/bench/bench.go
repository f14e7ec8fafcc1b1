package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"time"

	"go-micro.dev/v6/client"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/resolver"
	"google.golang.org/grpc/resolver/manual"

	"github.com/micro/kubernetes/dev/stack"
	"github.com/micro/kubernetes/loadgen/load"
	"github.com/micro/kubernetes/pkg/k8s"
	greeterv1 "github.com/micro/kubernetes/proto/greeter/v1"
)

// Config bounds a bench run.
type Config struct {
	Saturation, Fixed time.Duration
	Rounds, Workers   int
}

// binaries: the project's and the baseline's, each built as the images are
// (stripped, without paths).
var binaries = map[string]string{
	"project-greeter":  "./services/greeter",
	"project-web":      "./web",
	"baseline-greeter": "./dev/bench/baseline/greeter",
	"baseline-web":     "./dev/bench/baseline/web",
}

// Build builds the binaries into bin: the baseline's from the working tree,
// the project's from it too or, when ref is not empty, from that commit (to
// weigh a change against the same baseline). It is apart from Run so that a
// cold build never counts against a measurement's deadline.
func Build(ctx context.Context, bin, ref string) error {
	root, err := stack.Root(ctx)
	if err != nil {
		return err
	}
	project, env := root, os.Environ()
	if ref != "" {
		tree, err := os.MkdirTemp("", "bench-project-")
		if err != nil {
			return err
		}
		defer os.RemoveAll(tree)
		if err := checkout(ctx, root, ref, tree); err != nil {
			return err
		}
		// The commit's own workspace, whatever GOWORK the bench runs with.
		project, env = tree, append(env, "GOWORK="+filepath.Join(tree, "go.work"))
	}
	for name, pkg := range binaries {
		build := exec.CommandContext(ctx, "go", "build", "-trimpath", "-ldflags=-s -w", "-o", filepath.Join(bin, name), pkg)
		build.Dir = root
		if strings.HasPrefix(name, "project-") {
			build.Dir, build.Env = project, env
		}
		if out, err := build.CombinedOutput(); err != nil {
			return fmt.Errorf("building %s: %v\n%s", pkg, err, out)
		}
	}
	return nil
}

// checkout writes the files of commit ref into dir (git archive, so the
// repository gains no worktree to clean up).
func checkout(ctx context.Context, root, ref, dir string) error {
	var archiveErr, extractErr bytes.Buffer
	archive := exec.CommandContext(ctx, "git", "-C", root, "archive", "--format=tar", ref+"^{commit}")
	extract := exec.CommandContext(ctx, "tar", "-x", "-C", dir)
	archive.Stderr, extract.Stderr = &archiveErr, &extractErr
	pipe, err := archive.StdoutPipe()
	if err != nil {
		return err
	}
	extract.Stdin = pipe
	if err := archive.Start(); err != nil {
		return fmt.Errorf("git archive: %w", err)
	}
	xerr := extract.Run()
	if err := archive.Wait(); err != nil {
		return fmt.Errorf("checking out %q: %v: %s", ref, err, bytes.TrimSpace(archiveErr.Bytes()))
	}
	if xerr != nil {
		return fmt.Errorf("checking out %q: %v: %s", ref, xerr, bytes.TrimSpace(extractErr.Bytes()))
	}
	return nil
}

// Run measures the project against the baseline, with the binaries Build
// put in bin.
func Run(ctx context.Context, cfg Config, bin string) (Report, error) {
	root, err := stack.Root(ctx)
	if err != nil {
		return Report{}, err
	}
	b := &bench{cfg: cfg, bin: bin, root: root, client: k8s.NewClient()}
	return b.run(ctx)
}

type bench struct {
	cfg       Config
	bin, root string
	rows      []Row
	// client is the project's go-micro client, one for the whole run as a
	// process keeps one: it has no Close, so a client per run would leave
	// each run's connection open to the project's greeter, and only to it.
	client client.Client
}

// proc is a started binary.
type proc struct {
	cmd  *exec.Cmd
	addr string
	done chan struct{} // closed once it has exited
}

func (p proc) stop() { _ = p.cmd.Process.Kill(); <-p.done }

// cpu is the CPU time the process has used, user and system.
func (p proc) cpu() time.Duration {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", p.cmd.Process.Pid))
	if err != nil {
		return 0
	}
	// The fields after the command (in parentheses): utime and stime are
	// the 12th and 13th, in clock ticks (100 a second on Linux).
	f := strings.Fields(string(b[bytes.LastIndexByte(b, ')')+1:]))
	if len(f) < 13 {
		return 0
	}
	user, _ := strconv.Atoi(f[11])
	system, _ := strconv.Atoi(f[12])
	return time.Duration(user+system) * 10 * time.Millisecond
}

func (p proc) rssMiB() float64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", p.cmd.Process.Pid))
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) >= 2 && f[0] == "VmRSS:" {
			kb, _ := strconv.Atoi(f[1])
			return float64(kb) / 1024
		}
	}
	return 0
}

// freeAddr is a free loopback address from stack.FreePort's range, which
// no outgoing connection takes. Its lock is not kept: the bench runs alone.
func freeAddr() string {
	port, _, err := stack.FreePort()
	if err != nil {
		panic(err)
	}
	return net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
}

// memoryEnv runs each side as the pods run: the project told its memory
// limit (what `make run` tells it), from which pkg/k8s sets the runtime's
// soft limit and the collector's pacing; the baseline given the same two by
// Go's own variables. The comparison is of the code, not of the collectors'
// settings. A GOGC or GOMEMLIMIT the bench runs with applies to both sides.
func memoryEnv(side string) []string {
	if side == "project" {
		return []string{k8s.EnvMemoryLimit + "=" + strconv.Itoa(stack.MemoryLimit)}
	}
	var env []string
	if _, ok := os.LookupEnv("GOGC"); !ok {
		env = append(env, "GOGC="+strconv.Itoa(k8s.GCPercent))
	}
	if _, ok := os.LookupEnv("GOMEMLIMIT"); !ok {
		env = append(env, "GOMEMLIMIT="+strconv.FormatInt(k8s.SoftMemoryLimit(stack.MemoryLimit), 10))
	}
	return env
}

// start runs a binary and returns once ready answers true, with how long
// that took.
func (b *bench) start(name string, args, env []string, ready func() bool) (proc, time.Duration, error) {
	cmd := exec.Command(filepath.Join(b.bin, name), args...)
	side, _, _ := strings.Cut(name, "-")
	cmd.Env = append(append(os.Environ(), memoryEnv(side)...), env...)
	begin := time.Now()
	if err := cmd.Start(); err != nil {
		return proc{}, 0, err
	}
	p := proc{cmd: cmd, done: make(chan struct{})}
	var exit error
	go func() { exit = cmd.Wait(); close(p.done) }()
	for !ready() {
		select {
		case <-p.done:
			return proc{}, 0, fmt.Errorf("%s %s exited before it was ready (%v): %s", name, strings.Join(args, " "), exit, rerun(cmd))
		default:
		}
		if time.Since(begin) > 10*time.Second {
			p.stop()
			return proc{}, 0, fmt.Errorf("%s not ready after 10s", name)
		}
		time.Sleep(time.Millisecond)
	}
	return p, time.Since(begin), nil
}

// rerun runs a binary that exited as it started once more, as it was run,
// and returns the end of what it wrote to stderr: why it exited. The bench
// does not keep a binary's output, where the project logs every request.
func rerun(cmd *exec.Cmd) string {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	again := exec.CommandContext(ctx, cmd.Path, cmd.Args[1:]...)
	again.Env = cmd.Env
	var stderr bytes.Buffer
	again.Stderr = &stderr
	_ = again.Run()
	out := bytes.TrimSpace(stderr.Bytes())
	return string(out[max(0, len(out)-1<<10):])
}

func grpcReady(addr string) func() bool {
	return func() bool {
		cc, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			return false
		}
		defer cc.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
		defer cancel()
		rsp, err := healthpb.NewHealthClient(cc).Check(ctx, &healthpb.HealthCheckRequest{})
		return err == nil && rsp.Status == healthpb.HealthCheckResponse_SERVING
	}
}

func httpReady(url string) func() bool {
	return func() bool {
		rsp, err := (&http.Client{Timeout: 100 * time.Millisecond}).Get(url)
		if err != nil {
			return false
		}
		rsp.Body.Close()
		return rsp.StatusCode == http.StatusOK
	}
}

// pair is the project's and the baseline's processes, serving.
type pair struct {
	greeter, web map[string]proc // by side
	ready        map[string]time.Duration
	idle         map[string]float64
}

var sides = []string{"project", "baseline"}

func (b *bench) startAll() (pair, error) {
	p := pair{greeter: map[string]proc{}, web: map[string]proc{}, ready: map[string]time.Duration{}, idle: map[string]float64{}}
	for _, side := range sides {
		gAddr, wAddr := freeAddr(), freeAddr()
		var gArgs, wArgs []string
		if side == "project" {
			gArgs = []string{"--server_address=" + gAddr, "--metrics_address="}
			wArgs = []string{"--server_address=" + wAddr, "--metrics_address="}
		} else {
			gArgs = []string{"-addr=" + gAddr}
			wArgs = []string{"-addr=" + wAddr, "-greeter=" + gAddr}
		}
		g, took, err := b.start(side+"-greeter", gArgs, nil, grpcReady(gAddr))
		if err != nil {
			return p, err
		}
		g.addr = gAddr
		p.greeter[side], p.ready[side+" greeter"] = g, took
		w, took, err := b.start(side+"-web", wArgs, []string{k8s.EnvAddresses + "=" + greeterv1.ServiceName + "=" + gAddr}, httpReady("http://"+wAddr+"/health"))
		if err != nil {
			return p, err
		}
		w.addr = wAddr
		p.web[side], p.ready[side+" web"] = w, took
	}
	time.Sleep(500 * time.Millisecond) // settle before reading idle memory
	for _, side := range sides {
		p.idle[side+" greeter"], p.idle[side+" web"] = p.greeter[side].rssMiB(), p.web[side].rssMiB()
	}
	return p, nil
}

// rpc returns the call the RPC benchmark repeats, through each side's client
// (or through the plain client on both sides, to weigh the servers alone).
func (b *bench) rpc(side, addr string, plainClient bool) (func(context.Context) error, func()) {
	req := &greeterv1.HelloRequest{Name: "bench"}
	if side == "project" && !plainClient {
		greeter := greeterv1.NewGreeterService(greeterv1.ServiceName, b.client)
		return func(ctx context.Context) error {
			_, err := greeter.Hello(ctx, req, client.WithAddress(addr))
			return err
		}, func() {}
	}
	cc, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		panic(err)
	}
	greeter := greeterv1.NewGreeterClient(cc)
	return func(ctx context.Context) error {
		// The deadline the go-micro client sends with every call: a
		// production client sets one, and each costs gRPC some work on
		// both sides; leaving it out would flatter the plain client.
		ctx, cancel := context.WithTimeout(ctx, callTimeout)
		defer cancel()
		_, err := greeter.Hello(ctx, req)
		return err
	}, func() { cc.Close() }
}

// callTimeout is the deadline the go-micro client puts on a call that has
// none: its request timeout.
var callTimeout = k8s.NewClient().Options().CallOptions.RequestTimeout

func web(addr string) (func(context.Context) error, func()) {
	c := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 1024}, Timeout: 5 * time.Second}
	url := "http://" + addr + "/greeter?name=bench"
	return func(ctx context.Context) error {
		req, _ := http.NewRequestWithContext(ctx, "GET", url, nil)
		rsp, err := c.Do(req)
		if err != nil {
			return err
		}
		// Read to the end, or the connection is closed, not reused.
		_, err = io.Copy(io.Discard, rsp.Body)
		rsp.Body.Close()
		if err != nil {
			return err
		}
		if rsp.StatusCode != http.StatusOK {
			return fmt.Errorf("%s", rsp.Status)
		}
		return nil
	}, c.CloseIdleConnections
}

// connections counts the established TCP connections that process pid
// holds to addr: its sockets (in /proc/pid/fd) matched against /proc/net/tcp.
func connections(pid int, addr string) int {
	fds, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	if err != nil {
		return 0
	}
	inodes := map[string]bool{}
	for _, fd := range fds {
		link, err := os.Readlink(fmt.Sprintf("/proc/%d/fd/%s", pid, fd.Name()))
		if inode, ok := strings.CutPrefix(link, "socket:["); err == nil && ok {
			inodes[strings.TrimSuffix(inode, "]")] = true
		}
	}
	_, port, _ := net.SplitHostPort(addr)
	p, _ := strconv.Atoi(port)
	suffix := fmt.Sprintf(":%04X", p)
	n := 0
	for _, f := range []string{"/proc/net/tcp", "/proc/net/tcp6"} {
		b, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		for _, line := range strings.Split(string(b), "\n")[1:] {
			// rem_address is the server's, st 01 is ESTABLISHED, then the inode
			if f := strings.Fields(line); len(f) > 9 && strings.HasSuffix(f[2], suffix) && f[3] == "01" && inodes[f[9]] {
				n++
			}
		}
	}
	return n
}

func (b *bench) run(ctx context.Context) (Report, error) {
	p, err := b.startAll()
	defer func() {
		for _, side := range sides {
			if g, ok := p.greeter[side]; ok {
				g.stop()
			}
			if w, ok := p.web[side]; ok {
				w.stop()
			}
		}
	}()
	if err != nil {
		return Report{}, err
	}

	type path struct {
		name  string
		call  func(side string) (func(context.Context) error, func())
		serve map[string]proc // whose memory is measured
		// the greeter, and who holds the gRPC client whose connections to it
		// are counted: this process, or the web frontend
		greeter map[string]proc
		client  func(side string) int
		// throughputTarget is the least throughput at saturation,
		// project/baseline; cpuTarget bounds the greeter's CPU per request
		// at the fixed rate, project/baseline, where the path weighs the
		// server alone (0: none).
		throughputTarget, cpuTarget float64
	}
	paths := []path{
		{"greeter RPC", func(side string) (func(context.Context) error, func()) {
			return b.rpc(side, p.greeter[side].addr, false)
		}, p.greeter, p.greeter, func(string) int { return os.Getpid() }, 0.85, 0},
		{"greeter RPC, plain gRPC client on both sides", func(side string) (func(context.Context) error, func()) {
			return b.rpc(side, p.greeter[side].addr, true)
		}, p.greeter, p.greeter, func(string) int { return os.Getpid() }, 0.9, 1.25},
		{"web /greeter", func(side string) (func(context.Context) error, func()) { return web(p.web[side].addr) }, p.web, p.greeter, func(side string) int { return p.web[side].cmd.Process.Pid }, 0.91, 0},
	}
	for _, pa := range paths {
		best := map[string][]float64{}
		conns, loaded := map[string]int{}, map[string]float64{}
		// The greeter's own CPU time over the saturation runs, and the
		// requests served meanwhile; then over the fixed-rate runs, where
		// both sides serve the same load. At saturation each side's cost
		// per request also depends on the rate it reached (a busier server
		// writes more replies per system call), so that row is only shown.
		cpu, served := map[string]time.Duration{}, map[string]int{}
		for round := 0; round < b.cfg.Rounds; round++ {
			for _, side := range sides { // alternating
				do, done := pa.call(side)
				stopSampling := make(chan struct{})
				sampled := make(chan struct{})
				// Connections opened by this run: the ones open before (an
				// earlier run's idle client) do not count.
				before := connections(pa.client(side), pa.greeter[side].addr)
				go func() { // sample under load: the most connections, the memory
					defer close(sampled)
					tick := time.NewTicker(100 * time.Millisecond)
					defer tick.Stop()
					for {
						select {
						case <-tick.C:
							conns[side] = max(conns[side], connections(pa.client(side), pa.greeter[side].addr)-before)
							loaded[side] = max(loaded[side], pa.serve[side].rssMiB())
						case <-stopSampling:
							return
						}
					}
				}()
				cpuBefore := pa.greeter[side].cpu()
				r := load.Run(ctx, load.Options{Workers: b.cfg.Workers, Duration: b.cfg.Saturation}, do)
				cpu[side] += pa.greeter[side].cpu() - cpuBefore
				served[side] += r.Requests - r.Errors
				close(stopSampling)
				<-sampled
				done()
				if r.Errors > 0 {
					return Report{}, fmt.Errorf("%s, %s: %v", pa.name, side, r)
				}
				best[side] = append(best[side], r.Throughput)
			}
		}
		top := func(side string) float64 { return slices.Max(best[side]) }
		rate := top("baseline") / 2
		// The fixed rate, alternated as many rounds: the median of each
		// side's latencies, its CPU over all of them.
		p50, p99 := map[string][]time.Duration{}, map[string][]time.Duration{}
		fixedCPU, fixedServed := map[string]time.Duration{}, map[string]int{}
		// On the web path, the frontend's own CPU too: it is most of the
		// path's cost.
		frontend := pa.serve["project"].cmd != pa.greeter["project"].cmd
		frontCPU := map[string]time.Duration{}
		for round := 0; round < b.cfg.Rounds; round++ {
			for _, side := range sides {
				do, done := pa.call(side)
				cpuBefore, frontBefore := pa.greeter[side].cpu(), pa.serve[side].cpu()
				r := load.Run(ctx, load.Options{Rate: rate, Workers: b.cfg.Workers * 4, Duration: b.cfg.Fixed}, do)
				fixedCPU[side] += pa.greeter[side].cpu() - cpuBefore
				frontCPU[side] += pa.serve[side].cpu() - frontBefore
				fixedServed[side] += r.Requests - r.Errors
				p50[side], p99[side] = append(p50[side], r.P50), append(p99[side], r.P99)
				done()
			}
		}
		median := func(ds []time.Duration) float64 { slices.Sort(ds); return ms(ds[len(ds)/2]) }
		b.rows = append(b.rows,
			Row{Measure: pa.name + ": throughput at saturation", Project: top("project"), Baseline: top("baseline"), Unit: "req/s", Target: pa.throughputTarget, AtLeast: true},
			Row{Measure: fmt.Sprintf("%s: p50 at %.0f req/s", pa.name, rate), Project: median(p50["project"]), Baseline: median(p50["baseline"]), Unit: "ms"},
			Row{Measure: fmt.Sprintf("%s: p99 at %.0f req/s", pa.name, rate), Project: median(p99["project"]), Baseline: median(p99["baseline"]), Unit: "ms", Target: 1.5},
			Row{Measure: pa.name + ": gRPC connections opened to the greeter under load", Project: float64(conns["project"]), Baseline: float64(conns["baseline"]), Unit: "conns"},
			Row{Measure: pa.name + ": server RSS under load (most seen)", Project: loaded["project"], Baseline: loaded["baseline"], Unit: "MiB"},
			Row{Measure: pa.name + ": greeter CPU per request at saturation", Project: perRequest(cpu["project"], served["project"]),
				Baseline: perRequest(cpu["baseline"], served["baseline"]), Unit: "µs"},
			Row{Measure: fmt.Sprintf("%s: greeter CPU per request at %.0f req/s", pa.name, rate),
				Project:  perRequest(fixedCPU["project"], fixedServed["project"]),
				Baseline: perRequest(fixedCPU["baseline"], fixedServed["baseline"]), Unit: "µs", Target: pa.cpuTarget},
		)
		if frontend {
			b.rows = append(b.rows, Row{Measure: fmt.Sprintf("%s: web CPU per request at %.0f req/s", pa.name, rate),
				Project:  perRequest(frontCPU["project"], fixedServed["project"]),
				Baseline: perRequest(frontCPU["baseline"], fixedServed["baseline"]), Unit: "µs"})
		}
	}
	spread, err := b.spread(ctx)
	if err != nil {
		return Report{}, err
	}
	b.rows = append(b.rows, spread)
	for _, what := range []string{"greeter", "web"} {
		b.rows = append(b.rows,
			Row{Measure: what + ": start to ready", Project: ms(p.ready["project "+what]), Baseline: ms(p.ready["baseline "+what]), Unit: "ms", Target: 200, Absolute: true},
			Row{Measure: what + ": idle RSS", Project: p.idle["project "+what], Baseline: p.idle["baseline "+what], Unit: "MiB", Target: 30, Absolute: true},
			Row{Measure: what + ": binary size", Project: size(b.bin, "project-"+what), Baseline: size(b.bin, "baseline-"+what), Unit: "MiB"},
		)
	}
	host, _ := os.Hostname()
	return Report{When: time.Now().UTC(), Machine: fmt.Sprintf("%s, %d CPUs, %s", host, runtime.NumCPU(), runtime.Version()), Rows: b.rows}, nil
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

// perRequest is CPU time per request, in microseconds.
func perRequest(cpu time.Duration, requests int) float64 {
	return float64(cpu.Microseconds()) / float64(max(requests, 1))
}

// spreadReplicas is how many greeters the spread row runs per side.
const spreadReplicas = 3

// spread gives each side's client the addresses of three greeters, as a
// headless Service's name resolves to three pods, and measures at
// saturation how much of the work the busiest one did (by CPU time, which
// needs no counter in the baseline): the project's client balances round
// robin, gRPC's default (pick_first) sends everything to one.
func (b *bench) spread(ctx context.Context) (Row, error) {
	share := map[string]float64{}
	for _, side := range sides {
		var greeters []proc
		var addrs []string
		defer func() {
			for _, g := range greeters {
				g.stop()
			}
		}()
		for range spreadReplicas {
			addr := freeAddr()
			args := []string{"-addr=" + addr}
			if side == "project" {
				args = []string{"--server_address=" + addr, "--metrics_address="}
			}
			g, _, err := b.start(side+"-greeter", args, nil, grpcReady(addr))
			if err != nil {
				return Row{}, err
			}
			greeters, addrs = append(greeters, g), append(addrs, addr)
		}
		do, done := b.rpcAll(side, addrs)
		var before []time.Duration
		for _, g := range greeters {
			before = append(before, g.cpu())
		}
		r := load.Run(ctx, load.Options{Workers: b.cfg.Workers, Duration: b.cfg.Saturation}, do)
		done()
		if r.Errors > 0 {
			return Row{}, fmt.Errorf("spread, %s: %v", side, r)
		}
		var total, busiest time.Duration
		for i, g := range greeters {
			used := g.cpu() - before[i]
			total, busiest = total+used, max(busiest, used)
		}
		share[side] = 100 * busiest.Seconds() / total.Seconds()
	}
	return Row{Measure: fmt.Sprintf("greeter RPC over %d replicas: the busiest one's share of their CPU time", spreadReplicas),
		Project: share["project"], Baseline: share["baseline"], Unit: "%", Target: 47, Absolute: true}, nil
}

// rpcAll is the call of the spread row: each side's client given every
// address for one name.
func (b *bench) rpcAll(side string, addrs []string) (func(context.Context) error, func()) {
	req := &greeterv1.HelloRequest{Name: "bench"}
	if side == "project" {
		greeter := greeterv1.NewGreeterService(greeterv1.ServiceName, b.client)
		all := client.WithAddress(strings.Join(addrs, ","))
		return func(ctx context.Context) error {
			_, err := greeter.Hello(ctx, req, all)
			return err
		}, func() {}
	}
	r := manual.NewBuilderWithScheme("bench")
	var state resolver.State
	for _, a := range addrs {
		state.Addresses = append(state.Addresses, resolver.Address{Addr: a})
	}
	r.InitialState(state)
	cc, err := grpc.NewClient(r.Scheme()+":///greeter", grpc.WithResolvers(r), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		panic(err)
	}
	greeter := greeterv1.NewGreeterClient(cc)
	return func(ctx context.Context) error {
		_, err := greeter.Hello(ctx, req)
		return err
	}, func() { cc.Close() }
}

func size(dir, name string) float64 {
	fi, err := os.Stat(filepath.Join(dir, name))
	if err != nil {
		return 0
	}
	return float64(fi.Size()) / (1 << 20)
}

// Markdown is the report as a table.
func (r Report) Markdown() string {
	var s strings.Builder
	fmt.Fprintf(&s, "Bench of %s on %s", r.When.Format(time.RFC3339), r.Machine)
	if r.ProjectRef != "" {
		fmt.Fprintf(&s, "; the project as of %s", r.ProjectRef)
	}
	s.WriteString("\n\n")
	s.WriteString("| measure | project | baseline | project/baseline | target |\n|---|---:|---:|---:|---|\n")
	for _, row := range r.Rows {
		target := ""
		if row.Target != 0 {
			op := "<="
			if row.AtLeast {
				op = ">="
			}
			if row.Absolute {
				target = fmt.Sprintf("project %s %g %s", op, row.Target, row.Unit)
			} else {
				target = fmt.Sprintf("ratio %s %g", op, row.Target)
			}
			if row.Met() {
				target += " ✓"
			} else {
				target += " ✗"
			}
		}
		fmt.Fprintf(&s, "| %s | %.1f %s | %.1f %s | %.2f | %s |\n", row.Measure, row.Project, row.Unit, row.Baseline, row.Unit, row.Ratio(), target)
	}
	return s.String()
}

// Write puts the report in dir as latest.json and latest.md.
func (r Report) Write(dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	j, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "latest.json"), append(j, '\n'), 0o644); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, "latest.md"), []byte(r.Markdown()), 0o644)
}
