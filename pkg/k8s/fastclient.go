package k8s

import (
	"context"
	"net"
	"reflect"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
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

// fastClient is go-micro's gRPC client with a faster Call, the client's
// fast path: one gRPC client per address (or per service of several
// addresses), shared by every call (HTTP/2 multiplexes them), instead of
// go-micro's pool, which dials a connection per concurrent call, closes one
// after any failed call, and adds goroutines to every call. Each gRPC client
// resolves its address with gRPC's DNS resolver and balances calls round
// robin over every address it gets: a headless Service's name gives the
// address of every ready pod (see roundRobin).
//
// It takes only the calls whose options it honours: the switch is on (see
// FastPaths), every client and call option is pkg/k8s's default or one it
// implements (the request timeout, an address, select options, call
// wrappers), and the address is not one go-micro dials with TLS. Any other
// call, streams and publishing go to go-micro's client as they are: a
// go-micro gRPC option (AuthTLS, DialOptions, ...) works exactly as
// go-micro documents it, at go-micro's cost.
type fastClient struct {
	client.Client
	on  *atomic.Bool // the switch, shared with the service's server
	err error        // a bad EnvFastPaths, which every call reports

	mu    sync.RWMutex
	opts  client.Options // a copy of the embedded client's, kept by Init
	base  client.Options // pkg/k8s's defaults, which the fast path implements
	stock string         // an option set that it does not implement ("": none)
	conns map[string]*grpc.ClientConn
	nodes map[string]*serviceConn // connections to services of several nodes
}

func newFastClient(c client.Client, on *atomic.Bool) *fastClient {
	opts := c.Options()
	return &fastClient{Client: c, on: on, opts: opts, base: opts, conns: map[string]*grpc.ClientConn{}, nodes: map[string]*serviceConn{}}
}

// Init sets options, and keeps a copy for Call: go-micro's Options returns a
// large struct by value, too costly to copy on every call.
func (c *fastClient) Init(opts ...client.Option) error {
	err := c.Client.Init(opts...)
	c.mu.Lock()
	c.opts = c.Client.Options()
	c.stock = unhonoured(c.opts, c.base)
	c.mu.Unlock()
	return err
}

func (c *fastClient) Options() client.Options {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return c.opts
}

// unhonoured names an option of o, changed from pkg/k8s's defaults (base),
// that the fast path does not implement; "" when there is none. go-micro
// keeps its gRPC options under keys of its own in the options' Context, so
// any change to that Context counts.
func unhonoured(o, base client.Options) string {
	switch {
	case o.Context != base.Context:
		return "a gRPC option of go-micro's client (AuthTLS, Codec, MaxRecvMsgSize, MaxSendMsgSize, PoolMaxStreams, PoolMaxIdle)"
	case o.PoolSize != base.PoolSize || o.PoolTTL != base.PoolTTL:
		return "PoolSize or PoolTTL"
	}
	return unhonouredCall(o.CallOptions, base.CallOptions)
}

func unhonouredCall(o, base client.CallOptions) string {
	switch {
	case o.Context != base.Context:
		return "a gRPC call option of go-micro's client (DialOptions, CallOptions)"
	case o.Retries != base.Retries:
		return "Retries"
	case o.DialTimeout != base.DialTimeout:
		return "DialTimeout"
	case reflect.ValueOf(o.Backoff).Pointer() != reflect.ValueOf(base.Backoff).Pointer():
		return "Backoff"
	case reflect.ValueOf(o.Retry).Pointer() != reflect.ValueOf(base.Retry).Pointer():
		return "Retry"
	}
	return ""
}

// Call sends the request to the address the call options or the selector
// give, within the context's deadline (or the request timeout), through the
// call wrappers, or hands it to go-micro's client (see fastClient). Like
// go-micro's with pkg/k8s's default of no retries, it tries once: a deadline
// bounds it, Kubernetes takes failed pods out of the Service, and retries
// would multiply an overload.
func (c *fastClient) Call(ctx context.Context, req client.Request, rsp any, opts ...client.CallOption) error {
	if c.err != nil {
		return errors.InternalServerError("go.micro.client", "%v", c.err)
	}
	c.mu.RLock()
	o, sel, stock := c.opts.CallOptions, c.opts.Selector, c.stock
	c.mu.RUnlock()
	if stock != "" || !c.on.Load() {
		return c.Client.Call(ctx, req, rsp, opts...)
	}
	if len(opts) > 0 {
		for _, opt := range opts {
			opt(&o)
		}
		if unhonouredCall(o, c.base.CallOptions) != "" || selectsOwnNode(o.SelectOptions) {
			return c.Client.Call(ctx, req, rsp, opts...)
		}
	}
	target, nodes, err := c.target(sel, req.Service(), o)
	if err != nil {
		return err
	}
	if dialsTLS(target) || slices.ContainsFunc(nodes, dialsTLS) {
		return c.Client.Call(ctx, req, rsp, opts...)
	}
	if _, ok := ctx.Deadline(); !ok && o.RequestTimeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, o.RequestTimeout)
		defer cancel()
	}
	if err := ctx.Err(); err != nil { // as go-micro's client answers it
		return errors.New("go.micro.client", err.Error(), 408)
	}
	call := c.call
	if nodes != nil {
		call = func(ctx context.Context, _ *registry.Node, req client.Request, rsp any, o client.CallOptions) error {
			return c.callNodes(ctx, req.Service(), nodes, req, rsp)
		}
	}
	for i := len(o.CallWrappers); i > 0; i-- {
		call = o.CallWrappers[i-1](call)
	}
	return call(ctx, target, req, rsp, o)
}

