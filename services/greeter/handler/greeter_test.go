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
