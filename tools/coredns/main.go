// Command coredns is CoreDNS with only the plugins the cluster tier's DNS
// uses: it answers the cluster's names from the API server and forwards
// nothing, since nothing may leave the test's network namespace. Built this
// way, as CoreDNS documents for a custom set of plugins, it compiles in a
// fraction of the time of the full server with every cloud provider's SDK.
package main

import (
	"github.com/coredns/coredns/core/dnsserver"
	"github.com/coredns/coredns/coremain"
	_ "github.com/coredns/coredns/plugin/bind"
	_ "github.com/coredns/coredns/plugin/cache"
	_ "github.com/coredns/coredns/plugin/errors"
	_ "github.com/coredns/coredns/plugin/kubernetes"
)

// The plugins, in the order CoreDNS's plugin.cfg runs them.
func init() { dnsserver.Directives = []string{"bind", "errors", "cache", "kubernetes"} }

func main() { coremain.Run() }
