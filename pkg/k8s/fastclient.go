package k8s

import (
	"context"
	"strings"
	"sync"
	"time"

	"go-micro.dev/v6/client"
	"go-micro.dev/v6/errors"
	"go-micro.dev/v6/metadata"
	"go-micro.dev/v6/registry"
	"go-micro.dev/v6/selector"
	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/keepalive"
	gmetadata "google.golang.org/grpc/metadata"
	"google.golang.org/grpc/resolver"
	"google.golang.org/grpc/resolver/dns"
	"google.golang.org/grpc/resolver/manual"
)

// callClient is go-micro's gRPC client with a leaner Call: one gRPC client
// per address, shared by every call (HTTP/2 multiplexes them), instead of
// go-micro's pool, which dials a connection per concurrent call, closes one
// after any failed call, and adds goroutines to every call. Each gRPC client
// resolves its address with gRPC's DNS resolver and balances calls round
// robin over every address it gets: a headless Service's name gives the
// address of every ready pod (see roundRobin). Streams and publishing stay
// go-micro's.
type callClient struct {
	client.Client

	mu    sync.RWMutex
	opts  client.Options // a copy of the embedded client's, kept by Init
	conns map[string]*grpc.ClientConn
}

func newCallClient(c client.Client) *callClient {
	return &callClient{Client: c, opts: c.Options(), conns: map[string]*grpc.ClientConn{}}
}

// Init sets options, and keeps a copy for Call: go-micro's Options returns a
// large struct by value, too costly to copy on every call.
func (c *callClient) Init(opts ...client.Option) error {
	err := c.Client.Init(opts...)
	c.mu.Lock()
	c.opts = c.Client.Options()
	c.mu.Unlock()
	return err
}

func (c *callClient) Options() client.Options {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return c.opts
}

// Call sends the request to the address the call options or the selector
// give, within the context's deadline (or the request timeout), through the
// call wrappers. It does not retry: a deadline bounds it, and Kubernetes
// takes failed pods out of the Service.
func (c *callClient) Call(ctx context.Context, req client.Request, rsp any, opts ...client.CallOption) error {
	c.mu.RLock()
	o, sel := c.opts.CallOptions, c.opts.Selector
	c.mu.RUnlock()
	for _, opt := range opts {
		opt(&o)
	}
	if _, ok := ctx.Deadline(); !ok && o.RequestTimeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, o.RequestTimeout)
		defer cancel()
	}
	node, err := c.node(sel, req.Service(), o)
	if err != nil {
		return err
	}
	call := c.call
	for i := len(o.CallWrappers); i > 0; i-- {
		call = o.CallWrappers[i-1](call)
	}
	return call(ctx, node, req, rsp, o)
}

func (c *callClient) node(sel selector.Selector, service string, o client.CallOptions) (*registry.Node, error) {
	if len(o.Address) > 0 {
		return &registry.Node{Address: o.Address[0]}, nil
	}
	next, err := sel.Select(service, o.SelectOptions...)
	if err != nil {
		return nil, errors.InternalServerError("go.micro.client", "selecting %s: %v", service, err)
	}
	node, err := next()
	if err != nil {
		return nil, errors.InternalServerError("go.micro.client", "selecting %s: %v", service, err)
	}
	return node, nil
}

func (c *callClient) call(ctx context.Context, node *registry.Node, req client.Request, rsp any, _ client.CallOptions) error {
	cc, err := c.conn(node.Address)
	if err != nil {
		return errors.InternalServerError("go.micro.client", "connecting to %s: %v", node.Address, err)
	}
	if md, ok := metadata.FromContext(ctx); ok {
		pairs := make([]string, 0, 2*len(md))
		for k, v := range md {
			pairs = append(pairs, strings.ToLower(k), v)
		}
		ctx = gmetadata.AppendToOutgoingContext(ctx, pairs...)
	}
	subtype, ok := contentSubtypes[req.ContentType()]
	if !ok {
		return errors.InternalServerError("go.micro.client", "content type %q has no gRPC codec", req.ContentType())
	}
	return microError(cc.Invoke(ctx, grpcMethod(req.Service(), req.Endpoint()), req.Body(), rsp, subtype...))
}

