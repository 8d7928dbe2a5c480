package netpoll

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the package if any goroutine outlives the tests: every
// loop must end once its server has shut down.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}
