/*
 * hydrogen.h — the C client of the hydrogen message broker.
 *
 * libhydrogen is the Go client (github.com/hydrogen-mq/hydrogen/client)
 * built as a shared library. It speaks the protocol of docs/PROTOCOL.md:
 * messages of 0 to 65,535 opaque bytes, each in one frame, and the 0x0D
 * telemetry request answered with a JSON object.
 *
 * Build and link (from the repository root):
 *
 *   go build -buildmode=c-shared -o libhydrogen.so ./cmd/libhydrogen
 *   cc -o prog prog.c -I cmd/libhydrogen -L. -lhydrogen -Wl,-rpath,'$ORIGIN'
 *
 * Include this header. The build also writes libhydrogen.h, cgo's own list
 * of the exported functions; it includes this header, and the library does
 * not build if the two disagree about a signature.
 *
 * Handles
 *
 *   hy_connect returns a positive handle: an opaque number naming one
 *   connection. Handles are never reused within a process, so a handle used
 *   after hy_close gives HY_EBADHANDLE, never another connection.
 *
 * Threads
 *
 *   Every function may be called from any thread, at the same time as any
 *   other. Several threads may use one handle: their hy_send calls interleave
 *   whole messages, and each message reaches the broker after every message
 *   the same thread sent before it. hy_recv calls on one handle take turns,
 *   so each frame goes to exactly one caller, in arrival order; hy_stats
 *   calls on one handle take turns too. hy_close may be called while other
 *   threads wait on the handle: their calls return HY_ECLOSED.
 *
 * Errors
 *
 *   Functions return HY_OK (0) or a non-negative count on success, and a
 *   negative HY_E* code on failure. hy_last_error gives a readable message
 *   for the last call made on the calling thread.
 *
 * Timeouts
 *
 *   A timeout_ms argument is a positive number of milliseconds, or
 *   HY_NO_TIMEOUT (any negative value) to wait without a bound. Zero is
 *   HY_EINVAL: the library has no non-blocking mode, and a zero bound would
 *   promise one.
 *
 * Memory
 *
 *   The library copies what it is given before it returns and writes only
 *   into buffers the caller passes; it never keeps a caller's pointer, and
 *   the caller never frees anything the library made.
 */
#ifndef HYDROGEN_H
#define HYDROGEN_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Return codes. */
#define HY_OK          0  /* success */
#define HY_EINVAL     (-1) /* an invalid argument: a NULL pointer where one is needed,
                              a negative length or capacity, a zero timeout, an address
                              that is not "host:port", a payload over HY_MAX_PAYLOAD
                              bytes or shaped like a telemetry request (5 bytes
                              starting with 0x0D) */
#define HY_EBADHANDLE (-2) /* not a handle hy_connect returned, or one already closed */
#define HY_ECLOSED    (-3) /* the connection has ended: the broker closed it, or
                              hy_close ran while the call waited; hy_close the handle */
#define HY_ETIMEOUT   (-4) /* the time allowed ran out; the connection is still usable */
#define HY_ETOOSMALL  (-5) /* the buffer is too small; *needed says how large it must
                              be, and the frame or reply is kept for the next call */
#define HY_EBROKER    (-6) /* the broker refused the telemetry request (a span that
                              is NaN, infinite, <= 0 or over its maximum, or too many
                              requests waiting); hy_last_error holds its reason and
                              the connection stays open */
#define HY_EIO        (-7) /* the connection could not be made, or a read or write on
                              it failed (the connection has then ended) */
#define HY_EPROTO     (-8) /* the broker broke the frame format, or sent a malformed
                              telemetry reply (the connection ends on the first) */
#define HY_EINTERNAL  (-9) /* a bug in the library, caught before it reached the
                              caller; hy_last_error says what */
#define HY_EAUTH      (-10) /* the broker refused the credential (hy_last_error holds
                               its reason), or the TLS handshake failed: the server's
                               certificate is not trusted or not for that name */

/* HY_NO_TIMEOUT, as a timeout_ms, waits without a bound. */
#define HY_NO_TIMEOUT (-1)

/* HY_MAX_PAYLOAD is the largest message, in bytes. A receive buffer of this
   size never gives HY_ETOOSMALL, nor does a telemetry buffer of
   HY_MAX_PAYLOAD + 1. */
#define HY_MAX_PAYLOAD 65535

/*
 * hy_connect connects to the broker at addr, "host:port" (for example
 * "127.0.0.1:1337" or "[::1]:1337"), waiting at most timeout_ms for the
 * connection to be established.
 *
 * Returns a positive handle, or HY_EINVAL (addr NULL or not host:port,
 * timeout_ms 0), HY_ETIMEOUT, or HY_EIO (refused, unreachable, the name
 * does not resolve). Release the handle with hy_close.
 */
int64_t hy_connect(const char *addr, int32_t timeout_ms);

/*
 * hy_connect_secure is hy_connect to a broker that requires TLS, a
 * credential, or both (docs/PROTOCOL.md, Authentication). Each of the
 * string arguments may be NULL:
 *
 *   credential       the token or JWT, sent as the first frame; the broker's
 *                    answer is awaited before the function returns
 *   tls_ca_file      a PEM file of the CA certificates to trust; with it,
 *                    or with use_tls non-zero, the connection speaks TLS
 *                    (the system's roots when this is NULL)
 *   tls_server_name  the name the broker's certificate must carry; default
 *                    the host of addr
 *
 * timeout_ms bounds it all: connecting, the TLS handshake and the answer to
 * the credential.
 *
 * Returns a positive handle, or what hy_connect returns, or HY_EAUTH (the
 * credential was refused, or the TLS handshake failed; hy_last_error says
 * why), or HY_EINVAL (a credential over HY_MAX_PAYLOAD bytes, a CA file
 * that cannot be read or holds no certificate).
 */
