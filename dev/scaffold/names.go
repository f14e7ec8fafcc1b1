package main

import (
	"fmt"
	"go/token"
	"regexp"
	"strings"
)

// names are the spellings of a service's name in the places it appears.
type names struct {
	// Name is the service's name: its folder, its go-micro and Kubernetes
	// name, its config section ("order-history").
	Name string
	// Ident is the name as a Go or protobuf package ("orderhistory").
	Ident string
	// Camel is the name as a Go or protobuf type ("OrderHistory").
	Camel string
}

// dnsLabel is a Kubernetes object name that is also a DNS label (RFC 1123).
var dnsLabel = regexp.MustCompile(`^[a-z]([-a-z0-9]*[a-z0-9])?$`)

// parseName checks a new service's name and returns its spellings.
func parseName(name string) (names, error) {
	switch {
	case name == "":
		return names{}, fmt.Errorf("the service needs a name: make new-service NAME=orders")
	case strings.ToLower(name) != name:
		return names{}, fmt.Errorf("%q: the name must be lower case (it is a Kubernetes name): try %q", name, strings.ToLower(name))
	case len(name) > 63 || !dnsLabel.MatchString(name):
		return names{}, fmt.Errorf("%q is not a DNS label: use at most 63 of a-z, 0-9 and '-', starting with a letter and not ending with '-'", name)
	}
	n := names{Name: name, Ident: strings.ReplaceAll(name, "-", "")}
	for _, part := range strings.Split(name, "-") {
		n.Camel += strings.ToUpper(part[:1]) + part[1:]
	}
	if token.IsKeyword(n.Ident) {
		return names{}, fmt.Errorf("%q is a Go keyword: the name is also a Go package name", name)
	}
	return n, nil
}

// replacer rewrites text of the service from as the service to: the most
// specific spellings first, so a Go package name is not taken for a folder.
func replacer(from, to names) *strings.Replacer {
	return strings.NewReplacer(
		from.Ident+"v1", to.Ident+"v1", // Go package of the generated code
		from.Ident+".v1", to.Ident+".v1", // protobuf package
		from.Camel, to.Camel,
		from.Name, to.Name,
	)
}
