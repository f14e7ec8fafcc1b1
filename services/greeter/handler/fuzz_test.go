package handler

import (
	"context"
	"net/http"
	"testing"
	"unicode/utf8"

	"go-micro.dev/v6/errors"

	greeterv1 "github.com/micro/kubernetes/proto/greeter/v1"
)

// FuzzHello: any name is greeted exactly when it is valid, and refused with
// a 400 (InvalidArgument) otherwise; nothing panics.
func FuzzHello(f *testing.F) {
	for _, seed := range []string{"Alice", "", "世界", "\xff", "<script>alert(1)</script>", "a\x00b"} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, name string) {
		rsp := new(greeterv1.HelloResponse)
		err := Greeter{}.Hello(context.Background(), &greeterv1.HelloRequest{Name: name}, rsp)
		valid := name != "" && utf8.ValidString(name) && utf8.RuneCountInString(name) <= MaxNameLength
		switch {
		case valid && (err != nil || rsp.Message != "Hello "+name):
			t.Fatalf("Hello(%q) = %q, %v; want a greeting", name, rsp.Message, err)
		case !valid && (err == nil || errors.FromError(err).Code != http.StatusBadRequest):
			t.Fatalf("Hello(%q) = %q, %v; want a 400", name, rsp.Message, err)
		}
	})
}
