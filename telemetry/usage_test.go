package telemetry

import (
	"reflect"
	"testing"
	"time"
)

func TestBusyFraction(t *testing.T) {
	tests := []struct {
		name   string
		before CPUTimes
		after  CPUTimes
		want   float64
	}{
		{"half", CPUTimes{Busy: 100, Total: 1000}, CPUTimes{Busy: 150, Total: 1100}, 0.5},
		{"all", CPUTimes{Busy: 100, Total: 1000}, CPUTimes{Busy: 200, Total: 1100}, 1},
		{"none", CPUTimes{Busy: 100, Total: 1000}, CPUTimes{Busy: 100, Total: 1100}, 0},
		{"a third", CPUTimes{Busy: 0, Total: 0}, CPUTimes{Busy: 1, Total: 3}, 1.0 / 3},
		{"counters did not move", CPUTimes{Busy: 100, Total: 1000}, CPUTimes{Busy: 100, Total: 1000}, 0},
		{"zero samples", CPUTimes{}, CPUTimes{}, 0},
		// iowait can decrease, so busy can grow by more than the total.
		{"busy beyond total", CPUTimes{Busy: 100, Total: 1000}, CPUTimes{Busy: 300, Total: 1100}, 1},
		{"busy went backwards", CPUTimes{Busy: 100, Total: 1000}, CPUTimes{Busy: 90, Total: 1100}, 0},
		{"total went backwards", CPUTimes{Busy: 100, Total: 1000}, CPUTimes{Busy: 150, Total: 900}, 0},
		{"samples swapped", CPUTimes{Busy: 150, Total: 1100}, CPUTimes{Busy: 100, Total: 1000}, 0},
	}
	for _, tt := range tests {
		if got := busyFraction(tt.before, tt.after); got != tt.want {
			t.Errorf("%s: busyFraction(%+v, %+v) = %v, want %v", tt.name, tt.before, tt.after, got, tt.want)
		}
	}
}

func TestCPUUsageMatchesCoresByNumber(t *testing.T) {
	before := CPUSample{
		All: CPUTimes{Busy: 0, Total: 0},
		Cores: []CoreTimes{
			{0, CPUTimes{Busy: 10, Total: 100}},
			{1, CPUTimes{Busy: 10, Total: 100}}, // goes offline
			{2, CPUTimes{Busy: 10, Total: 100}},
			{3, CPUTimes{Busy: 10, Total: 100}},
		},
	}
	after := CPUSample{
		All: CPUTimes{Busy: 30, Total: 120},
		Cores: []CoreTimes{
			{0, CPUTimes{Busy: 20, Total: 200}},  // 10 of 100
			{2, CPUTimes{Busy: 60, Total: 200}},  // at index 1 now: 50 of 100
			{3, CPUTimes{Busy: 10, Total: 100}},  // did not move
			{5, CPUTimes{Busy: 500, Total: 600}}, // came online: nothing to compare
		},
	}
	got := CPUUsage(before, after)
	want := Usage{Overall: 0.25, Cores: []CoreUsage{{0, 0.1}, {2, 0.5}, {3, 0}, {5, 0}}}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got %+v, want %+v", got, want)
	}
}

func TestCPUUsageNoCores(t *testing.T) {
	u := CPUUsage(CPUSample{}, CPUSample{})
	if u.Cores == nil || len(u.Cores) != 0 || u.Overall != 0 {
		t.Errorf("got %+v, want no usage and an empty, non-nil Cores", u)
	}
}

// Burning CPU on a goroutine between two real samples shows as busy time.
func TestCPUUsageReal(t *testing.T) {
	before, err := ReadCPU()
	if err != nil {
		t.Fatal(err)
	}
	stop := make(chan struct{})
	result := make(chan uint64)
	go func() {
		var x uint64
		for {
			select {
			case <-stop:
				result <- x
				return
			default:
			}
			for i := uint64(0); i < 100_000; i++ {
				x = x*31 + i
			}
		}
	}()
	defer func() {
		close(stop)
		<-result
	}()

	// Wait until 200 ms of ticks (USER_HZ is 100) have passed on every
	// core, so the busy goroutine has had time to be counted.
	wantTicks := 20 * uint64(len(before.Cores))
	deadline := time.NewTimer(10 * time.Second)
	defer deadline.Stop()
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	var after CPUSample
	for {
		select {
		case <-deadline.C:
			t.Fatalf("the aggregate counters moved %d ticks in 10 s, want %d", after.All.Total-before.All.Total, wantTicks)
		case <-tick.C:
		}
		if after, err = ReadCPU(); err != nil {
			t.Fatal(err)
		}
		if after.All.Total-before.All.Total >= wantTicks {
			break
		}
	}

	u := CPUUsage(before, after)
	if u.Overall <= 0 || u.Overall > 1 {
		t.Errorf("overall %v while a goroutine spun, want in (0, 1]", u.Overall)
	}
	if len(u.Cores) != len(after.Cores) {
		t.Fatalf("%d cores, want %d", len(u.Cores), len(after.Cores))
	}
	busiest := 0.0
	for i, c := range u.Cores {
		if c.Core != after.Cores[i].Core || c.Using < 0 || c.Using > 1 {
			t.Errorf("entry %d: %+v, want core %d using in [0, 1]", i, c, after.Cores[i].Core)
		}
		busiest = max(busiest, c.Using)
	}
	if busiest == 0 {
		t.Errorf("no core busy while a goroutine spun: %+v", u.Cores)
	}
}
