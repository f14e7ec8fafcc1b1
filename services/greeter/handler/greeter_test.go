package handler

import (
	"context"
	"net/http"
	"strings"
	"testing"

	"go-micro.dev/v6/errors"

	greeterv1 "github.com/micro/kubernetes/proto/greeter/v1"
)

func TestHello(t *testing.T) {
	for _, name := range []string{"Alice", "世界", strings.Repeat("é", MaxNameLength)} {
		rsp := new(greeterv1.HelloResponse)
		if err := (Greeter{}).Hello(context.Background(), &greeterv1.HelloRequest{Name: name}, rsp); err != nil {
			t.Fatalf("Hello(%q): %v", name, err)
		}
		if want := "Hello " + name; rsp.Message != want {
			t.Errorf("Hello(%q) = %q, want %q", name, rsp.Message, want)
		}
	}
}

func TestHelloRefusesBadNames(t *testing.T) {
	cases := map[string]struct{ name, detail string }{
		"empty":     {"", "must not be empty"},
		"too long":  {strings.Repeat("a", MaxNameLength+1), "at most 100 characters"},
		"not UTF-8": {"\xff\xfe", "valid UTF-8"},
	}
	for what, c := range cases {
		t.Run(what, func(t *testing.T) {
			err := (Greeter{}).Hello(context.Background(), &greeterv1.HelloRequest{Name: c.name}, new(greeterv1.HelloResponse))
			merr := errors.FromError(err)
			if merr == nil || merr.Code != http.StatusBadRequest || !strings.Contains(merr.Detail, c.detail) {
				t.Fatalf("Hello(%q) error = %v, want a 400 saying %q", c.name, err, c.detail)
			}
		})
	}
}

func TestConfiguredGreeting(t *testing.T) {
	c, err := ParseConfig([]byte(`{"greeter": {"greeting": "Bonjour {name} !"}}`))
	if err != nil {
		t.Fatal(err)
	}
	rsp := new(greeterv1.HelloResponse)
	if err := (Greeter{Config: func() Config { return c }}).Hello(context.Background(), &greeterv1.HelloRequest{Name: "Ada"}, rsp); err != nil {
		t.Fatal(err)
	}
	if rsp.Message != "Bonjour Ada !" {
		t.Fatalf("Hello = %q", rsp.Message)
	}
}

func TestParseConfig(t *testing.T) {
	if c, err := ParseConfig([]byte(`{}`)); err != nil || c.Greeting != DefaultGreeting {
		t.Errorf("no greeting: %+v, %v; want the default", c, err)
	}
	for _, bad := range []string{`{"greeter": {"greeting": "Hello"}}`, `{"greeter": {"greeting": "{name} {name}"}}`,
		`{"greeter": {"greeting": 3}}`, `{"greeter": `, `{"greeter": {"greeting": "` + strings.Repeat("x", 201) + `{name}"}}`} {
		if _, err := ParseConfig([]byte(bad)); err == nil {
			t.Errorf("ParseConfig(%.40s) accepted it", bad)
		}
	}
}
