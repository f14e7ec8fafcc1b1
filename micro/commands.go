package main

import (
	"fmt"
	"slices"

	"github.com/urfave/cli/v2"
)

// kept are go-micro's commands that work with the static selector: call
// names its service, which is all the selector needs.
var kept = []string{"call"}

// registryCommands are go-micro's commands that read a registry, which
// these services do not use: Kubernetes knows them instead.
var registryCommands = map[string]string{
	"services": "kubectl get services",
	"describe": "kubectl describe service NAME, and the service's proto/ for its endpoints",
}

// commands keeps go-micro's commands that work here, answers the ones that
// need a registry with why they do nothing and what to use instead, and
// adds wait, for the toolkit's pod. The rest are dropped: new, gen, init,
// build and deploy scaffold or ship code from a developer's machine;
// status, logs and stop manage what micro run started; agent needs a model.
func commands(all []*cli.Command) []*cli.Command {
	var out []*cli.Command
	for _, c := range all {
		switch {
		case slices.Contains(kept, c.Name):
			out = append(out, withNewline(c))
		case registryCommands[c.Name] != "":
			out = append(out, withoutRegistry(c.Name, registryCommands[c.Name]))
		}
	}
	return append(out, waitCommand())
}

// withNewline ends a command's output with a new line, which go-micro's
// call leaves out.
func withNewline(c *cli.Command) *cli.Command {
	action := c.Action
	c.Action = func(ctx *cli.Context) error {
		if err := action(ctx); err != nil {
			return err
		}
		_, err := fmt.Fprintln(ctx.App.Writer)
		return err
	}
	return c
}

// withoutRegistry is a command that says why it does nothing here, and
// exits 2.
func withoutRegistry(name, instead string) *cli.Command {
	return &cli.Command{
		Name:            name,
		Usage:           "Needs a registry, which services on Kubernetes do not use: " + instead,
		SkipFlagParsing: true,
		Action: func(*cli.Context) error {
			return cli.Exit(fmt.Sprintf("micro %s reads go-micro's registry, and these services use none: Kubernetes finds them by their Service's name. Instead: %s", name, instead), 2)
		},
	}
}

// unknown answers a command micro does not have. go-micro's own would look
// the word up in the registry as a service's name.
func unknown(ctx *cli.Context) error {
	if ctx.Args().Len() == 0 {
		return cli.ShowAppHelp(ctx)
	}
	return cli.Exit(fmt.Sprintf("micro: no command %q (micro --help lists them)", ctx.Args().First()), 2)
}
