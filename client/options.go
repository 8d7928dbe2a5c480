package client

import (
	"crypto/tls"
	"errors"
	"fmt"
	"time"

	"github.com/hydrogen-mq/hydrogen/wire"
)

// defaultRecvBuffer is the number of received frames a Client holds for Recv
// before its reader stops reading the socket. It matches the broker's
// default inbound bound (docs/PROTOCOL.md §4, MaxInbound), so both ends of a
// connection buffer about as much before TCP pushes back.
const defaultRecvBuffer = 1024

// An Option configures a Client in Dial. Options are applied in order; a
// later option overrides an earlier one of the same kind.
type Option func(*options)

// options holds what the Options set. The zero value of every field means
// its documented default; Dial validates them once.
type options struct {
	dialTimeout time.Duration
	maxPayload  int
	recvBuffer  int
	handler     func(payload []byte)
	credential  []byte
	tls         *tls.Config

	maxPayloadSet bool
	recvBufferSet bool
	credentialSet bool
}

// WithDialTimeout bounds the time Dial takes — connecting, the TLS
// handshake and authentication — in addition to the deadline of Dial's
// context. Zero, the default, means no bound beyond the context's.
func WithDialTimeout(d time.Duration) Option {
	return func(o *options) { o.dialTimeout = d }
}

// WithMaxPayload sets the largest payload the Client accepts from the
// broker, in bytes, from 0 to 65,535 (the default, wire.MaxPayload). A
// received frame that declares a longer payload is a protocol error: the
// Client closes with an error wrapping wire.ErrTooLarge. It does not limit
// what Send accepts; that is the broker's business.
func WithMaxPayload(n int) Option {
	return func(o *options) { o.maxPayload, o.maxPayloadSet = n, true }
}

// WithRecvBuffer sets how many received frames the Client holds for Recv,
// at least 1; the default is 1,024. When that many are waiting, the
// Client's reader stops reading the socket until Recv takes one, so a
// client that does not consume its frames pushes back on the broker
// through TCP flow control instead of growing without bound. At most
// n+1 frames are held: n queued, one in the reader's hand.
//
// The buffer is not used with WithHandler.
func WithRecvBuffer(n int) Option {
	return func(o *options) { o.recvBuffer, o.recvBufferSet = n, true }
}

// WithHandler has the Client hand every application frame to h as it
// arrives, instead of queuing it for Recv; Recv then fails with
// ErrHandlerSet. Telemetry replies awaited by Stats are not passed to h.
//
// h runs on the Client's reader goroutine, one frame at a time, in the order
// the frames arrived. While h runs, the Client reads nothing more from the
// socket, so a slow h pushes back on the broker through TCP. payload is
// valid only until h returns (it aliases the Client's read buffer); copy it
// to keep it. h must not wait for the Client itself: calling Stats or Close
// from h deadlocks (Close waits for the reader goroutine, which is running
// h); start them in another goroutine instead. h may call Send, with one
// caution: Send blocks while the broker is not reading, and a broker
// blocked writing to this client (which reads nothing while h runs) may
// stop reading, so a handler that sends a lot can stall both sides.
func WithHandler(h func(payload []byte)) Option {
	return func(o *options) { o.handler = h }
}

// WithCredential makes Dial authenticate: it sends credential (a token,
// a JWT) as the connection's first frame and waits for the broker's answer
// (docs/PROTOCOL.md, Authentication) before it returns. A refusal fails
// Dial with an *AuthError; Client.Identity is the name the broker
// accepted. An empty credential, or one that is a telemetry request
// frame, fails Dial: the broker could not tell it from what follows.
func WithCredential(credential []byte) Option {
	return func(o *options) { o.credential, o.credentialSet = append([]byte(nil), credential...), true }
}

// WithTLS makes Dial speak TLS with config (its ServerName defaults to
// addr's host). A nil config means TLS with the system's roots.
func WithTLS(config *tls.Config) Option {
	return func(o *options) {
		if config == nil {
			config = &tls.Config{}
		}
		o.tls = config
	}
}

func (o *options) validate() error {
	if o.dialTimeout < 0 {
		return fmt.Errorf("hydrogen: dial timeout %v is negative", o.dialTimeout)
	}
	if !o.maxPayloadSet {
		o.maxPayload = wire.MaxPayload
	} else if o.maxPayload < 0 || o.maxPayload > wire.MaxPayload {
		return fmt.Errorf("hydrogen: max payload %d is outside [0, %d]", o.maxPayload, wire.MaxPayload)
	}
	if o.credentialSet && len(o.credential) == 0 {
		return errors.New("hydrogen: empty credential: the broker would take the first frame sent as the credential")
	}
	if wire.IsTelemetryRequest(o.credential) {
		return errors.New("hydrogen: the credential is a telemetry request frame (0x0D and a span), which the broker reads as a credential, not as a request")
	}
	if len(o.credential) > wire.MaxPayload {
		return fmt.Errorf("hydrogen: credential of %d bytes is over a frame's %d", len(o.credential), wire.MaxPayload)
	}
	if !o.recvBufferSet {
		o.recvBuffer = defaultRecvBuffer
	} else if o.recvBuffer < 1 {
		return fmt.Errorf("hydrogen: recv buffer %d is less than 1", o.recvBuffer)
	}
	return nil
}
