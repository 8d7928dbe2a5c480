package telemetry_test

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/hydrogen-mq/hydrogen/telemetry"
)

func ExampleParseSpan() {
	for _, secs := range []float32{1.5, 0, 61} {
		span, err := telemetry.ParseSpan(secs, 60*time.Second)
		if err != nil {
			fmt.Println(errors.Is(err, telemetry.ErrBadSpan), err)
			continue
		}
		fmt.Println(span)
	}
	// Output:
	// 1.5s
	// true span must be positive, got 0
	// true span 61s exceeds the maximum 60s
}

func ExampleErrorReply() {
	_, err := telemetry.ParseSpan(-1, 60*time.Second)
	fmt.Printf("%s\n", telemetry.ErrorReply(err.Error()))
	fmt.Printf("%s\n", telemetry.ErrorReply("a \"quoted\"\nreason"))
	// Output:
	// {"error":"span must be positive, got -1"}
	// {"error":"a \"quoted\"\nreason"}
}

func ExampleCPUUsage() {
	before, err := telemetry.ParseStat(strings.NewReader(
		"cpu  100 0 100 800 0 0 0 0 0 0\ncpu0 50 0 50 400 0 0 0 0 0 0\ncpu2 50 0 50 400 0 0 0 0 0 0\n"))
	if err != nil {
		fmt.Println(err)
		return
	}
	after, err := telemetry.ParseStat(strings.NewReader(
		"cpu  200 0 150 900 50 0 0 0 0 0\ncpu0 150 0 50 400 0 0 0 0 0 0\ncpu2 50 0 100 500 50 0 0 0 0 0\n"))
	if err != nil {
		fmt.Println(err)
		return
	}
	u := telemetry.CPUUsage(before, after)
	fmt.Println("overall", u.Overall)
	for _, c := range u.Cores {
		fmt.Printf("cpu%d %v\n", c.Core, c.Using)
	}
	// Output:
	// overall 0.5
	// cpu0 1
	// cpu2 0.25
}
