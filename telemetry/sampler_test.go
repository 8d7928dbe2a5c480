package telemetry

import (
	"reflect"
	"sync"
	"testing"
	"time"
)

func TestNewSamplerDefault(t *testing.T) {
	for _, g := range []time.Duration{0, -time.Second} {
		if s := NewSampler(g); s.granularity != DefaultGranularity {
			t.Errorf("NewSampler(%v): granularity %v, want %v", g, s.granularity, DefaultGranularity)
		}
	}
	if s := NewSampler(time.Second); s.granularity != time.Second {
		t.Errorf("NewSampler(1s): granularity %v", s.granularity)
	}
}

// Within the granularity, samples are shared: the same reading, by Seq.
func TestSamplerShares(t *testing.T) {
	s := NewSampler(time.Hour)
	a, err := s.Sample()
	if err != nil {
		t.Fatal(err)
	}
	b, err := s.Sample()
	if err != nil {
		t.Fatal(err)
	}
	if a.Seq != 1 || b.Seq != 1 || !a.Time.Equal(b.Time) || !reflect.DeepEqual(a, b) {
		t.Errorf("two samples within the granularity: Seq %d at %v and Seq %d at %v, want one reading, Seq 1",
			a.Seq, a.Time, b.Seq, b.Time)
	}
}

// Past the granularity, a sample is a new reading.
func TestSamplerRefreshes(t *testing.T) {
	s := NewSampler(time.Millisecond)
	first, err := s.Sample()
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		next, err := s.Sample()
		if err != nil {
			t.Fatal(err)
		}
		if next.Seq != first.Seq {
			if next.Seq != first.Seq+1 || !next.Time.After(first.Time) {
				t.Errorf("after Seq %d at %v came Seq %d at %v", first.Seq, first.Time, next.Seq, next.Time)
			}
			if d := next.Time.Sub(first.Time); d < time.Millisecond {
				t.Errorf("a new reading %v after the last, within the granularity", d)
			}
			return
		}
		if time.Now().After(deadline) {
			t.Fatal("no new sample in 10 s with a granularity of 1 ms")
		}
	}
}

// Callers arriving together share one reading, and the Sampler is
// race-free (run with -race).
func TestSamplerConcurrent(t *testing.T) {
	s := NewSampler(time.Hour)
	const goroutines = 16
	var wg sync.WaitGroup
	seqs := make([]uint64, goroutines)
	errs := make([]error, goroutines)
	for i := range goroutines {
		wg.Go(func() {
			var a CPUSample
			a, errs[i] = s.Sample()
			seqs[i] = a.Seq
		})
	}
	wg.Wait()
	for i := range goroutines {
		if errs[i] != nil || seqs[i] != 1 {
			t.Errorf("goroutine %d: Seq %d, %v; want the one reading, Seq 1", i, seqs[i], errs[i])
		}
	}

	// With readings happening, Seq only grows for each caller, and
	// Recent's pair is always ordered.
	s = NewSampler(time.Microsecond)
	for i := range goroutines {
		wg.Go(func() {
			var last uint64
			for range 200 {
				var a CPUSample
				if i%2 == 0 {
					a, errs[i] = s.Sample()
				} else {
					var b CPUSample
					b, a, errs[i] = s.Recent(time.Microsecond)
					if errs[i] == nil && b.Seq >= a.Seq && b.Seq != 0 {
						t.Errorf("Recent: before Seq %d, after Seq %d", b.Seq, a.Seq)
					}
				}
				if errs[i] != nil {
					return
				}
				if a.Seq < last || len(a.Cores) == 0 {
					t.Errorf("goroutine %d: Seq %d after %d, %d cores", i, a.Seq, last, len(a.Cores))
					return
				}
				last = a.Seq
			}
		})
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("goroutine %d: %v", i, err)
		}
	}
}

func TestSamplerRecent(t *testing.T) {
	s := NewSampler(time.Hour)
	b1, a1, err := s.Recent(time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	// The first call measures from boot: zero counters for the same cores.
	if b1.Seq != 0 || !b1.Time.IsZero() || b1.All != (CPUTimes{}) || len(b1.Cores) != len(a1.Cores) {
		t.Errorf("first call: before %+v, want the boot baseline", b1)
	}
	for i, c := range b1.Cores {
		if c.Core != a1.Cores[i].Core || c.CPUTimes != (CPUTimes{}) {
			t.Errorf("baseline entry %d: %+v, want core %d at zero", i, c, a1.Cores[i].Core)
		}
	}
	if a1.Seq != 1 {
		t.Errorf("first call: after Seq %d, want 1", a1.Seq)
	}
	u := CPUUsage(b1, a1)
	if want := float64(a1.All.Busy) / float64(a1.All.Total); u.Overall != want {
		t.Errorf("usage from boot %v, want %v", u.Overall, want)
	}

	// Within the interval the pair stays, and it shares the Sample cache.
	b2, a2, err := s.Recent(time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if b2.Seq != 0 || a2.Seq != 1 {
		t.Errorf("second call: Seq %d, %d; want the same pair 0, 1", b2.Seq, a2.Seq)
	}
	if x, _ := s.Sample(); x.Seq != 1 {
		t.Errorf("Sample after Recent: Seq %d, want the shared 1", x.Seq)
	}
}

func TestSamplerRecentMovesOn(t *testing.T) {
	s := NewSampler(time.Millisecond)
	_, first, err := s.Recent(time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		before, after, err := s.Recent(time.Millisecond)
		if err != nil {
			t.Fatal(err)
		}
		if after.Seq != first.Seq {
			// The pair moved on by one: the old newer is the new older.
			if before.Seq != first.Seq || !before.Time.Equal(first.Time) || after.Seq <= first.Seq {
				t.Errorf("pair (%d, %d) after newer %d", before.Seq, after.Seq, first.Seq)
			}
			if d := after.Time.Sub(before.Time); d < time.Millisecond {
				t.Errorf("pair %v apart, want at least the interval", d)
			}
			return
		}
		if before.Seq != 0 {
			t.Fatalf("pair (%d, %d) moved without a new sample", before.Seq, after.Seq)
		}
		if time.Now().After(deadline) {
			t.Fatal("Recent did not move on in 10 s with an interval of 1 ms")
		}
	}
}

// An interval below the granularity cannot make a pair of one reading.
func TestSamplerRecentShortInterval(t *testing.T) {
	s := NewSampler(time.Hour)
	if _, _, err := s.Recent(0); err != nil {
		t.Fatal(err)
	}
	before, after, err := s.Recent(0)
	if err != nil {
		t.Fatal(err)
	}
	if before.Seq == after.Seq {
		t.Errorf("pair (%d, %d): both ends one reading", before.Seq, after.Seq)
	}
}
