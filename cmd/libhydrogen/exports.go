package main

// The C ABI. hydrogen.h documents every function; this file keeps to
// what C cannot see. A file with //export may hold only declarations in
// its preamble (cgo copies it into two C files).

/*
#include "hydrogen.h"

// cgo writes an export's parameter types by their Go names, which cannot
// say const; these typedefs carry the const into the prototypes cgo
// generates, so that they match hydrogen.h exactly. (Including
// hydrogen.h above makes the C compiler hold them to it.)
typedef const char hy_const_char;
typedef const void hy_const_void;
*/
import "C"

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"net"
	"os"
	"time"
	"unsafe"

	"github.com/hydrogen-mq/hydrogen/client"
	"github.com/hydrogen-mq/hydrogen/wire"
)

//export hy_connect
func hy_connect(addr *C.hy_const_char, timeoutMS C.int32_t) C.int64_t {
	return C.int64_t(guarded("hy_connect", func() int64 {
		if addr == nil {
			return int64(fail(codeInval, "hy_connect: addr is NULL"))
		}
		a := C.GoString((*C.char)(unsafe.Pointer(addr)))
		if _, _, err := net.SplitHostPort(a); err != nil {
			return int64(fail(codeInval, "hy_connect: address %q: %v", a, err))
		}
		ctx, cancel, valid := waitContext(int32(timeoutMS))
		if !valid {
			return int64(fail(codeInval, "hy_connect: timeout_ms is 0; pass a positive bound or HY_NO_TIMEOUT"))
		}
		defer cancel()
		c, err := client.Dial(ctx, a)
		if err != nil {
			if ctx.Err() != nil {
				return int64(fail(codeTimeout, "hy_connect: %s: not connected within %d ms", a, timeoutMS))
			}
			return int64(failErr("hy_connect", err))
		}
		handle := handles.add(newConn(c))
		succeed(codeOK)
		return handle
	}))
}

//export hy_connect_secure
func hy_connect_secure(addr, credential *C.hy_const_char, useTLS C.int32_t, caFile, serverName *C.hy_const_char, timeoutMS C.int32_t) C.int64_t {
	return C.int64_t(guarded("hy_connect_secure", func() int64 {
		if addr == nil {
			return int64(fail(codeInval, "hy_connect_secure: addr is NULL"))
		}
		a := C.GoString((*C.char)(unsafe.Pointer(addr)))
		if _, _, err := net.SplitHostPort(a); err != nil {
			return int64(fail(codeInval, "hy_connect_secure: address %q: %v", a, err))
		}
		var opts []client.Option
		if credential != nil {
			cred := C.GoString((*C.char)(unsafe.Pointer(credential)))
			if len(cred) > wire.MaxPayload {
				return int64(fail(codeInval, "hy_connect_secure: the credential is %d bytes, over %d", len(cred), wire.MaxPayload))
			}
			opts = append(opts, client.WithCredential([]byte(cred)))
		}
		if useTLS != 0 || caFile != nil || serverName != nil {
			cfg := &tls.Config{MinVersion: tls.VersionTLS12}
			if serverName != nil {
				cfg.ServerName = C.GoString((*C.char)(unsafe.Pointer(serverName)))
			}
			if caFile != nil {
				path := C.GoString((*C.char)(unsafe.Pointer(caFile)))
				pem, err := os.ReadFile(path)
				if err != nil {
					return int64(fail(codeInval, "hy_connect_secure: tls_ca_file: %v", err))
				}
				cfg.RootCAs = x509.NewCertPool()
				if !cfg.RootCAs.AppendCertsFromPEM(pem) {
					return int64(fail(codeInval, "hy_connect_secure: tls_ca_file %s holds no PEM certificate", path))
				}
			}
			opts = append(opts, client.WithTLS(cfg))
		}
		ctx, cancel, valid := waitContext(int32(timeoutMS))
		if !valid {
			return int64(fail(codeInval, "hy_connect_secure: timeout_ms is 0; pass a positive bound or HY_NO_TIMEOUT"))
		}
		defer cancel()
		c, err := client.Dial(ctx, a, opts...)
		if err != nil {
			if ctx.Err() != nil {
				return int64(fail(codeTimeout, "hy_connect_secure: %s: not connected within %d ms", a, timeoutMS))
			}
			return int64(failErr("hy_connect_secure", err))
		}
		handle := handles.add(newConn(c))
		succeed(codeOK)
		return handle
	}))
}

//export hy_send
func hy_send(h C.int64_t, buf *C.hy_const_void, n C.int32_t) C.int32_t {
	return C.int32_t(guarded("hy_send", func() int32 {
		switch {
		case n < 0 || n > wire.MaxPayload:
			return fail(codeInval, "hy_send: len %d is outside [0, %d]", n, wire.MaxPayload)
		case buf == nil && n > 0:
			return fail(codeInval, "hy_send: buf is NULL and len is %d", n)
		}
		cn := handles.get(int64(h))
		if cn == nil {
			return badHandle("hy_send", h)
		}
		if err := cn.c.Send(C.GoBytes(unsafe.Pointer(buf), C.int(n))); err != nil {
			return failErr("hy_send", err)
		}
		return succeed(codeOK)
	}))
}

