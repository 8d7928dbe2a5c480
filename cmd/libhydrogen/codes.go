package main

/*
#include "hydrogen.h"
*/
import "C"

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strings"

	"github.com/hydrogen-mq/hydrogen/client"
	"github.com/hydrogen-mq/hydrogen/wire"
)

// The return codes, from hydrogen.h, which is their one definition.
const (
	codeOK        int32 = C.HY_OK
	codeInval     int32 = C.HY_EINVAL
	codeBadHandle int32 = C.HY_EBADHANDLE
	codeClosed    int32 = C.HY_ECLOSED
	codeTimeout   int32 = C.HY_ETIMEOUT
	codeTooSmall  int32 = C.HY_ETOOSMALL
	codeBroker    int32 = C.HY_EBROKER
	codeIO        int32 = C.HY_EIO
	codeProto     int32 = C.HY_EPROTO
	codeInternal  int32 = C.HY_EINTERNAL
	codeAuth      int32 = C.HY_EAUTH
)

// codeOf maps an error of the client, or of this package, to the return
// code a C caller branches on.
func codeOf(err error) int32 {
	var (
		tooSmall *tooSmallError
		refused  *client.BrokerError
		proto    *wire.ProtocolError
		netErr   net.Error
		certErr  *tls.CertificateVerificationError
	)
	switch {
	case err == nil:
		return codeOK
	case errors.Is(err, client.ErrAuthRefused), errors.As(err, &certErr):
		return codeAuth
	case errors.As(err, &tooSmall):
		return codeTooSmall
	case errors.As(err, &refused):
		return codeBroker
	case errors.Is(err, errTimeout), errors.Is(err, context.DeadlineExceeded),
		errors.Is(err, os.ErrDeadlineExceeded), errors.As(err, &netErr) && netErr.Timeout():
		return codeTimeout
	case errors.Is(err, client.ErrTelemetryPayload), errors.Is(err, wire.ErrPayloadTooLarge):
		return codeInval
	case errors.Is(err, net.ErrClosed), errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return codeClosed
	case errors.As(err, &proto), errors.Is(err, client.ErrBadReply):
		return codeProto
	default:
		return codeIO
	}
}

// fail sets the calling thread's message for hy_last_error and returns
// code.
func fail(code int32, format string, args ...any) int32 {
	setMessage(fmt.Sprintf(format, args...))
	return code
}

// failErr is fail for an error: the code is codeOf(err), the message fn
// and err's text. The client's "hydrogen: " prefix goes: every message of
// this library is about hydrogen, and starts with the function's name.
func failErr(fn string, err error) int32 {
	var refused *client.BrokerError
	if errors.As(err, &refused) {
		return fail(codeBroker, "%s: the broker refused the telemetry request: %s", fn, refused.Reason)
	}
	return fail(codeOf(err), "%s: %s", fn, strings.TrimPrefix(err.Error(), "hydrogen: "))
}

// succeed clears the calling thread's message and returns n, a success.
func succeed(n int32) int32 {
	setMessage("")
	return n
}

// guarded runs f and returns its code; a panic in f becomes
// codeInternal, with the panic in the message, so that it never unwinds
// into the C caller (which would crash the process).
func guarded[T int32 | int64](fn string, f func() T) (code T) {
	defer func() {
		if r := recover(); r != nil {
			code = T(fail(codeInternal, "%s: internal error in libhydrogen (a bug; please report it): %v", fn, r))
		}
	}()
	return f()
}
