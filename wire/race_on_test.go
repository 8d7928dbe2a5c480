//go:build race

package wire_test

// raceEnabled: the race detector makes sync.Pool drop a quarter of what
// is put back, so tests of pooled allocation run without it (scripts/test
// runs them so).
const raceEnabled = true
