package e2e

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptrace"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/micro/kubernetes/pkg/k8s"
	"github.com/micro/kubernetes/pkg/k8s/httpapi"
	greeterv1 "github.com/micro/kubernetes/proto/greeter/v1"
)

// shutdownBound is how long a binary may take to exit after SIGTERM: its
// graceful stop, plus slack for a loaded machine.
const shutdownBound = k8s.ShutdownTimeout + 2*time.Second

// outcome of one request: its status (0 when it got no response) and error.
type outcome struct {
	status int
	err    error
	took   time.Duration
	sentAt time.Time
	reused bool // on a connection that had served a request before
}

// hammer sends GET url from workers until stop closes, and returns every
// outcome. Each request is bounded by limit.
func hammer(url string, workers int, limit time.Duration, stop <-chan struct{}) []outcome {
	client := &http.Client{Timeout: limit}
	var mu sync.Mutex
	var all []outcome
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				start := time.Now()
				o := outcome{sentAt: start}
				trace := &httptrace.ClientTrace{GotConn: func(i httptrace.GotConnInfo) { o.reused = i.Reused }}
				req, err := http.NewRequestWithContext(httptrace.WithClientTrace(context.Background(), trace), "GET", url, nil)
				if err != nil {
					panic(err)
				}
				rsp, err := client.Do(req)
				if err == nil {
					o.status = rsp.StatusCode
					rsp.Body.Close()
				}
				o.err, o.took = err, time.Since(start)
				mu.Lock()
				all = append(all, o)
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	return all
}

func count(outcomes []outcome) map[string]int {
	c := map[string]int{}
	for _, o := range outcomes {
		if o.err != nil {
			c["error"]++
		} else {
			c[fmt.Sprint(o.status)]++
		}
	}
	return c
}

// refused says the request never reached a server: the listener was closed.
func refused(err error) bool {
	return errors.Is(err, syscall.ECONNREFUSED)
}

// notAccepted says the request failed on a connection the server never
// accepted: refused, or a new connection still in the kernel's accept queue
// when the listener closed (reset, or closed before any response). Go's
// client retries a GET that fails on a reused connection by itself.
func notAccepted(o outcome) bool {
	return refused(o.err) || (!o.reused && (errors.Is(o.err, io.EOF) || errors.Is(o.err, syscall.ECONNRESET)))
}

