// Command scaffold makes this repository yours (make new-service, make
// rename):
//
//	go run ./dev/scaffold new-service NAME   adds a go-micro service, derived from the greeter
//	go run ./dev/scaffold rename MODULE      rewrites the Go module path everywhere
//
// Each checks its input before writing anything, and puts the tree back as
// it was if a step fails midway.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/micro/kubernetes/dev/stack"
)

const usage = "usage: scaffold new-service NAME | scaffold rename MODULE"

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string) error {
	if len(args) != 2 {
		return fmt.Errorf("%s", usage)
	}
	root, err := stack.Root(ctx)
	if err != nil {
		return err
	}
	t := newTx(root)
	switch args[0] {
	case "new-service":
		n, err := parseName(args[1])
		if err != nil {
			return err
		}
		written, err := newService(ctx, root, n, t, generate)
		if err != nil {
			return err
		}
		fmt.Printf("added the service %s, derived from the greeter:\n%s", n.Name, list(written))
		fmt.Printf("It builds, tests and deploys like the greeter: make test; make run starts it; make dev deploys it.\n")
	case "rename":
		written, err := rename(ctx, root, args[1], t, generate)
		if err != nil {
			return err
		}
		fmt.Printf("the module is now %s; changed %d files (make test checks the result)\n", args[1], len(written))
	default:
		return fmt.Errorf("%s", usage)
	}
	return nil
}
