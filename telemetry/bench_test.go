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
		for b.Loop() {
			if _, err := ReadCPU(); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("Sampler/read", func(b *testing.B) {
		s := NewSampler(time.Nanosecond)
		b.ReportAllocs()
		for b.Loop() {
			if _, err := s.Sample(); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("Sampler/shared", func(b *testing.B) {
		s := NewSampler(time.Hour)
		b.ReportAllocs()
		for b.Loop() {
			if _, err := s.Sample(); err != nil {
				b.Fatal(err)
			}
		}
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
	for b.Loop() {
		r.Reset(text)
		if _, err := ParseStat(r); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkReadMemInfo(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		if _, err := ReadMemInfo(); err != nil {
			b.Fatal(err)
		}
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
		})
	}
	b.Run("BuildReply/cores=64", func(b *testing.B) {
		before, after := benchSamples(64)
		b.ReportAllocs()
		for b.Loop() {
			BuildReply(time.Time{}, time.Now(), Counters{}, before, after, MemInfo{})
		}
	})
}

func BenchmarkErrorReply(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		ErrorReply("span 61s exceeds the maximum 60s")
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
