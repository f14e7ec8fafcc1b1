// Package frontend is the web frontend's HTTP surface: the HTML page at /,
// the JSON API at /greeter, /health for the kubelet, and embedded assets.
package frontend

import (
	"context"
	"embed"
	"encoding/json"
	"errors"
	"fmt"
	"html/template"
	"io/fs"
	"log/slog"
	"net/http"
	"net/url"
	"time"
	"unicode/utf8"

	"github.com/micro/kubernetes/pkg/k8s"
	"github.com/micro/kubernetes/pkg/k8s/httpapi"
	greeterv1 "github.com/micro/kubernetes/proto/greeter/v1"
)

//go:embed templates/index.html
var indexHTML string

//go:embed static
var static embed.FS

const (
	// DefaultTitle is the page's title when the configuration sets none.
	DefaultTitle   = "Micro on Kubernetes"
	maxTitleLength = 100
	// HealthPath answers 200 while the frontend serves: its probes' path.
	HealthPath = "/health"
	// DefaultGreeterTimeout is the deadline of a call to the greeter
	// unless --greeter_timeout says otherwise.
	DefaultGreeterTimeout = 2 * time.Second
	// countBudget is how long after a request's arrival its count may
	// come: a greeting goes without the count rather than wait for it, and
	// one already this slow does not ask. In the cluster the count takes a
	// few milliseconds; a stats service starved of CPU, given 500 ms, held
	// the web's median at 0.8 of its capacity at 483 ms (TestBurst).
	countBudget = 100 * time.Millisecond
	// maxBody bounds a request body: no route takes one.
	maxBody = 4 << 10
)

// securityHeaders go on every response: no inline script or style is allowed
// (the page has none), and the page may not be framed.
var securityHeaders = map[string]string{
	"Content-Security-Policy": "default-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'; object-src 'none'",
	"X-Content-Type-Options":  "nosniff",
	"X-Frame-Options":         "DENY",
	"Referrer-Policy":         "no-referrer",
}

// Config is the web frontend's part of the configuration file.
type Config struct {
	// Title is the page's title.
	Title string `json:"title"`
}

// ParseConfig reads the web frontend's part of a JSON configuration.
func ParseConfig(data []byte) (Config, error) {
	var root struct {
		Web Config `json:"web"`
	}
	if err := json.Unmarshal(data, &root); err != nil {
		return Config{}, fmt.Errorf("not JSON: %w", err)
	}
	c := root.Web
	switch {
	case c.Title == "":
		c.Title = DefaultTitle
	case !utf8.ValidString(c.Title) || utf8.RuneCountInString(c.Title) > maxTitleLength:
		return Config{}, fmt.Errorf("web.title must be valid UTF-8 of at most %d characters", maxTitleLength)
	}
	return c, nil
}

// server serves the page and the API, greeting through the greeter and
// counting through the stats.
type server struct {
	greeter greeterv1.GreeterService
	counter Counter
	timeout time.Duration
	config  func() Config
	page    *template.Template
	mux     *http.ServeMux
}

// A Counter says how many times a name has been greeted (the stats
// service, in web/counts.go).
type Counter interface {
	Count(ctx context.Context, name string) (uint64, error)
}

// An Option adds to the frontend.
type Option func(*server)

// WithCounts shows, under each greeting, how many times the name has been
// greeted, as c says.
func WithCounts(c Counter) Option { return func(s *server) { s.counter = c } }

// New returns the frontend's handler. Every call to the greeter is bounded
// by timeout; config is the current configuration (nil: the defaults).
func New(greeter greeterv1.GreeterService, timeout time.Duration, config func() Config, opts ...Option) http.Handler {
	if config == nil {
		config = func() Config { return Config{Title: DefaultTitle} }
	}
	f := &server{
		greeter: greeter,
		timeout: timeout,
		config:  config,
		page:    template.Must(template.New("index").Parse(indexHTML)),
		mux:     http.NewServeMux(),
	}
	for _, o := range opts {
		o(f)
	}
	f.mux.HandleFunc("GET /{$}", f.index)
	f.mux.HandleFunc("GET /greeter", f.greet)
	f.mux.HandleFunc("GET "+HealthPath, f.health)
	f.mux.HandleFunc("GET /static/{file}", f.asset)
	return withSecurityHeaders(httpapi.LimitBody(maxBody, httpapi.Router(f.mux)))
}

func withSecurityHeaders(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		for k, v := range securityHeaders {
			w.Header().Set(k, v)
		}
		next.ServeHTTP(w, r)
	})
}

// greet is the JSON API: GET /greeter?name=X answers {"message": "Hello X",
// "greeted": 3}, without "greeted" when the count could not be had.
func (f *server) greet(w http.ResponseWriter, r *http.Request) {
	name, err := nameFrom(r)
	if err == nil {
		var msg string
		if msg, err = f.hello(r.Context(), name); err == nil {
			httpapi.WriteJSON(w, http.StatusOK, greeting{Message: msg, Greeted: f.count(r.Context(), name)})
			return
		}
	}
	status, text := describe(err)
	httpapi.WriteError(w, status, text)
}

