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
	grpcclient "go-micro.dev/v6/client/grpc"
	"go-micro.dev/v6/registry"
	"go-micro.dev/v6/selector"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
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
	if err := stack.BuildNATS(ctx, root, bin); err != nil {
		return err
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
	b := &bench{cfg: cfg, bin: bin, root: root, clients: map[string]client.Client{
		project: k8s.NewClient(),
		stock:   goMicroClient(selector.NewSelector(selector.Registry(registry.NewMemoryRegistry()))),
	}}
	return b.run(ctx)
}

// goMicroClient is go-micro's own gRPC client, with pkg/k8s's one default
// that matters here: no retries.
func goMicroClient(sel selector.Selector) client.Client {
	return grpcclient.NewClient(client.Retries(0), client.Selector(sel))
}

// The sides measured: the project as it ships (its fast paths on), the
// project on go-micro's own server and client (MICRO_FAST_PATHS=false),
// and the baseline. Each of the first two is read against the baseline.
const (
	project  = "project"
	stock    = "stock"
	baseline = "baseline"
)

var sides = []string{baseline, project, stock}

// sideLabel is how the report names a side's paths.
var sideLabel = map[string]string{project: "fast paths", stock: "go-micro's"}

// The targets, each read as the median of the rounds' ratios,
// project/baseline (the stock side's rows have none: they are shown).
const (
	targetRPC         = 0.9  // greeter RPC, throughput at saturation
	targetPlainClient = 0.95 // the same with a plain gRPC client on both sides
	targetWeb         = 0.9  // web /greeter, throughput at saturation
	targetCPU         = 1.15 // greeter CPU per request at the fixed rate, plain client
	targetP99         = 1.3  // p99 at the fixed rate, every path
	targetSpread      = 47   // %, the busiest of three greeters' share of their CPU time
	targetStart       = 200  // ms, start to ready
	targetIdleRSS     = 30   // MiB, idle
)

type bench struct {
	cfg       Config
	bin, root string
	rows      []Row
	// clients are the go-micro clients of the RPC path, by side, one for
	// the whole run as a process keeps one: a client has no Close, so a
	// client per run would leave each run's connections open.
	clients map[string]client.Client
}

// proc is a started binary.
type proc struct {
	cmd  *exec.Cmd
	addr string
	done chan struct{} // closed once it has exited
}

