package client

import (
	"errors"
	"strings"
	"testing"
)

func TestIsReply(t *testing.T) {
	tests := []struct {
		payload string
		want    bool
	}{
		{`{"up_time":1}`, true},
		{`{"up_time":null}`, true}, // recognised; parseReply rejects it
		{`{"bytes_recv":1,"up_time":1}`, true},
		{" \r\n\t{\"up_time\":1} \n", true},
		{`{"error":"span is NaN"}`, true},
		{`{"error":""}`, true},
		{`{ "error" : "x\"y" }`, true},
		{`{"error":"a","error":"b"}`, true}, // one member after decoding, as encoding/json sees it

		{``, false},
		{`plain`, false},
		{`{}`, false},
		{`null`, false},
		{`{"uptime":1}`, false},
		{`{"Up_Time":1}`, false},
		{`{"nested":{"up_time":1}}`, false},
		{`{"error":"x","code":1}`, false},
		{`{"error":1}`, false},
		{`{"error":null}`, false},
		{`{"error":{"up_time":1}}`, false},
		{`["up_time"]`, false},
		{`"up_time"`, false},
		{`{"up_time":1`, false},
		{`{"up_time":1}{}`, false},
		{"\x0d\x3f\x80\x00\x00", false},
	}
	for _, tt := range tests {
		if got := isReply([]byte(tt.payload)); got != tt.want {
			t.Errorf("isReply(%q) = %v, want %v", tt.payload, got, tt.want)
		}
	}
}

func TestParseReplyRejects(t *testing.T) {
	const res = `"resources":{"ram":{"bytes_used":1,"bytes_available":2},"cpu_overall":0.5,"cpu_per_core":[{"core":0,"using":0.5}]}`
	const counters = `"up_time":1,"bytes_recv":1,"bytes_sent":1,"msg_recv":1,"msg_sent":1,"num_clients":1`
	tests := []struct {
		name, reply, mention string
	}{
		{"missing counter", `{"up_time":1,"bytes_recv":1,"bytes_sent":1,"msg_recv":1,"msg_sent":1,` + res + `}`, "num_clients"},
		{"null counter", `{` + strings.Replace(counters, `"msg_sent":1`, `"msg_sent":null`, 1) + `,` + res + `}`, "msg_sent"},
		{"missing resources", `{` + counters + `}`, "resources"},
		{"resources not an object", `{` + counters + `,"resources":[]}`, "resources"},
		{"missing ram", `{` + counters + `,"resources":{"cpu_overall":0.5,"cpu_per_core":[]}}`, "resources.ram"},
		{"missing bytes_available", `{` + counters + `,"resources":{"ram":{"bytes_used":1},"cpu_overall":0.5,"cpu_per_core":[]}}`, "bytes_available"},
		{"cpu_per_core not an array", `{` + counters + `,"resources":{"ram":{"bytes_used":1,"bytes_available":2},"cpu_overall":0.5,"cpu_per_core":{}}}`, "cpu_per_core"},
		{"core without using", `{` + counters + `,"resources":{"ram":{"bytes_used":1,"bytes_available":2},"cpu_overall":0.5,"cpu_per_core":[{"core":0}]}}`, "cpu_per_core[0].using"},
		{"fractional counter", `{` + strings.Replace(counters, `"msg_recv":1`, `"msg_recv":1.5`, 1) + `,` + res + `}`, "msg_recv"},
		{"negative counter", `{` + strings.Replace(counters, `"up_time":1`, `"up_time":-1`, 1) + `,` + res + `}`, "up_time"},
		{"string counter", `{` + strings.Replace(counters, `"bytes_sent":1`, `"bytes_sent":"1"`, 1) + `,` + res + `}`, "bytes_sent"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if !isReply([]byte(tt.reply)) {
				t.Fatalf("isReply(%s) = false", tt.reply)
			}
			s, err := parseReply([]byte(tt.reply))
			if !errors.Is(err, ErrBadReply) {
				t.Fatalf("parseReply = %+v, %v; want ErrBadReply", s, err)
			}
			if !strings.Contains(err.Error(), tt.mention) {
				t.Errorf("error %q does not name %s", err, tt.mention)
			}
		})
	}
	good := `{` + counters + `,` + res + `}`
	if s, err := parseReply([]byte(good)); err != nil || s.Extra != nil || s.Resources.CPUPerCore[0].Using != 0.5 {
		t.Fatalf("parseReply(%s) = %+v, %v", good, s, err)
	}
}

// FuzzReply checks that recognising and parsing any payload neither panics
// nor accepts a reply that is not one.
func FuzzReply(f *testing.F) {
	for _, s := range []string{
		`{"up_time":1}`, `{"error":"x"}`, `{"error":1}`, `[]`, ``, "\x00{",
		`{"up_time":1,"bytes_recv":1,"bytes_sent":1,"msg_recv":1,"msg_sent":1,"num_clients":1,"resources":{"ram":{"bytes_used":1,"bytes_available":2},"cpu_overall":0.5,"cpu_per_core":[{"core":0,"using":0.5}]},"x":1}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, p []byte) {
		if !isReply(p) {
			return
		}
		s, err := parseReply(p)
		var be *BrokerError
		switch {
		case err == nil:
			if string(s.Raw) != string(p) {
				t.Fatalf("Raw = %q, want the payload %q", s.Raw, p)
			}
		case errors.As(err, &be), errors.Is(err, ErrBadReply):
		default:
			t.Fatalf("parseReply(%q): unexpected error %v", p, err)
		}
	})
}