func TestWebShutdownFinishesInFlightRequests(t *testing.T) {
	s := startStack(t)
	// Freeze the greeter so that requests are in flight, slow, inside the web
	// frontend when it gets SIGTERM; thaw it while the frontend drains.
	if err := s.Freeze("greeter"); err != nil {
		t.Fatal(err)
	}
	const inFlight = 8
	results := make(chan outcome, inFlight)
	for range inFlight {
		go func() {
			start := time.Now()
			rsp, err := (&http.Client{Timeout: 10 * time.Second}).Get(s.Ports.URL() + "/greeter?name=inflight")
			o := outcome{err: err, took: time.Since(start)}
			if err == nil {
				o.status = rsp.StatusCode
				rsp.Body.Close()
			}
			results <- o
		}()
	}
	time.Sleep(300 * time.Millisecond) // the requests reach the frontend
	stopped := time.Now()
	if err := s.Signal("web", syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	time.Sleep(300 * time.Millisecond)
	if err := s.Signal("greeter", syscall.SIGCONT); err != nil {
		t.Fatal(err)
	}
	for range inFlight {
		if o := <-results; o.err != nil || o.status != http.StatusOK {
			t.Errorf("an in-flight request got %d, %v; want 200", o.status, o.err)
		}
	}
	if err := s.Wait("web", shutdownBound); err != nil {
		t.Fatal(err)
	}
	t.Logf("web exited %s after SIGTERM, code %d, with %d slow requests finished", time.Since(stopped).Round(time.Millisecond), s.ExitCode("web"), inFlight)
	if code := s.ExitCode("web"); code != 0 {
		t.Errorf("web exited with %d after SIGTERM, want 0", code)
	}
	if _, err := http.Get(s.Ports.URL() + "/health"); !refused(err) {
		t.Errorf("after stopping, web still accepts connections (%v)", err)
	}
}

func TestWebShutdownUnderLoadLosesNothing(t *testing.T) {
	s := startStack(t)
	stop := make(chan struct{})
	done := make(chan []outcome)
	go func() { done <- hammer(s.Ports.URL()+"/greeter?name=load", 8, 5*time.Second, stop) }()
	time.Sleep(time.Second)
	stopped := time.Now()
	if err := s.Signal("web", syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := s.Wait("web", shutdownBound); err != nil {
		t.Fatal(err)
	}
	took := time.Since(stopped)
	time.Sleep(200 * time.Millisecond)
	close(stop)
	outcomes := <-done
	t.Logf("outcomes %v; web exited %s after SIGTERM", count(outcomes), took.Round(time.Millisecond))
	for _, o := range outcomes {
		// Before SIGTERM every request succeeds; after it, the only failure
		// allowed is a refused connection: a request never accepted.
		if o.err == nil && o.status != http.StatusOK {
			t.Errorf("a request got %d", o.status)
		}
		if o.err != nil && !notAccepted(o) {
			t.Errorf("a request was lost: %v (reused connection: %v)", o.err, o.reused)
		}
	}
	if c := count(outcomes); c["200"] == 0 {
		t.Fatal("no request succeeded")
	}
	if code := s.ExitCode("web"); code != 0 {
		t.Errorf("web exited with %d after SIGTERM, want 0", code)
	}
}

func TestGreeterShutdownUnderLoadLosesNothing(t *testing.T) {
	s := startStack(t)
	cc, err := grpc.NewClient(s.Ports.GreeterAddress(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()

	stop := make(chan struct{})
	var mu sync.Mutex
	codesSeen := map[codes.Code]int{}
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				rsp := new(greeterv1.HelloResponse)
				err := cc.Invoke(ctx, "/greeter.v1.Greeter/Hello", &greeterv1.HelloRequest{Name: "load"}, rsp)
				cancel()
				mu.Lock()
				codesSeen[status.Code(err)]++
				mu.Unlock()
				if err == nil && rsp.Message != "Hello load" {
					t.Errorf("answer %q", rsp.Message)
				}
			}
		})
	}
	time.Sleep(time.Second)
	stopped := time.Now()
	if err := s.Signal("greeter", syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := s.Wait("greeter", shutdownBound); err != nil {
		t.Fatal(err)
	}
	took := time.Since(stopped)
	close(stop)
	wg.Wait()
	t.Logf("codes %v; greeter exited %s after SIGTERM", codesSeen, took.Round(time.Millisecond))
	for code, n := range codesSeen {
		// Unavailable: refused or told to go away before the call started.
		if code != codes.OK && code != codes.Unavailable {
			t.Errorf("%d calls ended %v", n, code)
		}
	}
	if codesSeen[codes.OK] == 0 {
		t.Fatal("no call succeeded")
	}
	if code := s.ExitCode("greeter"); code != 0 {
		t.Errorf("greeter exited with %d after SIGTERM, want 0", code)
	}
}

func TestGreeterKilledUnderLoadThenBack(t *testing.T) {
	s := startStack(t)
	stop := make(chan struct{})
	done := make(chan []outcome)
	go func() { done <- hammer(s.Ports.URL()+"/greeter?name=fault", 8, 10*time.Second, stop) }()

	time.Sleep(500 * time.Millisecond)
	killed := time.Now()
	if err := s.Signal("greeter", syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	if err := s.Wait("greeter", 5*time.Second); err != nil {
		t.Fatal(err)
	}
	time.Sleep(time.Second)
	restarted := time.Now()
	if err := s.Restart("greeter"); err != nil {
		t.Fatal(err)
	}
	time.Sleep(3 * time.Second)
	close(stop)
	outcomes := <-done

	t.Logf("outcomes %v", count(outcomes))
	var recovered time.Time
	for _, o := range outcomes {
		switch {
		case o.err != nil:
			t.Errorf("the web frontend failed to answer: %v", o.err)
		case o.status == http.StatusInternalServerError:
			t.Error("the web frontend answered 500")
		case o.status != http.StatusOK && o.status != http.StatusServiceUnavailable:
			t.Errorf("the web frontend answered %d, want 200 or 503", o.status)
		}
		if o.took > webTimeout+slack {
			t.Errorf("a request took %s, past the %s deadline", o.took, webTimeout)
		}
		if o.sentAt.After(killed) && o.status == http.StatusOK && (recovered.IsZero() || o.sentAt.Before(recovered)) {
			recovered = o.sentAt
		}
	}
	if recovered.IsZero() {
		t.Fatal("the web frontend never recovered")
	}
	took := recovered.Sub(restarted)
	t.Logf("first 200 %s after the greeter restarted", took.Round(time.Millisecond))
	if took > 2*time.Second {
		t.Errorf("the web frontend took %s to recover, want at most 2s", took)
	}
}

func TestWebStartedBeforeTheGreeter(t *testing.T) {
	s := startStack(t)
	if err := s.Signal("greeter", syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	if err := s.Wait("greeter", 5*time.Second); err != nil {
		t.Fatal(err)
	}
	if err := s.Restart("web"); err != nil {
		t.Fatal(err)
	}
	url := s.Ports.URL() + "/greeter?name=late"
	var a answer
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		if rsp, err := http.Get(url); err == nil {
			rsp.Body.Close()
			a.status = rsp.StatusCode
			break
		}
	}
	if a.status != http.StatusServiceUnavailable {
		t.Fatalf("without a greeter: %d, want 503", a.status)
	}
	if err := s.Restart("greeter"); err != nil {
		t.Fatal(err)
	}
	started := time.Now()
	for time.Since(started) < 5*time.Second {
		if a = get(t, "GET", url); a.status == http.StatusOK {
			t.Logf("200 %s after the greeter started", time.Since(started).Round(time.Millisecond))
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("the web frontend, started first, never greeted: %d %s", a.status, a.body)
}

// A client that sends its headers a byte at a time is cut off by the
// server's header deadline instead of holding a connection forever.
func TestSlowHeadersAreCutOff(t *testing.T) {
	s := startStack(t)
	for _, c := range []struct {
		what, addr string
		limit      time.Duration // the server's header timeout, plus slack
	}{
		{"web", strings.TrimPrefix(s.Ports.URL(), "http://"), 5*time.Second + 3*time.Second},
		{"health sidecar", strings.TrimSuffix(strings.TrimPrefix(s.Ports.HealthURL(), "http://"), "/health"), sidecarTimeout + 3*time.Second},
	} {
		t.Run(c.what, func(t *testing.T) {
			conn, err := net.Dial("tcp", c.addr)
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			closed := make(chan time.Time, 1)
			go func() {
				buf := make([]byte, 512)
				for {
					if _, err := conn.Read(buf); err != nil {
						closed <- time.Now()
						return
					}
				}
			}()
			start := time.Now()
			request := "GET /health HTTP/1.1\r\nHost: x\r\nX-Slow: " + strings.Repeat("a", 200)
			for i := 0; i < len(request); i++ {
				select {
				case at := <-closed:
					t.Logf("cut off after %s and %d bytes", at.Sub(start).Round(time.Millisecond), i)
					return
				case <-time.After(250 * time.Millisecond):
				}
				if time.Since(start) > c.limit {
					t.Fatalf("still connected after %s", c.limit)
				}
				if _, err := conn.Write([]byte{request[i]}); err != nil {
					t.Logf("cut off after %s and %d bytes (write: %v)", time.Since(start).Round(time.Millisecond), i, err)
					return
				}
			}
			t.Fatal("the whole slow request was accepted")
		})
	}
}

func TestOversizedInputs(t *testing.T) {
	s := startStack(t)
	t.Run("a body over the limit gets 413", func(t *testing.T) {
		for _, method := range []string{"POST", "GET"} {
			req, _ := http.NewRequest(method, s.Ports.URL()+"/greeter?name=x", strings.NewReader(strings.Repeat("x", 1<<20)))
			rsp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			rsp.Body.Close()
			if rsp.StatusCode != http.StatusRequestEntityTooLarge || rsp.Header.Get("Content-Type") != "application/json" {
				t.Errorf("%s with 1 MiB: %d %s, want 413 JSON", method, rsp.StatusCode, rsp.Header.Get("Content-Type"))
			}
		}
	})
	t.Run("a huge name gets 400", func(t *testing.T) {
		a := get(t, "GET", s.Ports.URL()+"/greeter?name="+strings.Repeat("x", 60_000))
		if a.status != http.StatusBadRequest || !strings.Contains(a.body, "at most 100 characters") {
			t.Errorf("60,000 characters: %d %.100s, want 400", a.status, a.body)
		}
	})
	t.Run("a name past the header limit gets 431", func(t *testing.T) {
		// net/http allows 4 KiB over MaxHeaderBytes before it refuses.
		a := get(t, "GET", s.Ports.URL()+"/greeter?name="+strings.Repeat("x", httpapi.MaxHeaderBytes+8<<10))
		if a.status != http.StatusRequestHeaderFieldsTooLarge {
			t.Errorf("over %d bytes of headers: %d, want 431", httpapi.MaxHeaderBytes, a.status)
		}
	})
	t.Run("gRPC: a huge name gets InvalidArgument, a huge message ResourceExhausted", func(t *testing.T) {
		cc, err := grpc.NewClient(s.Ports.GreeterAddress(), grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			t.Fatal(err)
		}
		defer cc.Close()
		for _, c := range []struct {
			size int
			want codes.Code
		}{{100_000, codes.InvalidArgument}, {k8s.MaxMessageSize + 1, codes.ResourceExhausted}} {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			err := cc.Invoke(ctx, "/greeter.v1.Greeter/Hello", &greeterv1.HelloRequest{Name: strings.Repeat("x", c.size)}, new(greeterv1.HelloResponse))
			cancel()
			if status.Code(err) != c.want {
				t.Errorf("a name of %d bytes: %v, want %v", c.size, err, c.want)
			}
		}
	})
}
