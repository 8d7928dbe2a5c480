package client

import (
	"errors"
	"fmt"
	"net"
)

// Sentinel errors for conditions callers branch on; test with errors.Is.
var (
	// ErrTelemetryPayload is returned by Send for a payload the broker would
	// take for a telemetry request (5 bytes starting with 0x0D,
	// wire.IsTelemetryRequest) rather than deliver as a message. Use Stats.
	ErrTelemetryPayload = errors.New("hydrogen: payload has the shape of a telemetry request")

	// ErrHandlerSet is returned by Recv on a Client dialled WithHandler:
	// its frames go to the handler.
	ErrHandlerSet = errors.New("hydrogen: frames go to the handler set with WithHandler")

	// ErrBadReply is returned by Stats when the broker's reply was
	// recognised as a telemetry reply (it has an "up_time" member) but
	// lacks a field of docs/PROTOCOL.md §2 or has one of the wrong type.
	ErrBadReply = errors.New("hydrogen: malformed telemetry reply")
)

// errClosed is the error of every call on a Client after Close.
var errClosed = fmt.Errorf("hydrogen: client closed: %w", net.ErrClosed)

// ErrAuthRefused is wrapped by the error of a Dial whose credential the
// broker refused; errors.As gives the *AuthError with its reason.
var ErrAuthRefused = errors.New("hydrogen: authentication refused")

// AuthError is the broker's refusal of a credential: its answer was the
// object {"error": Reason}, and it closed the connection.
type AuthError struct {
	Reason string // the broker's text, as sent
}

func (e *AuthError) Error() string { return "hydrogen: authentication refused: " + e.Reason }

// Unwrap makes errors.Is(err, ErrAuthRefused) hold.
func (e *AuthError) Unwrap() error { return ErrAuthRefused }

// BrokerError is the broker's refusal of a telemetry request: its reply was
// the object {"error": Reason}, for a span that is not finite or not in
// (0, max], or when too many requests are waiting. The connection stays
// open. Stats returns it wrapped; use errors.As.
type BrokerError struct {
	Reason string // the broker's text, as sent
}

func (e *BrokerError) Error() string {
	return "hydrogen: broker refused the telemetry request: " + e.Reason
}
