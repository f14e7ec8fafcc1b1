package k8s

import (
	"context"
	"log/slog"
	"net"
	"net/netip"
	"reflect"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"go-micro.dev/v6/codec"
	merrors "go-micro.dev/v6/errors"
	meta "go-micro.dev/v6/metadata"
	"go-micro.dev/v6/server"
	"google.golang.org/grpc"
	gmetadata "google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/tap"
	"google.golang.org/protobuf/proto"
)

// fastServer is go-micro's gRPC server with a faster path for unary calls,
// the server's fast path: what go-micro does on every call that only costs
// (copying and joining every header, formatting the method's name twice,
// marshalling the decoded request again for a body nobody reads, building
// a status for success) is done once per method, or not at all. The
// handler is still found by go-micro's rules, called through the service's
// handler wrappers (as they are after the last Init) with the request they
// saw before, and its errors travel with the codes and details go-micro
// gives them. Every handler registered through it is served so; streams,
// methods it does not know, every call while a server.WithRouter router is
// set or a gRPC server option of go-micro's is given (AuthTLS, Codec, ...),
// and every call while the switch is off (see FastPaths) go to go-micro as
// before.
type fastServer struct {
	server.Server
	on *atomic.Bool // the switch, shared with the service's client

	mu sync.RWMutex
	// base is the server's options' Context as pkg/k8s built it: go-micro
	// keeps its gRPC server options (codecs among them) under keys of its
	// own there, so a Context that changed may hold one the fast path
	// does not implement.
	base context.Context
	// go-micro serves every call: a router is set, or base changed.
	stock    bool
	services map[string]map[string]*unaryMethod // by handler name, then method
}

// unaryMethod is one method of a registered handler:
// func(context.Context, *Request, *Response) error.
type unaryMethod struct {
	endpoint string        // "Greeter.Hello"
	fn, recv reflect.Value // the method's function, and the handler it is called on
	req, rsp reflect.Type  // what the pointers point to
	// handle is fn through the handler wrappers, built on the first call
	// after the server's options last changed.
	handle atomic.Pointer[wrapped]
}

// wrapped is a method's handler, and the server's name as go-micro gives it.
type wrapped struct {
	handle  server.HandlerFunc
	service string
}

var (
	contextType = reflect.TypeFor[context.Context]()
	errorType   = reflect.TypeFor[error]()
	protoType   = reflect.TypeFor[proto.Message]()
)

func newFastServer(on *atomic.Bool) *fastServer {
	return &fastServer{on: on, services: map[string]map[string]*unaryMethod{}}
}

// Init sets options, as go-micro's server does, and has the fast path
// follow them: the handler wrappers, the router and the options' Context
// are read again.
func (s *fastServer) Init(opts ...server.Option) error {
	err := s.Server.Init(opts...)
	o := s.Server.Options()
	stock := o.Router != nil || o.Context != s.base
	s.mu.Lock()
	defer s.mu.Unlock()
	s.stock = stock
	for _, methods := range s.services {
		for _, m := range methods {
			m.handle.Store(nil)
		}
	}
	return err
}

// Handle registers the handler with go-micro, and its unary methods here.
func (s *fastServer) Handle(h server.Handler) error {
	if err := s.Server.Handle(h); err != nil {
		return err
	}
	v := reflect.ValueOf(h.Handler())
	name := reflect.Indirect(v).Type().Name()
	methods := map[string]*unaryMethod{}
	for i := range v.NumMethod() {
		m, t := v.Method(i), v.Type().Method(i)
		ft := m.Type()
		if !t.IsExported() || ft.NumIn() != 3 || ft.NumOut() != 1 || ft.In(0) != contextType || ft.Out(0) != errorType ||
			ft.In(1).Kind() != reflect.Pointer || ft.In(2).Kind() != reflect.Pointer ||
			!ft.In(1).Implements(protoType) || !ft.In(2).Implements(protoType) {
			continue // a stream, or not a method go-micro serves as unary
		}
		methods[t.Name] = &unaryMethod{endpoint: name + "." + t.Name, fn: t.Func, recv: v, req: ft.In(1).Elem(), rsp: ft.In(2).Elem()}
	}
	s.mu.Lock()
	s.services[name] = methods
	s.mu.Unlock()
	return nil
}

