// Command libhydrogen is the hydrogen C client: the Go client (package
// client) behind a C ABI, built as a shared library.
//
//	go build -buildmode=c-shared -o libhydrogen.so ./cmd/libhydrogen
//	cc -o prog prog.c -I cmd/libhydrogen -L. -lhydrogen -Wl,-rpath,'$ORIGIN'
//
// hydrogen.h, in this directory, is the public header and the function
// reference. The cgo preamble includes it, so the compiler checks every
// //export against the declaration C programs see: the package does not
// build if they disagree. examples/c has a program that uses it.
//
// # Handles
//
// C holds no Go pointer (the cgo rules forbid keeping one): hy_connect
// returns an int64 handle, a key into one process-wide table of
// connections guarded by a mutex. Handles count up from 1 and are never
// reused, so a stale handle is HY_EBADHANDLE, never another connection.
// The table is the package's only mutable global, and a C ABI leaves no
// other place to keep it.
//
// # Concurrency
//
// Every exported function is safe to call from any C thread at any time.
// Sends on one handle go straight to the client, whose Send is safe for
// concurrent use. Receives on one handle take turns (a one-token channel,
// so a waiting hy_recv still honours its timeout) because a frame too big
// for the caller's buffer is kept for the next hy_recv and must be
// returned before any later one; telemetry requests take turns the same
// way for their kept reply. hy_close removes the handle first, then
// closes the client, which ends every call still waiting on it.
//
// # Errors
//
// The message for hy_last_error lives in C thread-local storage: an
// exported function runs on the C thread that called it (cgo locks the
// goroutine to that thread for the call), so the C helpers it calls write
// that thread's copy. No Go panic crosses into C: every export recovers,
// and returns HY_EINTERNAL with the panic in the message.
package main
