package e2e

import (
	"regexp"
	"strconv"
	"strings"
	"testing"
)

// metric reads one sample of a Prometheus text exposition: the line that
// starts with name and has every one of labels.
func metric(t *testing.T, url, name string, labels ...string) float64 {
	t.Helper()
	a := get(t, "GET", url)
	if a.status != 200 {
		t.Fatalf("GET %s: %d", url, a.status)
	}
	re := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(name) + `(\{[^}]*\})? (\S+)$`)
	for _, m := range re.FindAllStringSubmatch(a.body, -1) {
		all := true
		for _, l := range labels {
			all = all && strings.Contains(m[1], l)
		}
		if all {
			v, err := strconv.ParseFloat(m[2], 64)
			if err != nil {
				t.Fatal(err)
			}
			return v
		}
	}
	return 0
}

func TestMetricsCountRealRequests(t *testing.T) {
	s := startStack(t)
	web, greeter := s.Ports.MetricsURL("web"), s.Ports.MetricsURL("greeter")
	for _, q := range []string{"name=a", "name=b", "name=c", "name="} {
		get(t, "GET", s.Ports.URL()+"/greeter?"+q)
	}
	get(t, "GET", s.Ports.URL()+"/nope")

	checks := []struct {
		url, name string
		labels    []string
		want      float64
	}{
		{greeter, "rpc_server_requests_total", []string{`method="Greeter.Hello"`, `code="OK"`}, 3},
		{greeter, "rpc_server_requests_total", []string{`method="Greeter.Hello"`, `code="InvalidArgument"`}, 1},
		{greeter, "rpc_server_duration_seconds_count", []string{`method="Greeter.Hello"`}, 4},
		{web, "http_server_requests_total", []string{`route="GET /greeter"`, `code="200"`}, 3},
		{web, "http_server_requests_total", []string{`route="GET /greeter"`, `code="400"`}, 1},
		{web, "http_server_requests_total", []string{`route="unmatched"`, `code="404"`}, 1},
	}
	for _, c := range checks {
		if got := metric(t, c.url, c.name, c.labels...); got != c.want {
			t.Errorf("%s%v = %v, want %v", c.name, c.labels, got, c.want)
		}
	}
	for _, url := range []string{web, greeter} {
		if metric(t, url, "go_goroutines") == 0 || metric(t, url, "process_resident_memory_bytes") == 0 {
			t.Errorf("%s lacks the Go runtime and process metrics", url)
		}
	}
}