// contentSubtypes are the gRPC codecs (registered by go-micro's gRPC server
// package, by these names) of the content types a go-micro request may
// carry, as go-micro's own client chooses them: a request made with
// client.WithContentType("application/json") travels as JSON, and its body
// may be a *bytes.Frame of JSON, as a gateway forwards it untouched.
var contentSubtypes = map[string][]grpc.CallOption{
	"":                         nil,
	"application/grpc":         nil,
	"application/grpc+proto":   nil,
	"application/proto":        nil,
	"application/protobuf":     nil,
	"application/octet-stream": nil,
	"application/json":         {grpc.CallContentSubtype("json")},
	"application/grpc+json":    {grpc.CallContentSubtype("json")},
	"application/grpc+bytes":   {grpc.CallContentSubtype("bytes")},
}

// conn is the one connection to addr, made on first use.
func (c *callClient) conn(addr string) (*grpc.ClientConn, error) {
	c.mu.RLock()
	cc, ok := c.conns[addr]
	c.mu.RUnlock()
	if ok {
		return cc, nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if cc, ok := c.conns[addr]; ok {
		return cc, nil
	}
	target, opts := addr, []grpc.DialOption{}
	if addrs := strings.Split(addr, ","); len(addrs) > 1 {
		// Several addresses pinned to one service (make run's replicas):
		// gRPC's manual resolver gives them all to the balancer.
		r := manual.NewBuilderWithScheme("pinned")
		state := resolver.State{}
		for _, a := range addrs {
			state.Addresses = append(state.Addresses, resolver.Address{Addr: a})
		}
		r.InitialState(state)
		target, opts = r.Scheme()+":///"+addr, append(opts, grpc.WithResolvers(r))
	}
	cc, err := grpc.NewClient(target, append(opts,
		// Plain text: in the cluster a mesh adds mTLS (see the conduit profile).
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultServiceConfig(roundRobin),
		// A server that stops answering while calls wait on it (a hung
		// process: its kernel still holds the connection open) is dropped
		// from the balance after a ping goes unanswered, rather than get
		// its share of calls until the kubelet restarts it.
		grpc.WithKeepaliveParams(keepalive.ClientParameters{Time: KeepaliveTime, Timeout: KeepaliveTimeout}),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(MaxMessageSize), grpc.MaxCallSendMsgSize(MaxMessageSize)),
		// Reconnect within a second of the server coming back, not after
		// gRPC's default backoff of up to two minutes. A connection attempt
		// itself may take gRPC's default 20 s (a hung server): calls wait on
		// it until their own deadline.
		grpc.WithConnectParams(grpc.ConnectParams{
			Backoff:           backoff.Config{BaseDelay: 100 * time.Millisecond, Multiplier: 1.6, Jitter: reconnectJitter, MaxDelay: ReconnectMaxDelay},
			MinConnectTimeout: 20 * time.Second,
		}),
	)...)
	if err != nil {
		return nil, err
	}
	c.conns[addr] = cc
	return cc, nil
}

// ReconnectMaxDelay is the longest a client waits before it tries again
// to connect to an address it lost, give or take reconnectJitter of it.
const (
	ReconnectMaxDelay = time.Second
	reconnectJitter   = 0.2
)

// KeepaliveTime is how long a connection with calls waiting on it may go
// without hearing from the server before the client pings it (10 s is the
// least gRPC allows), and KeepaliveTimeout how long the ping may take
// before the connection is dropped. Servers accept pings twice as often
// (see NewService), so that no ping is ever refused.
const (
	KeepaliveTime    = 10 * time.Second
	KeepaliveTimeout = 2 * time.Second
)

// roundRobin spreads calls over every address the resolver gives, rather
// than gRPC's default of the first one that answers. With a ClusterIP
// Service that is one address and changes nothing; with a headless Service
// it is one per ready pod, and each call goes to the next pod. New pods are
// found when the resolver runs again: on any lost connection, which the
// servers' MaxConnectionAge makes happen regularly (see ConnectionMaxAge).
const roundRobin = `{"loadBalancingConfig": [{"round_robin": {}}]}`

// DNSMinResolutionInterval is how soon gRPC's DNS resolver may run again
// after it last did: gRPC's default of 30 s, added to a connection's
// remaining age, would let a new pod wait most of a minute for traffic.
const DNSMinResolutionInterval = 5 * time.Second

// gRPC reads it when a resolver runs, and allows it to be set only at
// start-up, before any call: every binary that calls through pkg/k8s
// imports it, so its init is that moment.
func init() { dns.SetMinResolutionInterval(DNSMinResolutionInterval) }

// grpcMethod is the path go-micro's server routes "Service.Method" by.
func grpcMethod(service, endpoint string) string {
	if svc, method, ok := strings.Cut(endpoint, "."); ok {
		return "/" + service + "." + svc + "/" + method
	}
	return endpoint
}
