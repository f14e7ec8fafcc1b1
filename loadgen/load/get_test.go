package load

import (
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"
)

// Get tells a refusal (503 with Retry-After) from other failures, and
// reuses its connection: twenty requests, one after another, open one.
func TestGetTellsRefusalsAndReusesConnections(t *testing.T) {
	var opened atomic.Int32
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Query().Get("answer") {
		case "refused":
			w.Header().Set("Retry-After", "1")
			w.WriteHeader(http.StatusServiceUnavailable)
		case "unavailable":
			w.WriteHeader(http.StatusServiceUnavailable)
		case "failed":
			w.WriteHeader(http.StatusInternalServerError)
		}
		_, _ = w.Write([]byte(`{"message":"a body to read to the end"}`))
	}))
	srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			opened.Add(1)
		}
	}
	srv.Start()
	defer srv.Close()
	c := &http.Client{Timeout: 5 * time.Second}
	for _, tc := range []struct {
		answer  string
		ok      bool
		refused bool
	}{{"", true, false}, {"refused", false, true}, {"unavailable", false, false}, {"failed", false, false}} {
		err := Get(c, srv.URL+"?answer="+tc.answer)(t.Context())
		if (err == nil) != tc.ok || errors.Is(err, ErrRefused) != tc.refused {
			t.Errorf("answer %q: %v, want ok %v, refused %v", tc.answer, err, tc.ok, tc.refused)
		}
	}
	for range 20 {
		if err := Get(c, srv.URL)(t.Context()); err != nil {
			t.Fatal(err)
		}
	}
	if n := opened.Load(); n != 1 {
		t.Errorf("%d connections opened for 24 requests one after another, want 1", n)
	}
}
