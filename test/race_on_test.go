//go:build race

package test

// raceEnabled: this test binary runs under the race detector, so the
// broker it runs is built with -race too, and bounds on what the broker
// uses (RSS, time) are those of a race-built broker.
const raceEnabled = true
