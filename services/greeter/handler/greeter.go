// Package handler implements the Greeter API.
package handler

import (
	"context"
	"fmt"
	"unicode/utf8"

	"go-micro.dev/v6/errors"

	greeterv1 "github.com/micro/kubernetes/proto/greeter/v1"
)

// MaxNameLength is the longest name Hello accepts, in characters (runes).
// It bounds the work and the response size a single request can cause.
const MaxNameLength = 100

// Greeter answers Greeter.Hello.
type Greeter struct{}

var _ greeterv1.GreeterHandler = Greeter{}

// Hello answers "Hello <name>", or InvalidArgument for a name it refuses.
func (Greeter) Hello(_ context.Context, req *greeterv1.HelloRequest, rsp *greeterv1.HelloResponse) error {
	if err := validateName(req.GetName()); err != nil {
		// A go-micro BadRequest travels as gRPC InvalidArgument.
		return errors.BadRequest(greeterv1.ServiceName, "%s", err)
	}
	rsp.Message = "Hello " + req.GetName()
	return nil
}

func validateName(name string) error {
	switch {
	case name == "":
		return fmt.Errorf("name must not be empty")
	case !utf8.ValidString(name):
		return fmt.Errorf("name must be valid UTF-8")
	case utf8.RuneCountInString(name) > MaxNameLength:
		return fmt.Errorf("name must be at most %d characters, got %d", MaxNameLength, utf8.RuneCountInString(name))
	}
	return nil
}
