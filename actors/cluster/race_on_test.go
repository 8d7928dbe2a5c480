//go:build race

package cluster_test

// raceDetector: protoactor-go itself has data races that show once two
// nodes share a process: remote.Start sets grpclog's global logger while
// another node's gRPC server logs, and the gossip actor updates its state
// while the remote endpoint writer marshals the same messages. Tests that
// form a multi-node cluster in one process skip under -race; the broker's
// end-to-end cluster test (one node per process) covers the same ground.
const raceDetector = true
