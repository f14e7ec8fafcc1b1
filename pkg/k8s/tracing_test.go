package k8s

import (
	"net/http"
	"testing"

	"go-micro.dev/v6"
	"go-micro.dev/v6/client"
	debugpb "go-micro.dev/v6/debug/proto"
	"go-micro.dev/v6/web"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/propagation"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
)

// One HTTP request to a web service that calls a gRPC service makes one
// trace: the web's span, its client span, and the service's span under it.
func TestTraceCrossesFromWebToService(t *testing.T) {
	spans := tracetest.NewSpanRecorder()
	prevTP, prevProp := otel.GetTracerProvider(), otel.GetTextMapPropagator()
	otel.SetTracerProvider(sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(spans)))
	otel.SetTextMapPropagator(propagation.TraceContext{})
	t.Cleanup(func() { otel.SetTracerProvider(prevTP); otel.SetTextMapPropagator(prevProp) })

	greeter := NewService("greeter", micro.Address("127.0.0.1:0"))
	if err := greeter.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = greeter.Stop() })
	front := NewWebService("web", web.Address("127.0.0.1:0"))
	front.HandleFunc("/call", func(w http.ResponseWriter, r *http.Request) {
		_, err := debugpb.NewDebugService("greeter", front.Options().Service.Client()).Health(r.Context(),
			&debugpb.HealthRequest{}, client.WithAddress(greeter.Server().Options().Address))
		if err != nil {
			w.WriteHeader(http.StatusBadGateway)
		}
	})
	if err := front.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = front.Stop() })

	rsp, err := http.Get("http://" + front.Options().Address + "/call")
	if err != nil {
		t.Fatal(err)
	}
	rsp.Body.Close()
	if rsp.StatusCode != http.StatusOK {
		t.Fatalf("GET /call: %d", rsp.StatusCode)
	}

	byKind := map[trace.SpanKind]sdktrace.ReadOnlySpan{}
	for _, s := range spans.Ended() {
		byKind[s.SpanKind()] = s
	}
	webSpan, clientSpan := byKind[trace.SpanKindServer], byKind[trace.SpanKindClient]
	var greeterSpan sdktrace.ReadOnlySpan
	for _, s := range spans.Ended() {
		if s.SpanKind() == trace.SpanKindServer && s.Name() == "Debug.Health" {
			greeterSpan = s
		}
		if s.SpanKind() == trace.SpanKindServer && s.Name() == "/call" {
			webSpan = s
		}
	}
	if webSpan == nil || clientSpan == nil || greeterSpan == nil {
		t.Fatalf("want a web, a client and a greeter span; got %d spans", len(spans.Ended()))
	}
	id := webSpan.SpanContext().TraceID()
	for _, s := range []sdktrace.ReadOnlySpan{clientSpan, greeterSpan} {
		if s.SpanContext().TraceID() != id {
			t.Errorf("span %s is in trace %s, not the web's %s", s.Name(), s.SpanContext().TraceID(), id)
		}
	}
	if clientSpan.Parent().SpanID() != webSpan.SpanContext().SpanID() {
		t.Error("the client span is not the web span's child")
	}
	if greeterSpan.Parent().SpanID() != clientSpan.SpanContext().SpanID() {
		t.Error("the greeter's span is not the client span's child: the context did not cross")
	}
	t.Logf("trace %s: %s -> %s -> %s", id, webSpan.Name(), clientSpan.Name(), greeterSpan.Name())
}
