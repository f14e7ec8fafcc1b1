package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/micro/kubernetes/dev/stack"
)

// lockedBuffer collects the processes' output.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// A W3C trace context sent to the web frontend reaches the greeter through
// go-micro metadata: both log the request with its trace id, as JSON.
func TestTraceContextCrossesToTheGreeter(t *testing.T) {
	root, err := stack.Root(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	var out lockedBuffer
	s := startStackWith(t, filepath.Join(root, stack.ConfigFile), &out)

	const traceID = "4bf92f3577b34da6a3ce929d0e0e4736"
	req, _ := http.NewRequest("GET", s.Ports.URL()+"/greeter?name=traced", nil)
	req.Header.Set("traceparent", "00-"+traceID+"-00f067aa0ba902b7-01")
	rsp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	rsp.Body.Close()

	want := map[string]bool{"web": false, "greeter": false}
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline) && !(want["web"] && want["greeter"]); time.Sleep(50 * time.Millisecond) {
		for _, line := range strings.Split(out.String(), "\n") {
			name, record, ok := strings.Cut(line, " | ")
			var entry map[string]any
			if !ok || json.Unmarshal([]byte(record), &entry) != nil {
				continue
			}
			if entry["trace_id"] == traceID {
				want[strings.TrimSpace(name)] = true
			}
		}
	}
	for name, seen := range want {
		if !seen {
			t.Errorf("%s logged no JSON line with trace id %s", name, traceID)
		}
	}
}
