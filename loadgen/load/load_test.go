package load

import (
	"context"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"
)

func get(url string) func(context.Context) error {
	return Get(&http.Client{Timeout: 5 * time.Second}, url)
}

func TestFixedRateHoldsTheRate(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	defer srv.Close()
	r := Run(context.Background(), Options{Rate: 200, Workers: 4, Duration: time.Second}, get(srv.URL))
	t.Log(r)
	if r.Errors != 0 || r.Requests < 190 || r.Requests > 210 {
		t.Fatalf("at 200/s for 1s: %v", r)
	}
	if r.P50 <= 0 || r.P50 > r.P90 || r.P90 > r.P99 || r.P99 > r.Max {
		t.Fatalf("percentiles out of order: %v", r)
	}
}

func TestSaturationStopsAtTheRequestCount(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	defer srv.Close()
	r := Run(context.Background(), Options{Workers: 8, Requests: 500}, get(srv.URL))
	if r.Requests != 500 || r.Errors != 0 || r.Throughput <= 0 {
		t.Fatalf("500 requests at saturation: %v", r)
	}
}

func TestErrorsAreCountedByKind(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusServiceUnavailable)
	}))
	defer srv.Close()
	r := Run(context.Background(), Options{Workers: 2, Requests: 20}, get(srv.URL))
	if r.Errors != 20 || r.ErrorKinds["503 Service Unavailable"] != 20 || r.Throughput != 0 {
		t.Fatalf("20 failures: %v", r)
	}
}