//export hy_recv
func hy_recv(h C.int64_t, buf unsafe.Pointer, capacity C.int32_t, timeoutMS C.int32_t, needed *C.int32_t) C.int32_t {
	return C.int32_t(guarded("hy_recv", func() int32 {
		if needed != nil {
			*needed = 0
		}
		if code := checkBuffer("hy_recv", buf, capacity); code != codeOK {
			return code
		}
		ctx, cancel, valid := waitContext(int32(timeoutMS))
		if !valid {
			return fail(codeInval, "hy_recv: timeout_ms is 0; pass a positive bound or HY_NO_TIMEOUT")
		}
		defer cancel()
		cn := handles.get(int64(h))
		if cn == nil {
			return badHandle("hy_recv", h)
		}
		p, err := cn.recv(ctx, int(capacity))
		var tooSmall *tooSmallError
		switch {
		case errors.As(err, &tooSmall):
			if needed != nil {
				*needed = C.int32_t(tooSmall.need)
			}
			return failErr("hy_recv", err)
		case errors.Is(err, errTimeout):
			return fail(codeTimeout, "hy_recv: no message within %d ms", timeoutMS)
		case err != nil:
			return failErr("hy_recv", err)
		}
		copy(unsafe.Slice((*byte)(buf), len(p)), p)
		if needed != nil {
			*needed = C.int32_t(len(p))
		}
		return okLen(len(p))
	}))
}

//export hy_stats
func hy_stats(h C.int64_t, seconds C.float, buf *C.char, capacity C.int32_t, needed *C.int32_t) C.int32_t {
	return C.int32_t(guarded("hy_stats", func() int32 {
		if needed != nil {
			*needed = 0
		}
		if code := checkBuffer("hy_stats", unsafe.Pointer(buf), capacity); code != codeOK {
			return code
		}
		cn := handles.get(int64(h))
		if cn == nil {
			return badHandle("hy_stats", h)
		}
		raw, err := cn.stats(float32(seconds), int(capacity))
		var tooSmall *tooSmallError
		switch {
		case errors.As(err, &tooSmall):
			if needed != nil {
				*needed = C.int32_t(tooSmall.need)
			}
			return failErr("hy_stats", err)
		case errors.Is(err, errTimeout):
			return fail(codeTimeout, "hy_stats: no reply within %v", statsWait(float32(seconds)))
		case err != nil:
			return failErr("hy_stats", err)
		}
		out := unsafe.Slice((*byte)(unsafe.Pointer(buf)), len(raw)+1)
		copy(out, raw)
		out[len(raw)] = 0
		if needed != nil {
			*needed = C.int32_t(len(raw) + 1)
		}
		return okLen(len(raw))
	}))
}

//export hy_close
func hy_close(h C.int64_t) C.int32_t {
	return C.int32_t(guarded("hy_close", func() int32 {
		cn := handles.remove(int64(h))
		if cn == nil {
			return badHandle("hy_close", h)
		}
		if err := cn.c.Close(); err != nil {
			return fail(codeIO, "hy_close: %v (the handle is released)", err)
		}
		return succeed(codeOK)
	}))
}

//export hy_last_error
func hy_last_error(buf *C.char, capacity C.int32_t) C.int32_t {
	// It must not touch the message it reports, so it reports its own
	// misuse by its return value alone.
	var n C.int32_t = C.HY_EINVAL
	guarded("hy_last_error", func() int32 {
		if capacity >= 0 && (buf != nil || capacity == 0) {
			n = copyMessage(buf, capacity)
		}
		return 0
	})
	return n
}

// checkBuffer validates a C output buffer: capacity is not negative, and
// buf is NULL only when capacity is 0.
func checkBuffer(fn string, buf unsafe.Pointer, capacity C.int32_t) int32 {
	switch {
	case capacity < 0:
		return fail(codeInval, "%s: cap %d is negative", fn, capacity)
	case buf == nil && capacity > 0:
		return fail(codeInval, "%s: buf is NULL and cap is %d", fn, capacity)
	}
	return codeOK
}

func badHandle(fn string, h C.int64_t) int32 {
	return fail(codeBadHandle, "%s: handle %d is not open (never returned by hy_connect, or closed)", fn, h)
}

// okLen is succeed for a length, which fits an int32: payloads are at most
// wire.MaxPayload bytes.
func okLen(n int) int32 { return succeed(int32(n)) }

// waitContext returns a context bounded by timeoutMS: positive
// milliseconds, or negative for no bound. It reports false for 0.
func waitContext(timeoutMS int32) (context.Context, context.CancelFunc, bool) {
	switch {
	case timeoutMS > 0:
		ctx, cancel := context.WithTimeout(context.Background(), time.Duration(timeoutMS)*time.Millisecond)
		return ctx, cancel, true
	case timeoutMS < 0:
		ctx, cancel := context.WithCancel(context.Background())
		return ctx, cancel, true
	}
	return nil, nil, false
}
