package k8s

import (
	"bufio"
	"context"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync"
	"time"

	"go-micro.dev/v6/logger"
)

// EnvLogLevel names the log level: debug, info (the default), warn or error.
const EnvLogLevel = "MICRO_LOG_LEVEL"

// LogFlushInterval is how long an info line may wait in the log's buffer.
const LogFlushInterval = 100 * time.Millisecond

// SetupLogging makes slog's default logger, and go-micro's, write JSON lines
// to stderr at the level EnvLogLevel names. Call it first in main (go-micro
// takes its logger when a service is built), and defer flush.
//
// Lines are batched: a line per request, written with a system call each,
// was the largest part of a request's CPU. Info and debug lines wait at most
// LogFlushInterval; a warning or an error is written at once, with all
// before it, so that what explains an exit is never lost. A crash loses at
// most that interval's info lines.
func SetupLogging() (flush func(), err error) {
	var level slog.Level
	if v := os.Getenv(EnvLogLevel); v != "" {
		if err := level.UnmarshalText([]byte(v)); err != nil {
			return func() {}, fmt.Errorf("%s=%q: want debug, info, warn or error", EnvLogLevel, v)
		}
	}
	w := &logWriter{buf: bufio.NewWriterSize(os.Stderr, 64<<10)}
	go func() {
		for range time.Tick(LogFlushInterval) {
			w.flush()
		}
	}()
	l := slog.New(flushingHandler{Handler: slog.NewJSONHandler(w, &slog.HandlerOptions{Level: level}), w: w})
	slog.SetDefault(l)
	logger.DefaultLogger = &microLogger{slog: l}
	logger.DefaultHelper = logger.NewHelper(logger.DefaultLogger)
	return w.flush, nil
}

// logWriter is the log's buffer in front of stderr.
type logWriter struct {
	mu  sync.Mutex
	buf *bufio.Writer
}

func (w *logWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.buf.Write(p)
}

func (w *logWriter) flush() {
	w.mu.Lock()
	defer w.mu.Unlock()
	_ = w.buf.Flush()
}

// flushingHandler writes the buffer out after a warning or an error.
type flushingHandler struct {
	slog.Handler
	w *logWriter
}

func (h flushingHandler) Handle(ctx context.Context, r slog.Record) error {
	err := h.Handler.Handle(ctx, r)
	if r.Level >= slog.LevelWarn {
		h.w.flush()
	}
	return err
}

func (h flushingHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	return flushingHandler{Handler: h.Handler.WithAttrs(attrs), w: h.w}
}

func (h flushingHandler) WithGroup(name string) slog.Handler {
	return flushingHandler{Handler: h.Handler.WithGroup(name), w: h.w}
}

// microLogger is go-micro's logger interface on top of slog.
type microLogger struct {
	slog *slog.Logger
	opts logger.Options
}

func (m *microLogger) Init(opts ...logger.Option) error {
	for _, o := range opts {
		o(&m.opts)
	}
	return nil
}

func (m *microLogger) Options() logger.Options { return m.opts }

func (m *microLogger) Fields(fields map[string]any) logger.Logger {
	args := make([]any, 0, 2*len(fields))
	for k, v := range fields {
		args = append(args, k, v)
	}
	return &microLogger{slog: m.slog.With(args...), opts: m.opts}
}

func (m *microLogger) Log(level logger.Level, v ...any) {
	m.write(level, strings.TrimSuffix(fmt.Sprintln(v...), "\n"))
}

func (m *microLogger) Logf(level logger.Level, format string, v ...any) {
	m.write(level, fmt.Sprintf(format, v...))
}

func (m *microLogger) write(level logger.Level, msg string) {
	m.slog.Log(context.Background(), level.ToSlog(), msg, "source", "go-micro")
	if level == logger.FatalLevel {
		os.Exit(1)
	}
}

func (m *microLogger) String() string { return "slog" }
