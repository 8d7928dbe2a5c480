package wire_test

import (
	"errors"
	"fmt"

	"github.com/hydrogen-mq/hydrogen/wire"
)

func ExampleAppendFrame() {
	var buf []byte
	for _, msg := range []string{"hi", ""} {
		var err error
		if buf, err = wire.AppendFrame(buf, []byte(msg)); err != nil {
			fmt.Println(err)
			return
		}
	}
	fmt.Printf("% x\n", buf)

	_, err := wire.AppendFrame(nil, make([]byte, wire.MaxPayload+1))
	fmt.Println(errors.Is(err, wire.ErrPayloadTooLarge))
	// Output:
	// 01 00 02 68 69 17 01 00 00 17
	// true
}

func ExampleDecoder() {
	d := wire.NewDecoder(wire.MaxPayload)
	// Two reads from one connection; the second frame is cut inside its
	// length field, and the decoder carries it over.
	reads := [][]byte{
		{0x01, 0x00, 0x05, 'h', 'e', 'l', 'l', 'o', 0x17, 0x01, 0x00},
		{0x05, 'w', 'o', 'r', 'l', 'd', 0x17, 0x01, 0x00, 0x00, 0x17},
	}
	for _, read := range reads {
		d.Feed(read)
		for {
			payload, ok, err := d.Next()
			if err != nil {
				fmt.Println("close the connection:", err)
				return
			}
			if !ok {
				break
			}
			fmt.Printf("%q\n", payload)
		}
		fmt.Println("buffered:", d.Buffered())
	}
	// Output:
	// "hello"
	// buffered: 2
	// "world"
	// ""
	// buffered: 0
}

func ExampleProtocolError() {
	d := wire.NewDecoder(100)
	// A frame, then a header declaring 0x0065 = 101 bytes.
	d.Feed([]byte{0x01, 0x00, 0x02, 'h', 'i', 0x17, 0x01, 0x00, 0x65})
	for {
		payload, ok, err := d.Next()
		var pe *wire.ProtocolError
		if errors.As(err, &pe) {
			fmt.Println(errors.Is(err, wire.ErrTooLarge), pe.Offset, pe.Length)
			fmt.Println(err)
			return
		}
		if !ok {
			return
		}
		fmt.Printf("%q\n", payload)
	}
	// Output:
	// "hi"
	// true 7 101
	// wire: frame length over the maximum at offset 7: length 101, maximum 100
}

func ExampleAppendTelemetryRequest() {
	req := wire.AppendTelemetryRequest(nil, 1.5)
	fmt.Printf("payload % x\n", req)
	f, err := wire.AppendFrame(nil, req)
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Printf("frame   % x\n", f)
	// Output:
	// payload 0d 3f c0 00 00
	// frame   01 00 05 0d 3f c0 00 00 17
}

func ExampleParseTelemetryRequest() {
	payloads := [][]byte{
		{0x0D, 0x42, 0x70, 0x00, 0x00}, // 60 s
		{0x0D, 0x7F, 0xC0, 0x00, 0x00}, // NaN
		[]byte("hello"),
	}
	for _, p := range payloads {
		secs, ok := wire.ParseTelemetryRequest(p)
		switch {
		case !ok:
			fmt.Printf("%q: application message\n", p)
		case !(secs > 0 && secs <= 60): // false for NaN too
			fmt.Printf("telemetry, span %v: reply with an error\n", secs)
		default:
			fmt.Printf("telemetry, span %v: reply in %v s\n", secs, secs)
		}
	}
	// Output:
	// telemetry, span 60: reply in 60 s
	// telemetry, span NaN: reply with an error
	// "hello": application message
}
