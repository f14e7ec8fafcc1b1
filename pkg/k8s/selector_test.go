package k8s

import (
	"strings"
	"testing"

	"go-micro.dev/v6/registry"
	"go-micro.dev/v6/selector"
)

func TestStaticSelectorResolves(t *testing.T) {
	cases := []struct {
		name, domain, port, pinned, want string
	}{
		{name: "defaults", want: "greeter:8080"},
		{name: "pinned", pinned: "other=127.0.0.1:1, greeter=127.0.0.1:18080", port: "9090", want: "127.0.0.1:18080"},
		{name: "pinned elsewhere", pinned: "other=127.0.0.1:1", want: "greeter:8080"},
		{name: "domain", domain: "default.svc.cluster.local", want: "greeter.default.svc.cluster.local:8080"},
		{name: "domain with dots", domain: ".prod.svc.", want: "greeter.prod.svc:8080"},
		{name: "port", port: "9090", want: "greeter:9090"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Setenv(EnvDomainName, c.domain)
			t.Setenv(EnvAddresses, c.pinned)
			if c.port != "" {
				t.Setenv(EnvPortNumber, c.port)
			}
			next, err := NewStaticSelector().Select("greeter")
			if err != nil {
				t.Fatalf("Select: %v", err)
			}
			node, err := next()
			if err != nil {
				t.Fatalf("next: %v", err)
			}
			if node.Address != c.want {
				t.Errorf("address = %q, want %q", node.Address, c.want)
			}
		})
	}
}

func TestStaticSelectorRefusesBadInput(t *testing.T) {
	for _, port := range []string{"", "http", "0", "65536", "-1"} {
		t.Run("port "+port, func(t *testing.T) {
			t.Setenv(EnvPortNumber, port)
			_, err := NewStaticSelector().Select("greeter")
			if err == nil || !strings.Contains(err.Error(), EnvPortNumber) {
				t.Fatalf("Select with %s=%q: err = %v, want one naming the variable", EnvPortNumber, port, err)
			}
		})
	}
	for _, pinned := range []string{"greeter", "greeter=", "=127.0.0.1:1", "greeter=127.0.0.1", "greeter=:8080", "greeter=h:0"} {
		t.Run("address "+pinned, func(t *testing.T) {
			t.Setenv(EnvAddresses, pinned)
			_, err := NewStaticSelector().Select("greeter")
			if err == nil || !strings.Contains(err.Error(), EnvAddresses) {
				t.Fatalf("Select with %s=%q: err = %v, want one naming the variable", EnvAddresses, pinned, err)
			}
		})
	}
	t.Run("empty service", func(t *testing.T) {
		if _, err := NewStaticSelector().Select(""); err == nil {
			t.Fatal("Select(\"\") succeeded")
		}
	})
}

func TestStaticSelectorName(t *testing.T) {
	if got := NewStaticSelector().String(); got != "static" {
		t.Fatalf("String() = %q, want static (the name --selector takes)", got)
	}
}

// A name pinned more than once is one service of several nodes: Select
// gives them to go-micro's strategy (round robin unless the caller picks
// another) after the caller's filters, as go-micro's own selector does.
func TestStaticSelectorGivesEveryPinnedNode(t *testing.T) {
	t.Setenv(EnvAddresses, "greeter=127.0.0.1:1,other=127.0.0.1:3,greeter=127.0.0.1:2")
	s := NewStaticSelector()
	next, err := s.Select("greeter")
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]int{}
	for range 4 {
		node, err := next()
		if err != nil {
			t.Fatal(err)
		}
		seen[node.Address]++
	}
	if seen["127.0.0.1:1"] != 2 || seen["127.0.0.1:2"] != 2 {
		t.Errorf("four nodes from one Select: %v, want each address twice, in turn", seen)
	}

	var given []string
	_, err = s.Select("greeter", selector.WithStrategy(func(services []*registry.Service) selector.Next {
		for _, svc := range services {
			for _, n := range svc.Nodes {
				given = append(given, n.Address)
			}
		}
		return nil
	}))
	if err != nil || strings.Join(given, ",") != "127.0.0.1:1,127.0.0.1:2" {
		t.Errorf("the caller's strategy was given %v (%v), want both addresses in order", given, err)
	}

	none := selector.WithFilter(func([]*registry.Service) []*registry.Service { return nil })
	if _, err := s.Select("greeter", none); err != selector.ErrNoneAvailable {
		t.Errorf("a filter that leaves no node: %v, want %v", err, selector.ErrNoneAvailable)
	}
}
