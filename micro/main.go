// Command micro is go-micro's own command-line toolkit (go-micro.dev/v6/cmd/micro)
// with pkg/k8s's defaults: its call reaches a service by its Kubernetes
// Service's name over gRPC (greeter -> greeter:8080), with no registry.
//
//	micro call greeter Greeter.Hello '{"name":"Ada"}'
//
// The commands are go-micro's, not a rewrite; only those that work without a
// registry are kept, and wait is added for the toolkit's pod (see README.md).
package main

import (
	"fmt"
	"os"

	"go-micro.dev/v6/client"
	"go-micro.dev/v6/cmd"
	_ "go-micro.dev/v6/cmd/micro/cli" // registers go-micro's commands on its default command line

	"github.com/micro/kubernetes/pkg/k8s"
)

func main() {
	if err := k8s.SetMemoryLimit(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	// go-micro's call sends through the package's default client: make it
	// pkg/k8s's, and give the command line a pointer to that variable, so
	// that flags such as --client_request_timeout set the client call uses.
	// JSON: call sends the request as typed, and prints the answer so.
	client.DefaultClient = k8s.NewClient(client.ContentType("application/json"))
	selector := client.DefaultClient.Options().Selector
	c := k8s.NewCmd(
		cmd.Name("micro"),
		cmd.Description("go-micro's toolkit with the Kubernetes defaults: services by their Service's name, over gRPC"),
		cmd.Client(&client.DefaultClient),
		cmd.Selector(&selector),
	)
	app := c.App()
	app.Commands = commands(cmd.App().Commands)
	app.Action = unknown
	if err := app.Run(os.Args); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}
