// Package testnet holds what tests that start brokers on loopback share:
// running the broker binary and waiting for its address, and picking
// free cluster addresses.
package testnet

import (
	"math/rand/v2"
	"net"
	"strconv"
	"testing"
)

// ClusterAddr picks a loopback cluster address whose port and the next
// (the automanaged membership provider's, on every interface) are both
// free. Ports come from below the kernel's ephemeral range, where a run of
// many client connections leaves thousands of sockets in TIME_WAIT.
func ClusterAddr(t testing.TB) string {
	t.Helper()
	var lastErr error
	for range 200 {
		port := 15000 + 2*rand.IntN(8000)
		l, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(port))
		if err != nil {
			lastErr = err
			continue
		}
		l2, err := net.Listen("tcp", ":"+strconv.Itoa(port+1))
		l.Close()
		if err != nil {
			lastErr = err
			continue
		}
		l2.Close()
		return "127.0.0.1:" + strconv.Itoa(port)
	}
	t.Fatalf("no free port pair: %v", lastErr)
	return ""
}
