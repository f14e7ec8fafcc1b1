package k8s

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"strings"

	"go-micro.dev/v6/logger"
)

// EnvLogLevel names the log level: debug, info (the default), warn or error.
const EnvLogLevel = "MICRO_LOG_LEVEL"

// SetupLogging makes slog's default logger, and go-micro's, write JSON lines
// to stderr at the level EnvLogLevel names. Call it first in main: go-micro
// takes its logger when a service is built.
func SetupLogging() error {
	var level slog.Level
	if v := os.Getenv(EnvLogLevel); v != "" {
		if err := level.UnmarshalText([]byte(v)); err != nil {
			return fmt.Errorf("%s=%q: want debug, info, warn or error", EnvLogLevel, v)
		}
	}
	l := slog.New(slog.NewJSONHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
	slog.SetDefault(l)
	logger.DefaultLogger = &microLogger{slog: l}
	logger.DefaultHelper = logger.NewHelper(logger.DefaultLogger)
	return nil
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
