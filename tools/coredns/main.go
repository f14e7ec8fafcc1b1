// Command coredns is CoreDNS with only the plugins the cluster tier's DNS
// uses: it answers the cluster's names from the API server and forwards
// nothing, since nothing may leave the test's network namespace; it says
// when it is ready and keeps answering for a while after SIGTERM (health's
// lameduck), as clusters run it. Built this
// way, as CoreDNS documents for a custom set of plugins, it compiles in a
// fraction of the time of the full server with every cloud provider's SDK.
package main

import (
	"github.com/coredns/coredns/core/dnsserver"
	"github.com/coredns/coredns/coremain"
	_ "github.com/coredns/coredns/plugin/bind"
	_ "github.com/coredns/coredns/plugin/cache"
	_ "github.com/coredns/coredns/plugin/errors"
	_ "github.com/coredns/coredns/plugin/health"
	_ "github.com/coredns/coredns/plugin/kubernetes"
	_ "github.com/coredns/coredns/plugin/ready"
)

// The plugins, in the order CoreDNS's plugin.cfg runs them.
func init() {
	dnsserver.Directives = []string{"bind", "ready", "health", "errors", "cache", "kubernetes"}
}

func main() { coremain.Run() }
