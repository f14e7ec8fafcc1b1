package probe

import (
	"context"
	"encoding/json"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"go-micro.dev/v6"

	"github.com/micro/kubernetes/pkg/k8s"
)

const timeout = 300 * time.Millisecond

func check(t *testing.T, address string) (int, Status, time.Duration) {
	t.Helper()
	svc := k8s.NewService("probe-client")
	srv := httptest.NewServer(Checker{Client: svc.Client(), Service: "target", Address: address, Timeout: timeout})
	defer srv.Close()

	start := time.Now()
	rsp, err := http.Get(srv.URL)
	took := time.Since(start)
	if err != nil {
		t.Fatalf("GET: %v", err)
	}
	defer rsp.Body.Close()
	var st Status
	if err := json.NewDecoder(rsp.Body).Decode(&st); err != nil {
		t.Fatalf("decoding body: %v", err)
	}
	return rsp.StatusCode, st, took
}

func TestHealthyService(t *testing.T) {
	target := k8s.NewService("target", micro.Address("127.0.0.1:0"))
	if err := target.Start(); err != nil {
		t.Fatalf("Start: %v", err)
	}
	t.Cleanup(func() { _ = target.Stop() })

	code, st, _ := check(t, target.Server().Options().Address)
	if code != http.StatusOK || st.Status != "ok" {
		t.Fatalf("got %d %+v, want 200 ok", code, st)
	}
}

func TestNothingListening(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()

	code, st, _ := check(t, addr)
	if code != http.StatusServiceUnavailable || !strings.Contains(st.Error, "refused") {
		t.Fatalf("got %d %+v, want 503 naming the refused connection", code, st)
	}
}

// A peer that accepts connections and never answers, as a frozen process does.
func TestSilentServiceIsCutOffAtTheTimeout(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	defer l.Close()
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go func() { <-ctx.Done(); c.Close() }()
		}
	}()

	code, st, took := check(t, l.Addr().String())
	if code != http.StatusServiceUnavailable || !strings.Contains(st.Error, "within") {
		t.Fatalf("got %d %+v, want 503 saying it timed out", code, st)
	}
	if took > timeout+time.Second {
		t.Fatalf("the check took %s, far past its %s timeout", took, timeout)
	}
}
