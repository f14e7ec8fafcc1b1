// Package httpapi is the little every JSON endpoint of this repository shares:
// JSON bodies, errors as {"error": "..."}, and routing whose 404 and 405
// answers are JSON too.
package httpapi

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strconv"
	"time"

	merrors "go-micro.dev/v6/errors"
)

// MaxHeaderBytes bounds an HTTP request's line and headers; a larger one
// gets 431.
const MaxHeaderBytes = 64 << 10

// NewServer returns an HTTP server that bounds every phase of a request, so
// a slow or hostile client cannot hold a connection (or a goroutine)
// forever. Set its Addr and Handler.
func NewServer() *http.Server {
	return &http.Server{
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       10 * time.Second,
		WriteTimeout:      15 * time.Second,
		IdleTimeout:       60 * time.Second,
		MaxHeaderBytes:    MaxHeaderBytes,
	}
}

// Error is the body of every error response.
type Error struct {
	Error string `json:"error"`
}

// WriteJSON writes v as a JSON body with the given status.
func WriteJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	if err := json.NewEncoder(w).Encode(v); err != nil {
		// The status is already sent; the client went away mid-body.
		slog.Debug("writing JSON response", "err", err)
	}
}

// RetryAfterSeconds is what every 503 tells its caller to wait (a
// Retry-After header): a server refusing load, or one whose dependency
// refused or did not answer, is worth trying again about that soon.
const RetryAfterSeconds = 1

// SetRetryAfter sets Retry-After on h when status is 503, for a response
// that is not WriteError's (an HTML page).
func SetRetryAfter(h http.Header, status int) {
	if status == http.StatusServiceUnavailable {
		h.Set("Retry-After", strconv.Itoa(RetryAfterSeconds))
	}
}

// WriteError writes {"error": msg} with the given status.
func WriteError(w http.ResponseWriter, status int, msg string) {
	SetRetryAfter(w.Header(), status)
	WriteJSON(w, status, Error{Error: msg})
}

// Router serves mux, but answers requests mux has no route for with a JSON
// 404, or a JSON 405 with an Allow header when the path exists for other
// methods, instead of net/http's plain-text pages.
func Router(mux *http.ServeMux) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h, pattern := mux.Handler(r)
		if pattern != "" {
			mux.ServeHTTP(w, r) // sets r.Pattern and the path's values
			return
		}
		// No route: clear what an outer mux matched, for whoever labels
		// requests by route. The mux would answer 404 or 405: ask it which.
		r.Pattern = ""
		probe := &statusRecorder{header: http.Header{}}
		h.ServeHTTP(probe, r)
		if probe.status == http.StatusMethodNotAllowed {
			w.Header().Set("Allow", probe.header.Get("Allow"))
			WriteError(w, http.StatusMethodNotAllowed, "method "+r.Method+" is not allowed on "+r.URL.Path)
			return
		}
		WriteError(w, http.StatusNotFound, "no such path: "+r.URL.Path)
	})
}

// LimitBody answers 413 to a request whose body is over max bytes, before
// next sees it, and stops next from reading more than max of a body that
// does not announce its length.
func LimitBody(max int64, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.ContentLength > max {
			WriteError(w, http.StatusRequestEntityTooLarge, fmt.Sprintf("request body over %d bytes", max))
			return
		}
		r.Body = http.MaxBytesReader(w, r.Body, max)
		next.ServeHTTP(w, r)
	})
}

// statusRecorder keeps the status and headers a handler writes, not its body.
type statusRecorder struct {
	header http.Header
	status int
}

func (s *statusRecorder) Header() http.Header         { return s.header }
func (s *statusRecorder) Write(b []byte) (int, error) { return len(b), nil }
func (s *statusRecorder) WriteHeader(status int)      { s.status = status }

// LogRequests logs one line per request (see LogRequest).
func LogRequests(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		rec := &StatusWriter{ResponseWriter: w, Status: http.StatusOK}
		next.ServeHTTP(rec, r)
		LogRequest(r, rec.Status, time.Since(start))
	})
}

