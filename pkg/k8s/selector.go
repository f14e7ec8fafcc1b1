package k8s

import (
	"fmt"
	"net"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"

	"go-micro.dev/v6/registry"
	"go-micro.dev/v6/selector"
)

const (
	// SelectorName is the name the static selector answers to:
	// --selector=static or MICRO_SELECTOR=static.
	SelectorName = "static"
	// EnvDomainName, when set, is appended to the service name, for example
	// "default.svc.cluster.local" to resolve "greeter" in another namespace.
	EnvDomainName = "STATIC_SELECTOR_DOMAIN_NAME"
	// EnvPortNumber overrides the port the static selector dials.
	EnvPortNumber = "STATIC_SELECTOR_PORT_NUMBER"
	// EnvAddresses pins services to addresses, bypassing the name rule:
	// "greeter=127.0.0.1:8080,other=127.0.0.1:8082". It is how the services
	// find each other on one machine, where no DNS knows "greeter". A name
	// given more than once has several addresses, balanced as a headless
	// Service's pods are: "greeter=127.0.0.1:8090,greeter=127.0.0.1:8092".
	EnvAddresses = "STATIC_SELECTOR_ADDRESSES"
	// DefaultPort is the port every service listens on and every Kubernetes
	// Service exposes, so the static selector dials it by default.
	DefaultPort = 8080
)

// staticSelector resolves a service name to the address of the Kubernetes
// Service of that name and lets Kubernetes (or a mesh) balance behind it.
// A name pinned to several addresses is a service of several nodes, handed
// to the select options' filters and strategy as go-micro's own selector
// hands a registry's nodes: round robin unless told otherwise.
type staticSelector struct {
	opts   selector.Options
	domain string
	port   string
	pinned map[string][]*registry.Service // from EnvAddresses
	names  sync.Map                       // service name -> []*registry.Service, by the name rule
	err    error                          // a bad environment, reported by every Select
}

// NewStaticSelector returns the static selector, configured from
// STATIC_SELECTOR_DOMAIN_NAME, STATIC_SELECTOR_PORT_NUMBER and
// STATIC_SELECTOR_ADDRESSES.
func NewStaticSelector(opts ...selector.Option) selector.Selector {
	s := &staticSelector{
		opts:   selector.Options{Strategy: selector.RoundRobin},
		domain: strings.Trim(os.Getenv(EnvDomainName), "."),
		port:   strconv.Itoa(DefaultPort),
	}
	if p, ok := os.LookupEnv(EnvPortNumber); ok {
		if !isPort(p) {
			s.err = fmt.Errorf("static selector: %s=%q is not a port number (1-65535)", EnvPortNumber, p)
		}
		s.port = p
	}
	if s.err == nil {
		s.pinned, s.err = parseAddresses(os.Getenv(EnvAddresses))
	}
	_ = s.Init(opts...)
	return s
}

func isPort(p string) bool {
	n, err := strconv.Atoi(p)
	return err == nil && n >= 1 && n <= 65535
}

// parseAddresses reads "name=host:port,name=host:port": a service of one
// node per address, in the order given.
func parseAddresses(v string) (map[string][]*registry.Service, error) {
	pinned := map[string][]*registry.Service{}
	for _, entry := range strings.Split(v, ",") {
		if entry = strings.TrimSpace(entry); entry == "" {
			continue
		}
		name, addr, ok := strings.Cut(entry, "=")
		host, port, err := net.SplitHostPort(addr)
		if !ok || name == "" || err != nil || host == "" || !isPort(port) {
			return nil, fmt.Errorf("static selector: %s entry %q is not name=host:port", EnvAddresses, entry)
		}
		if pinned[name] == nil {
			pinned[name] = []*registry.Service{{Name: name}}
		}
		svc := pinned[name][0]
		svc.Nodes = append(svc.Nodes, &registry.Node{Id: fmt.Sprintf("%s-%d", name, len(svc.Nodes)), Address: addr})
	}
	return pinned, nil
}

func (s *staticSelector) Init(opts ...selector.Option) error {
	for _, o := range opts {
		o(&s.opts)
	}
	return nil
}

func (s *staticSelector) Options() selector.Options { return s.opts }

// Select gives the service's nodes (the one address of its Kubernetes
// Service, or the addresses it is pinned to) through the select options'
// filters to their strategy, or the selector's.
func (s *staticSelector) Select(service string, opts ...selector.SelectOption) (selector.Next, error) {
	if s.err != nil {
		return nil, s.err
	}
	if service == "" {
		return nil, selector.ErrNotFound
	}
	services := s.services(service)
	o := selector.SelectOptions{Strategy: s.opts.Strategy}
	for _, opt := range opts {
		opt(&o)
	}
	for _, filter := range o.Filters {
		services = filter(services)
	}
	if !slices.ContainsFunc(services, func(s *registry.Service) bool { return len(s.Nodes) > 0 }) {
		return nil, selector.ErrNoneAvailable
	}
	return o.Strategy(services), nil
}

// services are the service's nodes: the addresses it is pinned to, or the
// one the name rule gives.
func (s *staticSelector) services(service string) []*registry.Service {
	if pinned, ok := s.pinned[service]; ok {
		return pinned
	}
	return s.named(service)
}

// nodes are the service's nodes as Select gives them without select
// options, for pkg/k8s's client: the same nodes, without building a
// strategy's Next on every call.
func (s *staticSelector) nodes(service string) ([]*registry.Node, error) {
	if s.err != nil {
		return nil, s.err
	}
	if service == "" {
		return nil, selector.ErrNotFound
	}
	return s.services(service)[0].Nodes, nil
}

// named is the service of the one node the name rule gives: the Service's
// DNS name and the port. Each is made once: a call selects on every call.
func (s *staticSelector) named(service string) []*registry.Service {
	if v, ok := s.names.Load(service); ok {
		return v.([]*registry.Service)
	}
	host := service
	if s.domain != "" {
		host += "." + s.domain
	}
	services := []*registry.Service{{Name: service, Nodes: []*registry.Node{{Id: service, Address: net.JoinHostPort(host, s.port)}}}}
	v, _ := s.names.LoadOrStore(service, services)
	return v.([]*registry.Service)
}

// Mark and Reset do nothing: Kubernetes, not the client, takes failed pods out
// of rotation (readiness probes and endpoint removal).
func (s *staticSelector) Mark(string, *registry.Node, error) {}
func (s *staticSelector) Reset(string)                       {}
func (s *staticSelector) Close() error                       { return nil }
func (s *staticSelector) String() string                     { return SelectorName }