// lookup is the method the fast path serves, or nil.
func (s *fastServer) lookup(service, method string) *unaryMethod {
	if !s.on.Load() {
		return nil
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.stock {
		return nil
	}
	return s.services[service][method]
}

// stream is the gRPC interceptor that serves the methods it knows.
func (s *fastServer) stream(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
	m := s.lookup(splitMethod(info.FullMethod))
	if m == nil {
		return handler(srv, ss)
	}
	return s.serve(ss, m)
}

// tap runs as a call arrives, on its connection's reader, before its
// stream exists: it keeps the call's headers as the transport read them,
// for the handler's side to read without a copy (gRPC's
// FromIncomingContext copies every header, and ValueFromIncomingContext
// compares every one with a header the call lacks). It does no more: what
// runs here delays every call on the connection.
func (s *fastServer) tap(ctx context.Context, info *tap.Info) (context.Context, error) {
	return context.WithValue(ctx, headersKey{}, info.Header), nil
}

type headersKey struct{}

// headers are the headers of the call in ctx, not to be changed.
func headers(ctx context.Context) gmetadata.MD {
	if h, ok := ctx.Value(headersKey{}).(gmetadata.MD); ok {
		return h
	}
	h, _ := gmetadata.FromIncomingContext(ctx) // a server without the tap
	return h
}

// incomingHeader is a header of the call in ctx, its values joined.
func incomingHeader(ctx context.Context, key string) (string, bool) {
	v, ok := headers(ctx)[key]
	return strings.Join(v, ", "), ok
}

// callContext gives the handler what go-micro's server gives it: the
// call's headers as go-micro metadata (each once, its values joined; the
// caller's address as Remote), and the go-micro client's request timeout,
// a header, as a deadline; and returns the content type.
func callContext(ctx context.Context) (context.Context, string, context.CancelFunc) {
	h := headers(ctx)
	md := make(meta.Metadata, len(h)+1)
	for k, v := range h {
		md[k] = strings.Join(v, ", ")
	}
	ct := "application/grpc"
	if c, ok := md["x-content-type"]; ok {
		ct = c
	}
	if c, ok := md["content-type"]; ok {
		ct = c
	}
	// go-micro's client sends its request timeout as a header besides
	// gRPC's deadline, which is already on ctx, and usually the earlier.
	timeout, hasTimeout := time.Duration(0), false
	if v, ok := md["timeout"]; ok {
		t, err := strconv.ParseUint(v, 10, 63)
		timeout, hasTimeout = time.Duration(t), err == nil
	}
	delete(md, "x-content-type")
	delete(md, "timeout")
	if p, ok := peer.FromContext(ctx); ok {
		md["Remote"] = remoteAddr(p.Addr)
	}
	ctx = meta.NewContext(ctx, md)
	if d, ok := ctx.Deadline(); hasTimeout && (!ok || time.Until(d) > timeout) {
		ctx, cancel := context.WithTimeout(ctx, timeout)
		return ctx, ct, cancel
	}
	return ctx, ct, func() {}
}

// remoteAddr is addr as net.TCPAddr's String writes it, in one allocation
// instead of three.
func remoteAddr(addr net.Addr) string {
	if a, ok := addr.(*net.TCPAddr); ok {
		if ap := a.AddrPort(); ap.Addr().IsValid() {
			return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port()).String()
		}
	}
	return addr.String()
}

// serve handles one unary call as go-micro's server does (server/grpc),
// without its per-call overheads.
func (s *fastServer) serve(ss grpc.ServerStream, m *unaryMethod) error {
	h := m.handle.Load()
	if h == nil {
		h = s.wrap(m)
		m.handle.Store(h)
	}
	ctx, ct, cancel := callContext(ss.Context())
	defer cancel()

	req := reflect.New(m.req).Interface().(proto.Message)
	if unmarshal := unmarshalerFor(ct); unmarshal != nil {
		if err := receive(ss, unmarshal, req); err != nil {
			return err
		}
	} else if err := ss.RecvMsg(req); err != nil {
		return err
	}
	rsp := reflect.New(m.rsp).Interface()
	r := &fastRequest{service: h.service, endpoint: m.endpoint, contentType: ct, body: req}
	if err := h.handle(ctx, r, rsp); err != nil {
		return grpcStatus(err)
	}
	return ss.SendMsg(rsp)
}

// wrap builds the method's handler: the call, recovering a panic as
// go-micro does, inside the service's handler wrappers.
func (s *fastServer) wrap(m *unaryMethod) *wrapped {
	opts := s.Server.Options()
	call := func(ctx context.Context, req server.Request, rsp any) (err error) {
		defer func() {
			if r := recover(); r != nil {
				slog.ErrorContext(ctx, "panic recovered", "rpc", m.endpoint, "panic", r, "stack", string(debug.Stack()))
				err = merrors.InternalServerError("go.micro.server", "panic recovered: %v", r)
			}
		}()
		// The method's function with its receiver, and the context as a
		// context.Context rather than its concrete type, spare reflect an
		// allocation and an interface check on every call.
		out := m.fn.Call([]reflect.Value{m.recv, reflect.ValueOf(&ctx).Elem(), reflect.ValueOf(req.Body()), reflect.ValueOf(rsp)})
		if e := out[0].Interface(); e != nil {
			return e.(error)
		}
		return nil
	}
	for i := len(opts.HdlrWrappers); i > 0; i-- {
		call = opts.HdlrWrappers[i-1](call)
	}
	return &wrapped{handle: call, service: opts.Name}
}

// fastRequest is the server.Request the handler wrappers see: go-micro's
// for a unary call, whose body is the decoded request.
type fastRequest struct {
	service, endpoint, contentType string
	body                           proto.Message
}

func (r *fastRequest) Service() string           { return r.service }
func (r *fastRequest) Method() string            { return r.endpoint }
func (r *fastRequest) Endpoint() string          { return r.endpoint }
func (r *fastRequest) ContentType() string       { return r.contentType }
func (r *fastRequest) Header() map[string]string { return nil }
func (r *fastRequest) Body() any                 { return r.body }
func (r *fastRequest) Codec() codec.Reader       { return nil }
func (r *fastRequest) Stream() bool              { return false }
func (r *fastRequest) Read() ([]byte, error)     { return proto.Marshal(r.body) }