// LogRequest logs a finished request at info: method, route (the pattern it
// matched), path, status, duration and any attrs.
func LogRequest(r *http.Request, status int, took time.Duration, attrs ...slog.Attr) {
	attrs = append([]slog.Attr{
		slog.String("method", r.Method), slog.String("route", Route(r)), slog.String("path", r.URL.Path),
		// An integer: slog writes a float through encoding/json, by reflection.
		slog.Int("status", status), slog.Int64("duration_us", took.Microseconds()),
	}, attrs...)
	LogInfo(r.Context(), "http request", attrs...)
}

// LogInfo logs a line at info, as slog.LogAttrs does without looking up
// its caller (a stack walk per line: slog asks for it whether or not the
// handler prints the source, and these lines are one per request).
func LogInfo(ctx context.Context, msg string, attrs ...slog.Attr) {
	l := slog.Default()
	if !l.Enabled(ctx, slog.LevelInfo) {
		return
	}
	r := slog.NewRecord(time.Now(), slog.LevelInfo, msg, 0)
	r.AddAttrs(attrs...)
	_ = l.Handler().Handle(ctx, r)
}

// Route is the pattern a request matched, or "unmatched".
func Route(r *http.Request) string {
	if r.Pattern == "" {
		return "unmatched"
	}
	return r.Pattern
}

// StatusWriter remembers the status a handler writes.
type StatusWriter struct {
	http.ResponseWriter
	Status int
}

func (s *StatusWriter) WriteHeader(status int) {
	s.Status = status
	s.ResponseWriter.WriteHeader(status)
}

func (s *StatusWriter) Unwrap() http.ResponseWriter { return s.ResponseWriter }

// CallError is a failed call from an HTTP handler to a go-micro service.
type CallError struct {
	Service string
	Err     error
	// TimedOut says the handler's own deadline for the call, Timeout,
	// passed.
	TimedOut bool
	Timeout  time.Duration
}

func (e *CallError) Error() string { return e.Err.Error() }

// Unwrap gives the call's error, to errors.Is and errors.As.
func (e *CallError) Unwrap() error { return e.Err }

// Status is the status and message an HTTP caller sees for a failed call:
// the service's own message for the caller's mistakes (400, 404), 504 past
// the deadline, 503 when nothing answered (refused, reset, unresolvable,
// shedding load), 502 for the service's own failures, which are logged and
// not shown.
func (e *CallError) Status() (int, string) {
	merr := merrors.FromError(e.Err)
	switch {
	case e.TimedOut || merr.Code == http.StatusRequestTimeout:
		return http.StatusGatewayTimeout, fmt.Sprintf("the %s did not answer within %s", e.Service, e.Timeout)
	case merr.Code == http.StatusBadRequest:
		return http.StatusBadRequest, merr.Detail
	case merr.Code == http.StatusNotFound:
		return http.StatusNotFound, merr.Detail
	case merr.Code == http.StatusServiceUnavailable || merr.Id == "go.micro.client":
		slog.Info(e.Service+" unreachable", "err", merr.Detail)
		return http.StatusServiceUnavailable, "the " + e.Service + " is unavailable, try again shortly"
	default:
		slog.Info(e.Service+" failed", "err", e.Err)
		return http.StatusBadGateway, "the " + e.Service + " failed to answer"
	}
}

// ServeHealth answers GET /health with 200 {"status":"ok"} on addr until
// ctx ends: the probes of a process that serves nothing else (the load
// generator, the micro toolkit's pod).
func ServeHealth(ctx context.Context, addr string) error {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /health", func(w http.ResponseWriter, _ *http.Request) {
		WriteJSON(w, http.StatusOK, map[string]string{"status": "ok"})
	})
	srv := NewServer()
	srv.Addr, srv.Handler = addr, Router(mux)
	go func() {
		<-ctx.Done()
		_ = srv.Close()
	}()
	if err := srv.ListenAndServe(); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("serving /health on %s: %w", addr, err)
	}
	return nil
}
