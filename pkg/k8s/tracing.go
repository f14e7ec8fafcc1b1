package k8s

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"time"

	"go-micro.dev/v6/client"
	"go-micro.dev/v6/metadata"
	"go-micro.dev/v6/registry"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	semconv "go.opentelemetry.io/otel/semconv/v1.37.0"
	"go.opentelemetry.io/otel/trace"
)

// tracerName names this package's spans.
const tracerName = "github.com/micro/kubernetes/pkg/k8s"

// SetupTracing exports traces with OTLP over gRPC when the standard
// OTEL_EXPORTER_OTLP_ENDPOINT (or OTEL_EXPORTER_OTLP_TRACES_ENDPOINT) is set,
// and does nothing otherwise; every other OTEL_ variable works as documented
// by OpenTelemetry. Trace context travels as W3C traceparent, in HTTP headers
// and in go-micro metadata. Call it in main; call flush before exiting to
// send what is buffered (it waits 5 s at most).
//
// Even with export off, a trace context that comes in (from an ingress or a
// mesh) goes on to the services called, and its trace id into the logs.
func SetupTracing(ctx context.Context, service string) (flush func(), err error) {
	otel.SetTextMapPropagator(propagation.NewCompositeTextMapPropagator(propagation.TraceContext{}, propagation.Baggage{}))
	if os.Getenv("OTEL_EXPORTER_OTLP_ENDPOINT") == "" && os.Getenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") == "" {
		return func() {}, nil
	}
	exporter, err := otlptracegrpc.New(ctx)
	if err != nil {
		return nil, fmt.Errorf("tracing: %w", err)
	}
	tp := sdktrace.NewTracerProvider(
		sdktrace.WithBatcher(exporter),
		sdktrace.WithResource(resource.NewSchemaless(semconv.ServiceName(service))),
	)
	otel.SetTracerProvider(tp)
	return func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := tp.Shutdown(ctx); err != nil {
			slog.Error("flushing traces", "err", err)
		}
	}, nil
}

// traced says whether a request in ctx is worth a span: traces are exported,
// or a trace context came in to pass on. Otherwise spans would cost CPU and
// allocations for nothing.
func traced(ctx context.Context) bool {
	if _, exported := otel.GetTracerProvider().(*sdktrace.TracerProvider); exported {
		return true
	}
	return trace.SpanContextFromContext(ctx).IsValid()
}

// traceCall starts a client span around each attempt of an RPC and sends
// its context along in the request's metadata.
func traceCall(next client.CallFunc) client.CallFunc {
	return func(ctx context.Context, node *registry.Node, req client.Request, rsp any, opts client.CallOptions) error {
		if !traced(ctx) {
			return next(ctx, node, req, rsp, opts)
		}
		ctx, span := otel.Tracer(tracerName).Start(ctx, req.Endpoint(),
			trace.WithSpanKind(trace.SpanKindClient),
			trace.WithAttributes(
				attribute.String("rpc.system", "grpc"),
				attribute.String("rpc.service", req.Service()),
				attribute.String("rpc.method", req.Endpoint()),
				attribute.String("server.address", node.Address),
			))
		defer span.End()
		md, _ := metadata.FromContext(ctx)
		if md == nil {
			md = metadata.Metadata{}
		}
		otel.GetTextMapPropagator().Inject(ctx, carrier(md))
		err := next(metadata.NewContext(ctx, md), node, req, rsp, opts)
		if err != nil {
			span.SetStatus(codes.Error, err.Error())
		}
		return err
	}
}

// startServerSpan continues the trace the caller's metadata carries.
func startServerSpan(ctx context.Context, endpoint string) (context.Context, trace.Span) {
	// Asked of the call's headers first, without a copy: go-micro's
	// FromContext copies every header, on every call, to find none.
	if _, ok := incomingHeader(ctx, "traceparent"); ok {
		if md, ok := metadata.FromContext(ctx); ok {
			ctx = otel.GetTextMapPropagator().Extract(ctx, carrier(md))
		}
	}
	if !traced(ctx) {
		return ctx, trace.SpanFromContext(context.Background()) // a no-op span
	}
	return otel.Tracer(tracerName).Start(ctx, endpoint,
		trace.WithSpanKind(trace.SpanKindServer),
		trace.WithAttributes(attribute.String("rpc.system", "grpc"), attribute.String("rpc.method", endpoint)))
}

// carrier lets OpenTelemetry read and write go-micro metadata, whose keys
// arrive lower-cased from gRPC.
type carrier metadata.Metadata

func (c carrier) Get(key string) string {
	if v, ok := c[key]; ok {
		return v
	}
	return c[strings.ToLower(key)]
}

func (c carrier) Set(key, value string) { c[strings.ToLower(key)] = value }

func (c carrier) Keys() []string {
	keys := make([]string, 0, len(c))
	for k := range c {
		keys = append(keys, k)
	}
	return keys
}

// traceID is the id of the trace ctx is in, for log lines; empty if none.
func traceID(ctx context.Context) string {
	if sc := trace.SpanContextFromContext(ctx); sc.HasTraceID() {
		return sc.TraceID().String()
	}
	return ""
}