int64_t hy_connect_secure(const char *addr, const char *credential, int32_t use_tls,
                          const char *tls_ca_file, const char *tls_server_name,
                          int32_t timeout_ms);

/*
 * hy_send sends the len bytes at buf as one message (buf may be NULL when
 * len is 0). It returns once the message is written to the socket; it
 * blocks while the socket is full, that is while the broker is not reading.
 * buf may be reused as soon as it returns.
 *
 * Returns HY_OK, or HY_EINVAL (len < 0 or over HY_MAX_PAYLOAD, buf NULL,
 * a payload shaped like a telemetry request: use hy_stats), HY_EBADHANDLE,
 * HY_ECLOSED, or HY_EIO.
 */
int32_t hy_send(int64_t h, const void *buf, int32_t len);

/*
 * hy_recv receives the next message into buf, which holds cap bytes,
 * waiting at most timeout_ms for one to arrive. Messages come in the order
 * the broker sent them; telemetry replies awaited by hy_stats are not
 * among them.
 *
 * Returns the message's length (0 for an empty message), or:
 *   HY_ETOOSMALL  the message is longer than cap. It is kept, and the next
 *                 hy_recv on the handle returns it; *needed is its length.
 *                 buf may be NULL with cap 0 to learn the length this way.
 *   HY_ETIMEOUT   no message arrived in time.
 *   HY_ECLOSED    the connection has ended and every message received
 *                 before the end has been returned.
 *   HY_EINVAL, HY_EBADHANDLE, HY_EPROTO, HY_EIO.
 *
 * needed may be NULL. When not NULL, it is set to the message's length
 * whenever a message was taken or kept, and to 0 otherwise.
 *
 * Received messages wait in the library until hy_recv takes them, up to
 * 1,024 of them; then it stops reading the socket, and TCP pushes back on
 * the broker. Against a broker that replies, receive while you send (in
 * another thread, or alternating): a connection that only sends stalls
 * once both directions are full.
 */
int32_t hy_recv(int64_t h, void *buf, int32_t cap, int32_t timeout_ms,
                int32_t *needed);

/*
 * hy_stats asks the broker for a telemetry reading over the next seconds
 * seconds and waits for it, which takes that long (the broker answers when
 * the span has passed). The reply, a JSON object exactly as the broker sent
 * it (docs/PROTOCOL.md §2: up_time, bytes_recv, bytes_sent, msg_recv,
 * msg_sent, num_clients, resources, then the broker's extra fields), is
 * written to buf followed by a NUL.
 *
 * One request is outstanding on a connection at a time, so the reply can be
 * told from the messages around it; concurrent calls on one handle take
 * turns. The wait is bounded at seconds + 10 s; past that the call returns
 * HY_ETIMEOUT, and the late reply is discarded when it arrives. The reply
 * is read behind the messages waiting for hy_recv: on a connection with
 * 1,024 unreceived messages it waits until hy_recv makes room.
 *
 * Returns the length of the JSON (without the NUL), or:
 *   HY_ETOOSMALL  the reply and its NUL do not fit in cap bytes; *needed is
 *                 the size that does. The reply is kept, and the next
 *                 hy_stats call on the handle returns it at once, whatever
 *                 its seconds, without a new request. A buffer of
 *                 HY_MAX_PAYLOAD + 1 bytes always fits.
 *   HY_EBROKER    the broker refused the span (NaN, infinite, <= 0, over its
 *                 maximum, 60 s by default); hy_last_error gives its reason.
 *   HY_ETIMEOUT, HY_ECLOSED, HY_EPROTO (a reply lacking a required field),
 *   HY_EINVAL, HY_EBADHANDLE, HY_EIO.
 *
 * needed may be NULL. When not NULL, it is set to the reply's length plus
 * one whenever a reply was written or kept, and to 0 otherwise.
 */
int32_t hy_stats(int64_t h, float seconds, char *buf, int32_t cap,
                 int32_t *needed);

/*
 * hy_close closes the connection and releases the handle. Calls waiting on
 * it in other threads return HY_ECLOSED; messages received and not yet
 * taken by hy_recv are dropped.
 *
 * Returns HY_OK, HY_EBADHANDLE (not open: never returned by hy_connect, or
 * closed already), or HY_EIO (closing the socket failed; the handle is
 * released all the same).
 */
int32_t hy_close(int64_t h);

/*
 * hy_last_error copies the message describing the result of the last hy_
 * call made on the calling thread into buf, NUL-terminated and cut to fit
 * cap bytes (buf may be NULL when cap is 0). The message is empty after a
 * call that succeeded. Each thread has its own message, so threads never see
 * each other's errors; hy_last_error itself does not change it.
 *
 * Returns the message's full length, without the NUL, as snprintf does: a
 * return value >= cap means it was cut. Messages are at most 1,023 bytes.
 * Returns HY_EINVAL, changing nothing, for cap < 0 or buf NULL with cap > 0.
 */
int32_t hy_last_error(char *buf, int32_t cap);

#ifdef __cplusplus
}
#endif

#endif /* HYDROGEN_H */