// selectsOwnNode tells whether select options choose a strategy of their
// own, which must pick each call's node as go-micro's client lets it.
func selectsOwnNode(opts []selector.SelectOption) bool {
	if len(opts) == 0 {
		return false
	}
	var o selector.SelectOptions
	for _, opt := range opts {
		opt(&o)
	}
	return o.Strategy != nil
}

// dialsTLS tells whether go-micro's client dials node with TLS although no
// AuthTLS is set: port 443, no port, or an https:// address.
func dialsTLS(node *registry.Node) bool {
	_, port, err := net.SplitHostPort(node.Address)
	return err != nil || port == "443" || strings.HasPrefix(node.Address, "https://")
}

// target is the call's node: its address option, or the one node the
// selector gives; or, for a service of several nodes, every node, which
// the call balances over itself. They come through go-micro's strategy
// option, which any selector honours; the static selector gives them
// directly, the same nodes without a Next built per call.
func (c *fastClient) target(sel selector.Selector, service string, o client.CallOptions) (*registry.Node, []*registry.Node, error) {
	if len(o.Address) > 0 {
		return &registry.Node{Address: o.Address[0]}, nil, nil
	}
	if static, ok := sel.(*staticSelector); ok && len(o.SelectOptions) == 0 {
		nodes, err := static.nodes(service)
		if err != nil {
			return nil, nil, errors.InternalServerError("go.micro.client", "selecting %s: %v", service, err)
		}
		if len(nodes) > 1 {
			return nodes[0], nodes, nil
		}
		return nodes[0], nil, nil
	}
	var nodes []*registry.Node
	collect := func(services []*registry.Service) selector.Next {
		for _, s := range services {
			nodes = append(nodes, s.Nodes...)
		}
		return func() (*registry.Node, error) {
			if len(nodes) == 0 {
				return nil, selector.ErrNoneAvailable
			}
			return nodes[0], nil
		}
	}
	next, err := sel.Select(service, append(o.SelectOptions[:len(o.SelectOptions):len(o.SelectOptions)], selector.WithStrategy(collect))...)
	if err != nil {
		return nil, nil, errors.InternalServerError("go.micro.client", "selecting %s: %v", service, err)
	}
	node, err := next()
	if err != nil {
		return nil, nil, errors.InternalServerError("go.micro.client", "selecting %s: %v", service, err)
	}
	if len(nodes) > 1 {
		return node, nodes, nil
	}
	return node, nil, nil
}

func (c *fastClient) call(ctx context.Context, node *registry.Node, req client.Request, rsp any, _ client.CallOptions) error {
	cc, err := c.conn(node.Address)
	if err != nil {
		return errors.InternalServerError("go.micro.client", "connecting to %s: %v", node.Address, err)
	}
	return invoke(ctx, cc, req, rsp)
}

// callNodes sends the call over the service's connection to all of its
// nodes, which gRPC balances round robin over the ones that are up.
func (c *fastClient) callNodes(ctx context.Context, service string, nodes []*registry.Node, req client.Request, rsp any) error {
	cc, err := c.nodesConn(service, nodes)
	if err != nil {
		return errors.InternalServerError("go.micro.client", "connecting to %s: %v", service, err)
	}
	return invoke(ctx, cc, req, rsp)
}

func invoke(ctx context.Context, cc *grpc.ClientConn, req client.Request, rsp any) error {
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
func (c *fastClient) conn(addr string) (*grpc.ClientConn, error) {
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
	cc, err := grpc.NewClient(addr, dialOptions()...)
	if err != nil {
		return nil, err
	}
	c.conns[addr] = cc
	return cc, nil
}

// nodesConn is the one connection to a service of several nodes: gRPC's
// manual resolver gives them all to the balancer, and is given them again
// when the selector's list changes.
func (c *fastClient) nodesConn(service string, nodes []*registry.Node) (*grpc.ClientConn, error) {
	c.mu.RLock()
	n, ok := c.nodes[service]
	c.mu.RUnlock()
	if ok && n.same(nodes) {
		return n.cc, nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if n, ok := c.nodes[service]; ok {
		if !n.same(nodes) {
			n.addrs = addresses(nodes)
			n.r.UpdateState(n.state())
		}
		return n.cc, nil
	}
	n = &serviceConn{r: manual.NewBuilderWithScheme("nodes"), addrs: addresses(nodes)}
	n.r.InitialState(n.state())
	cc, err := grpc.NewClient(n.r.Scheme()+":///"+service, append(dialOptions(), grpc.WithResolvers(n.r))...)
	if err != nil {
		return nil, err
	}
	n.cc = cc
	c.nodes[service] = n
	return cc, nil
}

// serviceConn is a connection to every node of a service.
type serviceConn struct {
	cc    *grpc.ClientConn
	r     *manual.Resolver
	addrs []string // as the resolver last gave them
}

func (n *serviceConn) same(nodes []*registry.Node) bool {
	return slices.EqualFunc(n.addrs, nodes, func(a string, node *registry.Node) bool { return a == node.Address })
}

func (n *serviceConn) state() resolver.State {
	s := resolver.State{}
	for _, a := range n.addrs {
		s.Addresses = append(s.Addresses, resolver.Address{Addr: a})
	}
	return s
}

func addresses(nodes []*registry.Node) []string {
	addrs := make([]string, len(nodes))
	for i, n := range nodes {
		addrs[i] = n.Address
	}
	return addrs
}

// dialOptions are the fast path's connections' options.
func dialOptions() []grpc.DialOption {
	return []grpc.DialOption{
		// Plain text, as go-micro's client dials without AuthTLS (calls
		// that set it, or go to an address go-micro dials with TLS, go
		// through go-micro's client): in the cluster a mesh adds mTLS
		// (see the conduit profile).
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
	}
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
