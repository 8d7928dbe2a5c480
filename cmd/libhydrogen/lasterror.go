package main

// This file's preamble defines C code, so it must hold no //export: cgo
// copies the preamble of a file with exports into two C files, and these
// definitions would then be made twice.

/*
#include <stdint.h>
#include <string.h>

// hy_err is the calling thread's message for hy_last_error. Thread-local
// storage gives each C thread its own copy with no lock: the Go code that
// writes it runs on the thread that called the export.
enum { hy_err_cap = 1024 };
static __thread char hy_err[hy_err_cap];
static __thread int32_t hy_err_len;

static void hy_err_set(const char *p, int32_t n) {
	if (n < 0) n = 0;
	if (n > hy_err_cap - 1) n = hy_err_cap - 1;
	if (n > 0) memcpy(hy_err, p, (size_t)n);
	hy_err[n] = 0;
	hy_err_len = n;
}

static const char *hy_err_get(void) { return hy_err; }

static int32_t hy_err_copy(char *buf, int32_t cap) {
	if (cap > 0) {
		int32_t n = hy_err_len < cap - 1 ? hy_err_len : cap - 1;
		memcpy(buf, hy_err, (size_t)n);
		buf[n] = 0;
	}
	return hy_err_len;
}
*/
import "C"

import (
	"unicode/utf8"
	"unsafe"
)

// maxMessage is the longest message hy_last_error holds, in bytes: the
// thread-local buffer less its NUL.
const maxMessage = C.hy_err_cap - 1

// setMessage makes msg the calling thread's message for hy_last_error,
// cut at a rune boundary to maxMessage bytes. An empty msg clears it.
func setMessage(msg string) {
	if len(msg) > maxMessage {
		n := maxMessage
		for n > 0 && !utf8.RuneStart(msg[n]) {
			n--
		}
		msg = msg[:n]
	}
	if msg == "" {
		C.hy_err_set(nil, 0)
		return
	}
	// The bytes are Go memory without pointers, copied before the call
	// returns: allowed by the cgo pointer rules.
	C.hy_err_set((*C.char)(unsafe.Pointer(unsafe.StringData(msg))), C.int32_t(len(msg)))
}

// copyMessage copies the calling thread's message into the C buffer buf of
// size n, NUL-terminated and cut to fit, and returns its full length.
func copyMessage(buf *C.char, n C.int32_t) C.int32_t {
	return C.hy_err_copy(buf, n)
}

// lastMessage returns the calling thread's message. (C.hy_err would not
// do: cgo takes a variable's address once, on one thread.)
func lastMessage() string {
	return C.GoString(C.hy_err_get())
}
