package telemetry

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"
)

// BenchmarkReadCPU reads the real /proc/stat. ReadFile, reading the file
// and parsing nothing, is the floor to compare with; Sampler/read is a
// Sampler that reads every time (reusing its buffer), Sampler/shared one
// that hands out its cached sample.
func BenchmarkReadCPU(b *testing.B) {
	b.Run("ReadFile", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := os.ReadFile(statPath); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("ReadCPU", func(b *testing.B) {
		b.ReportAllocs()
		var s CPUSample
		for b.Loop() {
			var err error
			if s, err = ReadCPU(); err != nil {
				b.Fatal(err)
			}
		}
		benchCheckSample(b, s)
	})
	b.Run("Sampler/read", func(b *testing.B) {
		s := NewSampler(time.Nanosecond)
		b.ReportAllocs()
		var got CPUSample
		for b.Loop() {
			var err error
			if got, err = s.Sample(); err != nil {
				b.Fatal(err)
			}
		}
		benchCheckSample(b, got)
	})
	b.Run("Sampler/shared", func(b *testing.B) {
		s := NewSampler(time.Hour)
		b.ReportAllocs()
		var got CPUSample
		for b.Loop() {
			var err error
			if got, err = s.Sample(); err != nil {
				b.Fatal(err)
			}
		}
		benchCheckSample(b, got)
	})
}

// BenchmarkParseStat parses the /proc/stat of a 64-core machine.
func BenchmarkParseStat(b *testing.B) {
	var sb strings.Builder
	sb.WriteString("cpu  3894517 1203 1094822 311239588 78411 0 39458 0 0 0\n")
	for i := range 64 {
		fmt.Fprintf(&sb, "cpu%d 60852 18 17106 4863118 1225 0 616 0 0 0\n", i)
	}
	sb.WriteString("intr 1 " + strings.Repeat("0 ", 500) + "\nctxt 10166359\nbtime 1795845662\n")
	text := sb.String()
	b.SetBytes(int64(len(text)))
	b.ReportAllocs()
	r := strings.NewReader(text)
	var got CPUSample
	for b.Loop() {
		r.Reset(text)
		var err error
		if got, err = ParseStat(r); err != nil {
			b.Fatal(err)
		}
	}
	// The text's figures: the cpu line's busy time is all but idle and
	// iowait, and 64 cores in order.
	if len(got.Cores) != 64 || got.Cores[63].Core != 63 || got.All.Total != 3894517+1203+1094822+311239588+78411+39458 {
		b.Fatalf("parsed %d cores, all %+v", len(got.Cores), got.All)
	}
}

// benchCheckSample fails b unless s has a core for every CPU this process may
// run on, and a total no smaller than its busy time.
func benchCheckSample(b *testing.B, s CPUSample) {
	b.Helper()
	if len(s.Cores) == 0 || s.All.Total == 0 || s.All.Busy > s.All.Total {
		b.Fatalf("sample %+v", s)
	}
}

func BenchmarkReadMemInfo(b *testing.B) {
	b.ReportAllocs()
	var m MemInfo
	for b.Loop() {
		var err error
		if m, err = ReadMemInfo(); err != nil {
			b.Fatal(err)
		}
	}
	if m.Total == 0 || m.Available > m.Total || m.RSS == 0 {
		b.Fatalf("MemInfo %+v", m)
	}
}

// BenchmarkReply encodes a reply for 2 and for 64 cores, with
// encoding/json as the baseline.
func BenchmarkReply(b *testing.B) {
	for _, cores := range []int{2, 64} {
		r := benchReply(cores)
		b.Run(fmt.Sprintf("cores=%d/AppendJSON", cores), func(b *testing.B) {
			buf, err := r.AppendJSON(nil)
			if err != nil {
				b.Fatal(err)
			}
			b.SetBytes(int64(len(buf)))
			b.ReportAllocs()
			for b.Loop() {
				if buf, err = r.AppendJSON(buf[:0]); err != nil {
					b.Fatal(err)
				}
			}
			checkReplyJSON(b, buf, cores)
		})
		b.Run(fmt.Sprintf("cores=%d/encoding-json", cores), func(b *testing.B) {
			var buf bytes.Buffer
			enc := json.NewEncoder(&buf)
			enc.SetEscapeHTML(false)
			b.ReportAllocs()
			for b.Loop() {
				buf.Reset()
				if err := enc.Encode(&r); err != nil {
					b.Fatal(err)
				}
			}
			b.SetBytes(int64(buf.Len()))
			checkReplyJSON(b, buf.Bytes(), cores)
		})
	}
	b.Run("BuildReply/cores=64", func(b *testing.B) {
		before, after := benchSamples(64)
		b.ReportAllocs()
		var r Reply
		for b.Loop() {
			r = BuildReply(time.Time{}, time.Now(), Counters{}, before, after, MemInfo{})
		}
		// Core i was busy 7i of 100 ticks; all cores 100 of 100 each.
		if len(r.Resources.CPUPerCore) != 64 || r.Resources.CPUPerCore[10].Using != 0.7 || r.Resources.CPUOverall != 1 {
			b.Fatalf("reply %+v", r.Resources)
		}
	})
}

// checkReplyJSON fails b unless buf is a JSON reply with the fields
// benchReply gave it.
func checkReplyJSON(b *testing.B, buf []byte, cores int) {
	b.Helper()
	var got struct {
		NumClients int64 `json:"num_clients"`
		Resources  struct {
			CPUPerCore []CoreUsage `json:"cpu_per_core"`
		} `json:"resources"`
	}
	if err := json.Unmarshal(buf, &got); err != nil || got.NumClients != 10000 || len(got.Resources.CPUPerCore) != cores {
		b.Fatalf("reply %.200s: %v", buf, err)
	}
}

func BenchmarkErrorReply(b *testing.B) {
	b.ReportAllocs()
	var got []byte
	for b.Loop() {
		got = ErrorReply("span 61s exceeds the maximum 60s")
	}
	if string(got) != `{"error":"span 61s exceeds the maximum 60s"}` {
		b.Fatalf("ErrorReply gave %s", got)
	}
}

func benchSamples(cores int) (before, after CPUSample) {
	for i := range cores {
		before.Cores = append(before.Cores, CoreTimes{i, CPUTimes{Busy: 1000, Total: 10000}})
		after.Cores = append(after.Cores, CoreTimes{i, CPUTimes{Busy: 1000 + uint64(i)*7, Total: 10100}})
	}
	before.All = CPUTimes{Busy: 1000 * uint64(cores), Total: 10000 * uint64(cores)}
	after.All = CPUTimes{Busy: 1100 * uint64(cores), Total: 10100 * uint64(cores)}
	return before, after
}

func benchReply(cores int) Reply {
	before, after := benchSamples(cores)
	c := Counters{BytesRecv: 1 << 40, BytesSent: 1 << 41, MsgRecv: 1 << 30, MsgSent: 1 << 31, NumClients: 10000}
	return BuildReply(time.Now().Add(-time.Hour), time.Now(), c, before, after, MemInfo{Total: 16 << 30, Available: 9 << 30, RSS: 50 << 20})
}
