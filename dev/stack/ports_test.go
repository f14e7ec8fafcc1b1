package stack

import (
	"net"
	"strconv"
	"testing"
)

// TestReserve shows what the reservation promises: the port is outside the
// ephemeral range, a second caller cannot have it, the process it is for
// can still listen on it, and release gives it back.
func TestReserve(t *testing.T) {
	port, release, err := FreePort()
	if err != nil {
		t.Fatal(err)
	}
	if port < firstFree || port >= lastFree {
		t.Errorf("port %d, want one in [%d, %d)", port, firstFree, lastFree)
	}
	if _, err := Reserve(port); err == nil {
		t.Errorf("port %d reserved twice", port)
	}
	l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
	if err != nil {
		t.Fatalf("the reserved port cannot be listened on: %v", err)
	}
	if _, err := Reserve(port); err == nil {
		t.Errorf("port %d reserved while a process listens on it", port)
	}
	l.Close()
	release()
	again, err := Reserve(port)
	if err != nil {
		t.Fatalf("port %d not reservable after release: %v", port, err)
	}
	again()
}
