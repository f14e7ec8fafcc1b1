package stack

import (
	"fmt"
	"math/rand/v2"
	"net"
	"strconv"
)

// Free ports are taken from below the ephemeral range Linux (32768-60999)
// and macOS (49152-65535) give outgoing connections: a port found free with
// Listen(":0") and closed is in that range, and any connection made before
// the child process binds it can take it ("bind: address already in use",
// seen in CI). The range leaves room for MetricsOffset above each port.
const firstFree, lastFree = 20000, 31000

// Reserve takes a loopback TCP port for a process this one is about to
// start: it is free now, and no other caller of Reserve, in this process or
// in another test binary running beside it, gets it until release. The lock
// is a UDP socket on the same number: UDP and TCP ports are separate, so
// it keeps other callers off without occupying the TCP port.
func Reserve(port int) (release func(), err error) {
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	lock, err := net.ListenPacket("udp", addr)
	if err != nil {
		return nil, fmt.Errorf("port %d is reserved: %w", port, err)
	}
	l, err := net.Listen("tcp", addr)
	if err != nil {
		lock.Close()
		return nil, fmt.Errorf("port %d is in use: %w", port, err)
	}
	l.Close()
	return func() { lock.Close() }, nil
}

// FreePort reserves a free loopback port (see Reserve).
func FreePort() (port int, release func(), err error) {
	n := lastFree - firstFree
	start := rand.IntN(n)
	for i := range n {
		port := firstFree + (start+i)%n
		if release, err := Reserve(port); err == nil {
			return port, release, nil
		}
	}
	return 0, nil, fmt.Errorf("no free loopback port from %d to %d", firstFree, lastFree-1)
}
