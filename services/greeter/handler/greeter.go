// Package handler implements the Greeter API.
package handler

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"unicode/utf8"

	"go-micro.dev/v6/errors"
	"google.golang.org/protobuf/proto"

	greeterv1 "github.com/micro/kubernetes/proto/greeter/v1"
)

const (
	// MaxNameLength is the longest name Hello accepts, in characters
	// (runes). It bounds the work and the response a request can cause.
	MaxNameLength = 100
	// NamePlaceholder stands for the name in a greeting.
	NamePlaceholder = "{name}"
	// DefaultGreeting is the greeting when the configuration sets none.
	DefaultGreeting   = "Hello " + NamePlaceholder
	maxGreetingLength = 200
)

// Config is the greeter's part of the configuration file.
type Config struct {
	// Greeting is what Hello answers, with NamePlaceholder once in it.
	Greeting string `json:"greeting"`
}

// ParseConfig reads the greeter's part of a JSON configuration.
func ParseConfig(data []byte) (Config, error) {
	var root struct {
		Greeter Config `json:"greeter"`
	}
	if err := json.Unmarshal(data, &root); err != nil {
		return Config{}, fmt.Errorf("not JSON: %w", err)
	}
	c := root.Greeter
	switch {
	case c.Greeting == "":
		c.Greeting = DefaultGreeting
	case strings.Count(c.Greeting, NamePlaceholder) != 1:
		return Config{}, fmt.Errorf("greeter.greeting %q must hold %s exactly once", c.Greeting, NamePlaceholder)
	case !utf8.ValidString(c.Greeting) || utf8.RuneCountInString(c.Greeting) > maxGreetingLength:
		return Config{}, fmt.Errorf("greeter.greeting must be valid UTF-8 of at most %d characters", maxGreetingLength)
	}
	return c, nil
}

// Greeter answers Greeter.Hello.
type Greeter struct {
	// Config is the current configuration; nil means the defaults.
	Config func() Config
	// Publish publishes an event without waiting (k8s.Publisher's); nil
	// publishes none.
	Publish func(ctx context.Context, subject string, data []byte) string
}

var _ greeterv1.GreeterHandler = Greeter{}

// Hello answers the configured greeting ("Hello <name>" by default) and
// publishes a Greeted event, or answers InvalidArgument for a name it
// refuses.
func (g Greeter) Hello(ctx context.Context, req *greeterv1.HelloRequest, rsp *greeterv1.HelloResponse) error {
	if err := validateName(req.GetName()); err != nil {
		// A go-micro BadRequest travels as gRPC InvalidArgument.
		return errors.BadRequest(greeterv1.ServiceName, "%s", err)
	}
	greeting := DefaultGreeting
	if g.Config != nil {
		greeting = g.Config().Greeting
	}
	rsp.Message = strings.Replace(greeting, NamePlaceholder, req.GetName(), 1)
	if g.Publish != nil {
		// A valid name always marshals: the error is not possible here.
		data, _ := proto.Marshal(&greeterv1.Greeted{Name: req.GetName()})
		g.Publish(ctx, greeterv1.GreetedSubject, data)
	}
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