type greeting struct {
	Message string `json:"message"`
	// Greeted is how many greetings of the name the stats have counted.
	Greeted *uint64 `json:"greeted,omitempty"`
}

// pageData is what the template shows.
type pageData struct {
	Title, Name, Greeting, Error string
	// Greeted says the name's count: "Alice has been greeted 3 times".
	Greeted string
}

// index is the HTML page. Its form submits GET /?name=X, so it greets with
// or without JavaScript.
func (f *server) index(w http.ResponseWriter, r *http.Request) {
	data := pageData{Title: f.config().Title}
	status := http.StatusOK
	if r.URL.RawQuery != "" {
		name, err := nameFrom(r)
		data.Name = name
		if err == nil {
			if data.Greeting, err = f.hello(r.Context(), name); err == nil {
				if n := f.count(r.Context(), name); n != nil {
					data.Greeted = greetedText(name, *n)
				}
			}
		}
		if err != nil {
			status, data.Error = describe(err)
		}
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	httpapi.SetRetryAfter(w.Header(), status)
	w.WriteHeader(status)
	if err := f.page.Execute(w, data); err != nil {
		slog.Warn("rendering the page", "err", err)
	}
}

// asset serves one embedded file: no folder listings, and a JSON 404 for a
// name that is not one of them (valid or not).
func (f *server) asset(w http.ResponseWriter, r *http.Request) {
	name := "static/" + r.PathValue("file")
	if !fs.ValidPath(name) {
		httpapi.WriteError(w, http.StatusNotFound, "no such file")
		return
	}
	if info, err := fs.Stat(static, name); err != nil || info.IsDir() {
		httpapi.WriteError(w, http.StatusNotFound, "no such file")
		return
	}
	http.ServeFileFS(w, r, static, name)
}

func (f *server) health(w http.ResponseWriter, _ *http.Request) {
	httpapi.WriteJSON(w, http.StatusOK, map[string]string{"status": "ok"})
}

func (f *server) hello(ctx context.Context, name string) (string, error) {
	ctx, cancel := k8s.WithBudget(ctx, f.timeout)
	defer cancel()
	rsp, err := f.greeter.Hello(ctx, &greeterv1.HelloRequest{Name: name})
	if err != nil {
		return "", &httpapi.CallError{Service: greeterv1.ServiceName, Err: err, TimedOut: ctx.Err() != nil, Timeout: f.timeout}
	}
	return rsp.GetMessage(), nil
}

// count is the count of name's greetings, or nil if there is no counter,
// the web is overloaded (k8s.Overloaded: a brownout, the count is work the
// queued requests need the CPU for), or the counter does not answer within
// countBudget of the request's arrival: the greeting is the answer, the
// count extra. The greeting just made is counted a few milliseconds after
// it (its event's lag), so the count may not include it yet.
func (f *server) count(ctx context.Context, name string) *uint64 {
	if f.counter == nil || k8s.Overloaded(ctx) {
		return nil
	}
	ctx, cancel := k8s.WithBudget(ctx, countBudget)
	defer cancel()
	if ctx.Err() != nil {
		return nil // already slower than the budget
	}
	n, err := f.counter.Count(ctx, name)
	if err != nil {
		slog.WarnContext(ctx, "no count", "err", err)
		return nil
	}
	return &n
}

func greetedText(name string, n uint64) string {
	if n == 1 {
		return name + " has been greeted once"
	}
	return fmt.Sprintf("%s has been greeted %d times", name, n)
}

// badRequest is input the frontend refuses before calling the greeter.
type badRequest string

func (b badRequest) Error() string { return string(b) }

// nameFrom reads the one "name" query parameter. The greeter judges the name
// itself (empty, too long); this refuses what cannot even be sent to it.
func nameFrom(r *http.Request) (string, error) {
	q, err := url.ParseQuery(r.URL.RawQuery)
	if err != nil {
		return "", badRequest("malformed query string: " + err.Error())
	}
	names := q["name"]
	switch {
	case len(names) > 1:
		return "", badRequest(`give the query parameter "name" once`)
	case len(names) == 1 && !utf8.ValidString(names[0]):
		return names[0], badRequest("name must be valid UTF-8")
	case len(names) == 1:
		return names[0], nil
	}
	return "", nil
}

// describe maps an error to the status and message the caller sees.
func describe(err error) (int, string) {
	var bad badRequest
	if errors.As(err, &bad) {
		return http.StatusBadRequest, bad.Error()
	}
	var ce *httpapi.CallError
	if !errors.As(err, &ce) {
		return http.StatusInternalServerError, "internal error"
	}
	return ce.Status()
}
