// Command pause is the process of every pod's sandbox, which holds the pod's
// namespaces: it does nothing until it is told to stop. No image can be
// pulled where the cluster tier runs, so the tier builds its own.
package main

import (
	"os"
	"os/signal"
	"syscall"
)

func main() {
	stop := make(chan os.Signal, 1)
	signal.Notify(stop, syscall.SIGINT, syscall.SIGTERM)
	<-stop
}
