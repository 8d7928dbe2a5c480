package netpoll

import (
	"log/slog"
	"testing"

	"go.uber.org/goleak"

	"github.com/hydrogen-mq/hydrogen/internal/benchecho"
	"github.com/hydrogen-mq/hydrogen/internal/benchproc"
)

// TestMain fails the package if any goroutine outlives the tests: every
// loop must end once its server has shut down. A copy of the test binary
// started by a benchmark as its server process runs that server instead.
func TestMain(m *testing.M) {
	benchproc.Main(benchproc.Servers{
		"netpoll":  serveEcho,
		"baseline": benchecho.ServeBaseline,
	})
	goleak.VerifyTestMain(m)
}

// serveEcho starts a netpoll echo server that runs until the process
// exits.
func serveEcho() (string, error) {
	s, err := Listen(Config{Addr: "127.0.0.1:0", Logger: slog.New(slog.DiscardHandler)}, echoHandler{})
	if err != nil {
		return "", err
	}
	go s.Serve()
	return s.Addr().String(), nil
}
