// Package client is the Go client of the hydrogen broker: it dials a
// broker over TCP, sends and receives frames (package wire), and asks for
// telemetry with the 0x0D request. docs/PROTOCOL.md is the contract it
// speaks.
//
// # Use
//
// Dial connects and starts the Client's one reader goroutine; Close stops
// it and waits for it. Send (or SendBatch) sends messages; Recv returns the
// messages the broker sends, or WithHandler has them passed to a function
// as they arrive. Stats returns a telemetry reading. Every payload is 0 to
// 65,535 bytes.
//
// # Concurrency
//
// A Client's methods are safe for concurrent use. Frames sent by one
// goroutine reach the broker in the order sent; concurrent Sends interleave
// whole frames, and the client coalesces them into as few writes as it
// can. Recv returns frames in the order they arrived; concurrent Recv calls
// each get different frames. A handler runs on the reader goroutine, one
// frame at a time, in arrival order.
//
// Received payloads returned by Recv belong to the caller. A handler's
// payload is valid only until the handler returns.
//
// # Flow control
//
// Nothing grows without bound. Received frames wait in a queue of
// WithRecvBuffer frames (default 1,024); when it is full, or while a
// handler runs, the reader stops reading the socket and TCP pushes back on
// the broker. A Send blocks while the socket is full, that is while the
// broker does not read. A client that sends to an echoing broker without
// receiving at the same time therefore stalls once both directions are
// full: receive in another goroutine, or use a handler.
//
// # Telemetry replies on a busy connection
//
// The broker's reply to a telemetry request is an ordinary frame, sent
// between whatever application frames the connection receives (broadcasts
// from other clients, say); nothing on the wire marks it. So while a Stats
// call is outstanding, the Client takes as its reply the first frame whose
// payload is a JSON object that
//
//   - has an "up_time" member: a reply, or
//   - has exactly one member, "error", holding a string: a refusal, which
//     Stats returns as a *BrokerError.
//
// Every other frame goes to Recv or the handler as usual, in order. When no
// Stats call is outstanding, no frame is taken, whatever its shape.
//
// A Client allows one telemetry request outstanding at a time: concurrent
// Stats calls wait their turn. The broker answers requests with equal spans
// in the order sent, but a request with a shorter span sent later may be
// answered first, so with two requests outstanding no client could tell
// which reply is which. A Stats call abandoned through its context keeps
// its turn until its reply has arrived, and the reply is discarded.
//
// An application that sends its clients JSON objects of either shape, on a
// connection that also asks for telemetry, would have one taken for a
// reply: it should ask for telemetry on a separate connection. Send refuses
// a payload shaped like a telemetry request (ErrTelemetryPayload): the
// broker would answer it, not deliver it.
//
// # Errors
//
// Errors carry their cause, wrapped with context; test them with errors.Is
// and errors.As. Once the connection ends, for whatever reason, every call
// returns the error that ended it (after Close, one wrapping
// net.ErrClosed), and Err and Done report it; Recv first returns the frames
// already received. A stream from the broker that breaks the frame format
// ends the connection with an error wrapping the *wire.ProtocolError
// (wire.ErrBadStart, wire.ErrBadEnd, or wire.ErrTooLarge for a payload over
// WithMaxPayload): like the broker, the client never guesses at the next
// frame boundary.
package client