// stop stops it as make run stops its processes.
func (p proc) stop() { stack.StopProcess(p.cmd, p.done) }

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
	if side != baseline {
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

// start runs the side's build of a binary ("greeter" or "web") and
// returns once it serves at ready (an address, or an http:// URL answering
// 200, as make run waits for its processes), with how long that took.
func (b *bench) start(side, name string, args, env []string, ready string) (proc, time.Duration, error) {
	build := baseline
	if side != baseline {
		build = project
		// The project's greeting path alone, as the baseline's: no events
		// (the events row weighs them) and no count shown by the web.
		env = append([]string{"MICRO_EVENTS_ADDRESS=", "MICRO_SHOW_COUNTS=false"}, env...)
		if side == stock {
			env = append(env, k8s.EnvFastPaths+"=false")
		}
	}
	cmd := exec.Command(filepath.Join(b.bin, build+"-"+name), args...)
	cmd.Env = append(append(os.Environ(), memoryEnv(side)...), env...)
	begin := time.Now()
	if err := cmd.Start(); err != nil {
		return proc{}, 0, err
	}
	p := proc{cmd: cmd, done: make(chan struct{})}
	var exit error
	go func() { exit = cmd.Wait(); close(p.done) }()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := stack.WaitServing(ctx, ready, p.done); err != nil {
		select {
		case <-p.done:
			return proc{}, 0, fmt.Errorf("%s %s exited before it was ready (%v): %s", name, strings.Join(args, " "), exit, rerun(cmd))
		default:
		}
		p.stop()
		return proc{}, 0, fmt.Errorf("%s (%s): %w", name, side, err)
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

// pair is every side's processes, serving.
type pair struct {
	greeter, web map[string]proc // by side
	ready        map[string]time.Duration
	idle         map[string]float64
}

func (b *bench) startAll() (pair, error) {
	p := pair{greeter: map[string]proc{}, web: map[string]proc{}, ready: map[string]time.Duration{}, idle: map[string]float64{}}
	for _, side := range sides {
		gAddr, wAddr := freeAddr(), freeAddr()
		gArgs := []string{"--server_address=" + gAddr, "--metrics_address="}
		wArgs := []string{"--server_address=" + wAddr, "--metrics_address="}
		if side == baseline {
			gArgs, wArgs = []string{"-addr=" + gAddr}, []string{"-addr=" + wAddr, "-greeter=" + gAddr}
		}
		g, took, err := b.start(side, "greeter", gArgs, nil, gAddr)
		if err != nil {
			return p, err
		}
		g.addr = gAddr
		p.greeter[side], p.ready[side+" greeter"] = g, took
		w, took, err := b.start(side, "web", wArgs, []string{k8s.EnvAddresses + "=" + greeterv1.ServiceName + "=" + gAddr}, "http://"+wAddr+"/health")
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
	if side != baseline && !plainClient {
		greeter := greeterv1.NewGreeterService(greeterv1.ServiceName, b.clients[side])
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
	return load.Get(c, url), c.CloseIdleConnections
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
	self := func(string) int { return os.Getpid() }
	for _, pa := range []path{
		{
			name: "greeter RPC", throughput: targetRPC,
			call: func(side string) (func(context.Context) error, func()) {
				return b.rpc(side, p.greeter[side].addr, false)
			},
			server: p.greeter, greeter: p.greeter, client: self,
		},
		{
			name: "greeter RPC, plain gRPC client on both sides", throughput: targetPlainClient, cpu: targetCPU,
			call: func(side string) (func(context.Context) error, func()) {
				return b.rpc(side, p.greeter[side].addr, true)
			},
			server: p.greeter, greeter: p.greeter, client: self,
		},
		{
			name: "web /greeter", throughput: targetWeb, overload: true,
			call:   func(side string) (func(context.Context) error, func()) { return web(p.web[side].addr) },
			server: p.web, greeter: p.greeter, client: func(side string) int { return p.web[side].cmd.Process.Pid },
		},
	} {
		if err := b.measure(ctx, pa); err != nil {
			return Report{}, err
		}
	}
	events, err := b.events(ctx)
	if err != nil {
		return Report{}, err
	}
	b.rows = append(b.rows, events...)
	for _, side := range []string{project, stock} {
		spread, err := b.spread(ctx, side)
		if err != nil {
			return Report{}, err
		}
		b.rows = append(b.rows, spread)
	}
	for _, what := range []string{"greeter", "web"} {
		for _, side := range []string{project, stock} {
			b.rows = append(b.rows,
				absolute(what+": start to ready", side, "ms", ms(p.ready[side+" "+what]), ms(p.ready[baseline+" "+what]), targetStart),
				absolute(what+": idle RSS", side, "MiB", p.idle[side+" "+what], p.idle[baseline+" "+what], targetIdleRSS),
			)
		}
		b.rows = append(b.rows, absolute(what+": binary size", project, "MiB", size(b.bin, project+"-"+what), size(b.bin, baseline+"-"+what), 0))
	}
	host, _ := os.Hostname()
	return Report{When: time.Now().UTC(), Machine: fmt.Sprintf("%s, %d CPUs, %s", host, runtime.NumCPU(), runtime.Version()),
		Rounds: b.cfg.Rounds, Rows: b.rows}, nil
}

// path is one way to the greeter that the bench loads.
type path struct {
	name string
	// call is the request it repeats, on a side, and what ends it.
	call func(side string) (func(context.Context) error, func())
	// server is whose memory is measured; greeter, whose CPU; client, the
	// process whose gRPC connections to the greeter are counted.
	server, greeter map[string]proc
	client          func(side string) int
	// throughput bounds the ratio at saturation (at least), cpu the
	// greeter's CPU per request at the fixed rate (at most; 0: none).
	throughput, cpu float64
	// overload adds the rows of an open loop at overloadFactor times the
	// baseline's throughput.
	overload bool
}

// overloadFactor times the baseline's throughput at saturation is offered
// in the overload rows, with at most overloadOpen requests open.
const (
	overloadFactor = 2
	overloadOpen   = 1000
)

// measure loads the path on every side, alternating them round by round
// (each round in another order), at saturation and then at a fixed rate,
// half the baseline's median throughput, and adds its rows.
func (b *bench) measure(ctx context.Context, pa path) error {
	// Per side, one value per round.
	sat, satCPU := map[string][]float64{}, map[string][]float64{}
	conns, loaded := map[string]int{}, map[string]float64{}
	for round := range b.cfg.Rounds {
		for _, side := range rotate(sides, round) {
			do, done := pa.call(side)
			stopSampling, sampled := make(chan struct{}), make(chan struct{})
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
						loaded[side] = max(loaded[side], pa.server[side].rssMiB())
					case <-stopSampling:
						return
					}
				}
			}()
			cpuBefore := pa.greeter[side].cpu()
			r := load.Run(ctx, load.Options{Workers: b.cfg.Workers, Duration: b.cfg.Saturation}, do)
			used := pa.greeter[side].cpu() - cpuBefore
			close(stopSampling)
			<-sampled
			done()
			if r.Errors > 0 {
				return fmt.Errorf("%s, %s: %v", pa.name, side, r)
			}
			sat[side] = append(sat[side], r.Throughput)
			satCPU[side] = append(satCPU[side], perRequest(used, r.Requests))
		}
	}
	rate := median(sat[baseline]) / 2
	p50, p99, cpu, frontCPU := map[string][]float64{}, map[string][]float64{}, map[string][]float64{}, map[string][]float64{}
	// On the web path, the frontend's own CPU too: it is most of the path's
	// cost.
	frontend := pa.server[project].cmd != pa.greeter[project].cmd
	for round := range b.cfg.Rounds {
		for _, side := range rotate(sides, round) {
			do, done := pa.call(side)
			cpuBefore, frontBefore := pa.greeter[side].cpu(), pa.server[side].cpu()
			r := load.Run(ctx, load.Options{Rate: rate, Workers: b.cfg.Workers * 4, Duration: b.cfg.Fixed}, do)
			served := r.Requests - r.Errors
			cpu[side] = append(cpu[side], perRequest(pa.greeter[side].cpu()-cpuBefore, served))
			frontCPU[side] = append(frontCPU[side], perRequest(pa.server[side].cpu()-frontBefore, served))
			p50[side], p99[side] = append(p50[side], ms(r.P50)), append(p99[side], ms(r.P99))
			done()
		}
	}
	if pa.overload {
		b.overload(ctx, pa, median(sat[baseline]))
	}
	for _, side := range []string{project, stock} {
		// At saturation each side's cost per request also depends on the
		// rate it reached (a busier server writes more replies per system
		// call): that row is only shown; the target is read at the fixed
		// rate, where both sides serve the same load.
		b.rows = append(b.rows,
			paired(pa.name+": throughput at saturation", side, "req/s", sat, atLeast(pa.throughput)),
			paired(fmt.Sprintf("%s: p50 at %.0f req/s", pa.name, rate), side, "ms", p50, nil),
			paired(fmt.Sprintf("%s: p99 at %.0f req/s", pa.name, rate), side, "ms", p99, atMost(targetP99)),
			single(pa.name+": gRPC connections opened to the greeter under load", side, "conns", float64(conns[side]), float64(conns[baseline])),
			single(pa.name+": server RSS under load (most seen)", side, "MiB", loaded[side], loaded[baseline]),
			paired(pa.name+": greeter CPU per request at saturation", side, "µs", satCPU, nil),
			paired(fmt.Sprintf("%s: greeter CPU per request at %.0f req/s", pa.name, rate), side, "µs", cpu, atMost(pa.cpu)),
		)
		if frontend {
			b.rows = append(b.rows, paired(fmt.Sprintf("%s: web CPU per request at %.0f req/s", pa.name, rate), side, "µs", frontCPU, nil))
		}
	}
	return nil
}

// overload offers overloadFactor times capacity on every side, open loop,
// and adds the rows: the served requests' p99 and rate, and how long the
// refused ones took. The baseline refuses nothing: its row's baseline is
// its served p99, the wait of every request past its capacity.
func (b *bench) overload(ctx context.Context, pa path, capacity float64) {
	served, refused, rate := map[string][]float64{}, map[string][]float64{}, map[string][]float64{}
	for round := range b.cfg.Rounds {
		for _, side := range rotate(sides, round) {
			do, done := pa.call(side)
			r := load.Run(ctx, load.Options{Rate: overloadFactor * capacity, Workers: overloadOpen, Duration: b.cfg.Fixed}, do)
			done()
			served[side], rate[side] = append(served[side], ms(r.P99)), append(rate[side], r.Throughput)
			refused[side] = append(refused[side], ms(r.RefusedP99))
			if side == baseline {
				refused[side][len(refused[side])-1] = ms(r.P99)
			}
		}
	}
	at := fmt.Sprintf("at %dx the baseline's capacity (%.0f req/s)", overloadFactor, overloadFactor*capacity)
	for _, side := range []string{project, stock} {
		b.rows = append(b.rows,
			paired(pa.name+": served p99 "+at, side, "ms", served, nil),
			paired(pa.name+": served "+at, side, "req/s", rate, nil),
			paired(pa.name+": refusal p99 "+at+" (baseline: its served p99, it refuses none)", side, "ms", refused, nil),
		)
	}
}

// rotate is the sides in the order of a round: each goes first in turn.
func rotate(s []string, round int) []string {
	i := round % len(s)
	return append(append([]string{}, s[i:]...), s[:i]...)
}

func median(v []float64) float64 {
	s := slices.Sorted(slices.Values(v))
	if len(s) == 0 {
		return 0
	}
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

// target is a row's bound on its ratio, or nil for none.
type target struct {
	value   float64
	atLeast bool
}

func atLeast(v float64) *target { return bound(v, true) }
func atMost(v float64) *target  { return bound(v, false) }

func bound(v float64, least bool) *target {
	if v == 0 {
		return nil
	}
	return &target{v, least}
}

// paired is a row of a measure taken once per round on every side: each
// side's median, and the median and range of the rounds' ratios. Only the
// project's side has the target.
func paired(measure, side, unit string, v map[string][]float64, t *target) Row {
	ratios := make([]float64, len(v[side]))
	for i := range ratios {
		ratios[i] = v[side][i] / v[baseline][i]
	}
	r := Row{Measure: measure, Paths: sideLabel[side], Project: median(v[side]), Baseline: median(v[baseline]), Unit: unit,
		Ratio: median(ratios), Low: slices.Min(ratios), High: slices.Max(ratios), Pairs: len(ratios)}
	if t != nil && side == project {
		r.Target, r.AtLeast = t.value, t.atLeast
	}
	return r
}

// single is a row of a measure taken once per side.
func single(measure, side, unit string, value, base float64) Row {
	ratio := value / base
	return Row{Measure: measure, Paths: sideLabel[side], Project: value, Baseline: base, Unit: unit, Ratio: ratio, Low: ratio, High: ratio, Pairs: 1}
}

// absolute is a single row whose target bounds the project's value itself.
func absolute(measure, side, unit string, value, base, limit float64) Row {
	r := single(measure, side, unit, value, base)
	if side == project && limit != 0 {
		r.Target, r.Absolute = limit, true
	}
	return r
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

// perRequest is CPU time per request, in microseconds.
func perRequest(cpu time.Duration, requests int) float64 {
	return float64(cpu.Microseconds()) / float64(max(requests, 1))
}

// spreadReplicas is how many greeters the spread row runs per side.
const spreadReplicas = 3

// spread gives the side's client and the baseline's the addresses of three
// greeters, as a headless Service's name resolves to three pods, and
// measures at saturation how much of the work the busiest one did (by CPU
// time, which needs no counter in the baseline): the project's client
// balances round robin, go-micro's picks a node at random per call, gRPC's
// default (pick_first) sends everything to one.
func (b *bench) spread(ctx context.Context, side string) (Row, error) {
	share := map[string]float64{}
	for _, s := range []string{side, baseline} {
		var greeters []proc
		var addrs []string
		defer func() {
			for _, g := range greeters {
				g.stop()
			}
		}()
		for range spreadReplicas {
			addr := freeAddr()
			args := []string{"--server_address=" + addr, "--metrics_address="}
			if s == baseline {
				args = []string{"-addr=" + addr}
			}
			g, _, err := b.start(s, "greeter", args, nil, addr)
			if err != nil {
				return Row{}, err
			}
			greeters, addrs = append(greeters, g), append(addrs, addr)
		}
		do, done := b.rpcAll(s, addrs)
		var before []time.Duration
		for _, g := range greeters {
			before = append(before, g.cpu())
		}
		r := load.Run(ctx, load.Options{Workers: b.cfg.Workers, Duration: b.cfg.Saturation}, do)
		done()
		if r.Errors > 0 {
			return Row{}, fmt.Errorf("spread, %s: %v", s, r)
		}
		var total, busiest time.Duration
		for i, g := range greeters {
			used := g.cpu() - before[i]
			total, busiest = total+used, max(busiest, used)
		}
		share[s] = 100 * busiest.Seconds() / total.Seconds()
	}
	return absolute(fmt.Sprintf("greeter RPC over %d replicas: the busiest one's share of their CPU time", spreadReplicas),
		side, "%", share[side], share[baseline], targetSpread), nil
}

// rpcAll is the call of the spread row: each side's client given every
// address for one name.
func (b *bench) rpcAll(side string, addrs []string) (func(context.Context) error, func()) {
	req := &greeterv1.HelloRequest{Name: "bench"}
	if side != baseline {
		// A selector that gives the three as one service's nodes, as
		// the static selector gives the addresses a name is pinned to:
		// each client balances over the nodes a selector gives.
		svc := &registry.Service{Name: greeterv1.ServiceName}
		for i, a := range addrs {
			svc.Nodes = append(svc.Nodes, &registry.Node{Id: strconv.Itoa(i), Address: a})
		}
		c := k8s.NewClient(client.Selector(nodesSelector{svc}))
		if side == stock {
			c = goMicroClient(nodesSelector{svc})
		}
		greeter := greeterv1.NewGreeterService(greeterv1.ServiceName, c)
		return func(ctx context.Context) error {
			_, err := greeter.Hello(ctx, req)
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

// nodesSelector gives one service's nodes to the select options'
// strategy, round robin by default, as go-micro's selectors do.
type nodesSelector struct{ svc *registry.Service }

func (s nodesSelector) Select(_ string, opts ...selector.SelectOption) (selector.Next, error) {
	o := selector.SelectOptions{Strategy: selector.RoundRobin}
	for _, opt := range opts {
		opt(&o)
	}
	return o.Strategy([]*registry.Service{s.svc}), nil
}

func (nodesSelector) Init(...selector.Option) error      { return nil }
func (nodesSelector) Options() selector.Options          { return selector.Options{} }
func (nodesSelector) Mark(string, *registry.Node, error) {}
func (nodesSelector) Reset(string)                       {}
func (nodesSelector) Close() error                       { return nil }
func (nodesSelector) String() string                     { return "nodes" }

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
	fmt.Fprintf(&s, ". Each ratio is project/baseline: the median of %d rounds' ratios, and their range (with 5 rounds, a 94%% interval of the median).\n\n", r.Rounds)
	s.WriteString("| measure | project's paths | project | baseline | ratio (range) | target |\n|---|---|---:|---:|---:|---|\n")
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
		ratio := fmt.Sprintf("%.2f", row.Ratio)
		if row.Pairs > 1 {
			ratio += fmt.Sprintf(" (%.2f-%.2f)", row.Low, row.High)
		}
		fmt.Fprintf(&s, "| %s | %s | %.1f %s | %.1f %s | %s | %s |\n", row.Measure, row.Paths, row.Project, row.Unit, row.Baseline, row.Unit, ratio, target)
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

// events weighs publishing: the project's greeter with its events published
// to NATS against the same greeter with events off (the rows' baseline),
// alternated round by round, at saturation and at half the second's
// throughput; and what the first published and dropped meanwhile.
func (b *bench) events(ctx context.Context) ([]Row, error) {
	dir, err := os.MkdirTemp("", "bench-nats-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	natsAddr, monitor := freeAddr(), freeAddr()
	_, natsPort, _ := net.SplitHostPort(natsAddr)
	_, monitorPort, _ := net.SplitHostPort(monitor)
	port, _ := strconv.Atoi(natsPort)
	mport, _ := strconv.Atoi(monitorPort)
	nats := exec.Command(filepath.Join(b.bin, stack.NATSName), stack.NATSArgs(port, mport, dir)...)
	if err := nats.Start(); err != nil {
		return nil, err
	}
	natsDone := make(chan struct{})
	go func() { _ = nats.Wait(); close(natsDone) }()
	defer stack.StopProcess(nats, natsDone)
	waitCtx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := stack.WaitServing(waitCtx, "http://"+monitor+"/healthz", natsDone); err != nil {
		return nil, fmt.Errorf("nats: %w", err)
	}

	// "project" publishes, "baseline" does not: both are the project's.
	greeters := map[string]proc{}
	metrics := freeAddr()
	for side, env := range map[string][]string{
		project:  {"MICRO_EVENTS_ADDRESS=nats://" + natsAddr},
		baseline: {"MICRO_EVENTS_ADDRESS="},
	} {
		addr, args := freeAddr(), []string{"--metrics_address="}
		if side == project {
			args = []string{"--metrics_address=" + metrics}
		}
		// Started as the project's side, then given its own events setting.
		g, _, err := b.start(project, "greeter", append(args, "--server_address="+addr), env, addr)
		if err != nil {
			return nil, err
		}
		defer g.stop()
		g.addr = addr
		greeters[side] = g
	}
	eventSides := []string{baseline, project}
	sat, p99 := map[string][]float64{}, map[string][]float64{}
	greetings := 0 // answered by the publishing greeter
	for round := range b.cfg.Rounds {
		for _, side := range rotate(eventSides, round) {
			do, done := b.rpc(project, greeters[side].addr, false)
			r := load.Run(ctx, load.Options{Workers: b.cfg.Workers, Duration: b.cfg.Saturation}, do)
			done()
			if r.Errors > 0 {
				return nil, fmt.Errorf("events, %s: %v", side, r)
			}
			sat[side] = append(sat[side], r.Throughput)
			if side == project {
				greetings += r.Requests
			}
		}
	}
	rate := median(sat[baseline]) / 2
	for round := range b.cfg.Rounds {
		for _, side := range rotate(eventSides, round) {
			do, done := b.rpc(project, greeters[side].addr, false)
			r := load.Run(ctx, load.Options{Rate: rate, Workers: b.cfg.Workers * 4, Duration: b.cfg.Fixed}, do)
			done()
			p99[side] = append(p99[side], ms(r.P99))
			if side == project {
				greetings += r.Requests - r.Errors
			}
		}
	}
	// What the publisher did with every event of the runs, once it has
	// had a moment to catch up.
	time.Sleep(2 * time.Second)
	counts, err := scrape("http://" + metrics + "/metrics")
	if err != nil {
		return nil, err
	}
	name := "greeter RPC, every greeting's event published to NATS (baseline: the same greeter, events off)"
	return []Row{
		paired(name+": throughput at saturation", project, "req/s", sat, nil),
		paired(fmt.Sprintf("%s: p99 at %.0f req/s", name, rate), project, "ms", p99, nil),
		single(name+": events stored by NATS (baseline: greetings answered)", project, "events", counts["events_published_total"], float64(greetings)),
		single(name+": events dropped, buffer full (baseline: greetings answered)", project, "events", counts["events_dropped_total"], float64(greetings)),
	}, nil
}

// scrape sums each metric's series in a Prometheus text page.
func scrape(url string) (map[string]float64, error) {
	rsp, err := http.Get(url)
	if err != nil {
		return nil, err
	}
	defer rsp.Body.Close()
	body, err := io.ReadAll(rsp.Body)
	if err != nil {
		return nil, err
	}
	sums := map[string]float64{}
	for _, line := range strings.Split(string(body), "\n") {
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		name, rest, _ := strings.Cut(line, " ")
		name, _, _ = strings.Cut(name, "{")
		if i := strings.LastIndexByte(line, ' '); i > 0 {
			rest = line[i+1:]
		}
		v, _ := strconv.ParseFloat(rest, 64)
		sums[name] += v
	}
	return sums, nil
}
