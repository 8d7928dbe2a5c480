/*
 * threads: the hydrogen C client from several threads at once, and its
 * error paths. It runs against `broker serve --app echo`, checks every
 * result, and is run by cmd/libhydrogen's tests.
 *
 *   $ ./threads 127.0.0.1:1337
 *   ok: ...
 *   threads: all checks passed
 *
 * Exit status 0 when every check passed; otherwise the first failed check
 * on stderr and 1.
 */
#define _POSIX_C_SOURCE 200809L /* clock_gettime */

#include <inttypes.h>
#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "hydrogen.h"

#define WORKERS 4   /* threads with a connection each */
#define MESSAGES 500 /* messages each worker, and each shared sender, sends */
#define WAIT_MS 10000

static const char *addr;

/* failf reports a failed check, with the calling thread's last error, and
   ends the process: a check that failed in any thread fails the run. */
static void failf(int line, const char *format, ...) {
	char msg[1024];
	hy_last_error(msg, sizeof msg);
	fprintf(stderr, "threads.c:%d: ", line);
	va_list ap;
	va_start(ap, format);
	vfprintf(stderr, format, ap);
	va_end(ap);
	fprintf(stderr, " (hy_last_error: \"%s\")\n", msg);
	exit(1);
}

#define CHECK(cond, ...)                                  \
	do {                                                  \
		if (!(cond)) failf(__LINE__, __VA_ARGS__);       \
	} while (0)

/* EXPECT checks that a call returned the code wanted. */
#define EXPECT(call, want)                                                     \
	do {                                                                       \
		int64_t got_ = (call);                                                 \
		if (got_ != (want))                                                    \
			failf(__LINE__, "%s = %" PRId64 ", want %s (%d)", #call, got_, #want, \
			      (int)(want));                                                \
	} while (0)

static char *last_error(void) {
	static _Thread_local char msg[1024];
	hy_last_error(msg, sizeof msg);
	return msg;
}

static double now_ms(void) {
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

static int64_t connect_or_die(void) {
	int64_t h = hy_connect(addr, WAIT_MS);
	CHECK(h > 0, "hy_connect(%s) = %" PRId64, addr, h);
	return h;
}

static void send_str(int64_t h, const char *s) {
	EXPECT(hy_send(h, s, (int32_t)strlen(s)), HY_OK);
}

/* recv_str receives one message and checks that it is want. */
static void recv_str(int64_t h, const char *want) {
	char buf[256];
	int32_t needed = -1;
	int32_t n = hy_recv(h, buf, sizeof buf - 1, WAIT_MS, &needed);
	CHECK(n >= 0, "hy_recv = %d, want \"%s\"", n, want);
	CHECK(needed == n, "hy_recv = %d but *needed = %d", n, needed);
	buf[n] = '\0';
	CHECK(strcmp(buf, want) == 0, "received \"%s\", want \"%s\"", buf, want);
}

/* ---- Error paths ---------------------------------------------------- */

static void check_arguments(void) {
	EXPECT(hy_connect(NULL, 1000), HY_EINVAL);
	EXPECT(hy_connect("no-port", 1000), HY_EINVAL);
	CHECK(strstr(last_error(), "no-port") != NULL, "the message names the address");
	EXPECT(hy_connect(addr, 0), HY_EINVAL);

	int64_t h = connect_or_die();
	EXPECT(hy_send(h, NULL, 3), HY_EINVAL);
	EXPECT(hy_send(h, "x", -1), HY_EINVAL);
	static char big[HY_MAX_PAYLOAD + 1];
	EXPECT(hy_send(h, big, HY_MAX_PAYLOAD + 1), HY_EINVAL);
	const unsigned char telemetry[5] = {0x0D, 0x3f, 0x00, 0x00, 0x00};
	EXPECT(hy_send(h, telemetry, 5), HY_EINVAL);
	CHECK(strstr(last_error(), "telemetry") != NULL, "the message says why");
	char buf[8];
	EXPECT(hy_recv(h, NULL, 8, 1000, NULL), HY_EINVAL);
	EXPECT(hy_recv(h, buf, -1, 1000, NULL), HY_EINVAL);
	EXPECT(hy_recv(h, buf, sizeof buf, 0, NULL), HY_EINVAL);
	EXPECT(hy_stats(h, 0.1f, NULL, 8, NULL), HY_EINVAL);

	/* The largest message goes through; an empty one too, from NULL. */
	EXPECT(hy_send(h, big, HY_MAX_PAYLOAD), HY_OK);
	int32_t needed = -1;
	EXPECT(hy_recv(h, big, HY_MAX_PAYLOAD, WAIT_MS, &needed), HY_MAX_PAYLOAD);
	CHECK(needed == HY_MAX_PAYLOAD, "*needed = %d", needed);
	EXPECT(hy_send(h, NULL, 0), HY_OK);
	EXPECT(hy_recv(h, NULL, 0, WAIT_MS, &needed), 0);
	CHECK(needed == 0, "*needed = %d for an empty message", needed);
	EXPECT(hy_close(h), HY_OK);
	printf("ok: invalid arguments give HY_EINVAL; the largest and the empty message go through\n");
}

static void check_bad_handles(void) {
	const int64_t never = 987654321;
	char buf[64];
	int32_t needed = -1;
	EXPECT(hy_send(never, "x", 1), HY_EBADHANDLE);
	CHECK(strstr(last_error(), "987654321") != NULL, "the message names the handle");
	EXPECT(hy_recv(never, buf, sizeof buf, 100, &needed), HY_EBADHANDLE);
	CHECK(needed == 0, "*needed = %d", needed);
	EXPECT(hy_stats(never, 0.1f, buf, sizeof buf, &needed), HY_EBADHANDLE);
	EXPECT(hy_close(never), HY_EBADHANDLE);
	EXPECT(hy_close(0), HY_EBADHANDLE);
	EXPECT(hy_close(-1), HY_EBADHANDLE);

	/* A closed handle stays dead, and is not given out again. */
	int64_t h = connect_or_die();
	EXPECT(hy_close(h), HY_OK);
	EXPECT(hy_close(h), HY_EBADHANDLE);
	EXPECT(hy_send(h, "x", 1), HY_EBADHANDLE);
	int64_t h2 = connect_or_die();
	CHECK(h2 != h, "handle %" PRId64 " reused", h);
	EXPECT(hy_close(h2), HY_OK);
	printf("ok: unknown and closed handles give HY_EBADHANDLE\n");
}

static void check_too_small(void) {
	int64_t h = connect_or_die();
	const char *msg = "hello, hydrogen";
	const int32_t len = (int32_t)strlen(msg);
	send_str(h, msg);
	send_str(h, "next");

	/* Probe the size with no buffer, then with one too small: the message
	   is kept each time, and comes before the one sent after it. */
	char buf[64];
	int32_t needed = -1;
	EXPECT(hy_recv(h, NULL, 0, WAIT_MS, &needed), HY_ETOOSMALL);
	CHECK(needed == len, "*needed = %d, want %d", needed, len);
	needed = -1;
	EXPECT(hy_recv(h, buf, 4, WAIT_MS, &needed), HY_ETOOSMALL);
	CHECK(needed == len, "*needed = %d, want %d", needed, len);
	CHECK(strstr(last_error(), "kept") != NULL, "the message says the frame is kept");
	EXPECT(hy_recv(h, buf, needed, WAIT_MS, &needed), len);
	CHECK(memcmp(buf, msg, (size_t)len) == 0, "the kept message came back changed");
	CHECK(strlen(last_error()) == 0, "success clears the message");
	recv_str(h, "next");
	printf("ok: HY_ETOOSMALL gives the size needed (%d) and keeps the message for the retry\n", len);

	/* The same for a telemetry reply. */
	needed = -1;
	EXPECT(hy_stats(h, 0.05f, buf, 8, &needed), HY_ETOOSMALL);
	CHECK(needed > 8, "*needed = %d", needed);
	char *json = malloc((size_t)needed);
	CHECK(json != NULL, "malloc");
	int32_t want = needed - 1;
	EXPECT(hy_stats(h, 0.05f, json, needed, &needed), want);
	CHECK(json[want] == '\0', "the reply is not NUL-terminated");
	CHECK(json[0] == '{' && strstr(json, "\"up_time\":") != NULL, "not a reply: %s", json);
	printf("ok: hy_stats gives HY_ETOOSMALL with the size needed (%d) and keeps the reply\n", want + 1);
	free(json);
	EXPECT(hy_close(h), HY_OK);
}

static void check_timeout(void) {
	int64_t h = connect_or_die();
	char buf[16];
	int32_t needed = -1;
	double start = now_ms();
	EXPECT(hy_recv(h, buf, sizeof buf, 100, &needed), HY_ETIMEOUT);
	double waited = now_ms() - start;
	CHECK(waited >= 99.0, "returned after %.1f ms, before the 100 ms timeout", waited);
	CHECK(needed == 0, "*needed = %d", needed);
	CHECK(strstr(last_error(), "100 ms") != NULL, "the message gives the timeout");
	/* The connection is still good. */
	send_str(h, "after the timeout");
	recv_str(h, "after the timeout");
	EXPECT(hy_close(h), HY_OK);
	printf("ok: hy_recv gives HY_ETIMEOUT and the connection carries on\n");
}

static void check_refused_span(void) {
	int64_t h = connect_or_die();
	char json[HY_MAX_PAYLOAD + 1];
	int32_t needed = -1;
	struct {
		float seconds;
		const char *reason;
	} spans[] = {{NAN, "NaN"}, {0.0f, "positive"}, {-1.0f, "positive"}, {INFINITY, "infinite"}, {61.0f, "maximum"}};
	for (size_t i = 0; i < sizeof spans / sizeof spans[0]; i++) {
		EXPECT(hy_stats(h, spans[i].seconds, json, sizeof json, &needed), HY_EBROKER);
		CHECK(needed == 0, "*needed = %d", needed);
		const char *msg = last_error();
		CHECK(strstr(msg, spans[i].reason) != NULL, "span %g: message \"%s\" lacks \"%s\"",
		      spans[i].seconds, msg, spans[i].reason);
		if (i == 0) printf("ok: a NaN span gives HY_EBROKER: %s\n", msg);
	}
	/* The connection stays open. */
	send_str(h, "still open");
	recv_str(h, "still open");
	EXPECT(hy_close(h), HY_OK);
	printf("ok: refused spans (NaN, 0, -1, inf, 61 s) give HY_EBROKER; the connection stays open\n");
}

static void check_last_error(void) {
	EXPECT(hy_send(424242, "x", 1), HY_EBADHANDLE);
	char whole[1024];
	int32_t n = hy_last_error(whole, sizeof whole);
	CHECK(n > 10 && n == (int32_t)strlen(whole), "hy_last_error = %d for \"%s\"", n, whole);
	EXPECT(hy_last_error(NULL, 0), n);
	char cut[6];
	EXPECT(hy_last_error(cut, sizeof cut), n);
	CHECK(strlen(cut) == sizeof cut - 1 && strncmp(cut, whole, sizeof cut - 1) == 0,
	      "cut to \"%s\"", cut);
	EXPECT(hy_last_error(cut, -1), HY_EINVAL);
	EXPECT(hy_last_error(NULL, 4), HY_EINVAL);
	EXPECT(hy_last_error(NULL, 0), n); /* unchanged by its own misuse */
	printf("ok: hy_last_error copies and cuts like snprintf\n");
}

/* ---- Threads -------------------------------------------------------- */

/* fresh_thread checks that a new thread starts with no message, and that
   its errors do not reach the main thread's. */
static void *fresh_thread(void *arg) {
	(void)arg;
	EXPECT(hy_last_error(NULL, 0), 0);
	EXPECT(hy_connect(NULL, 1000), HY_EINVAL);
	CHECK(strstr(last_error(), "NULL") != NULL, "the thread's own message");
	return NULL;
}

static void check_per_thread(void) {
	EXPECT(hy_send(515151, "x", 1), HY_EBADHANDLE);
	pthread_t t;
	CHECK(pthread_create(&t, NULL, fresh_thread, NULL) == 0, "pthread_create");
	pthread_join(t, NULL);
	CHECK(strstr(last_error(), "515151") != NULL, "another thread's error replaced this one's");
	printf("ok: each thread has its own hy_last_error\n");
}

struct blocked {
	int64_t h;
	int32_t rc;
};

static void *blocked_recv(void *arg) {
	struct blocked *b = arg;
	char buf[16];
	b->rc = hy_recv(b->h, buf, sizeof buf, HY_NO_TIMEOUT, NULL);
	return NULL;
}

/* check_close_unblocks closes a handle while another thread waits on it
   without a bound. The waiter is either in hy_recv (HY_ECLOSED) or not yet
   there (HY_EBADHANDLE); either way it returns. */
static void check_close_unblocks(void) {
	struct blocked b = {.h = connect_or_die(), .rc = 1};
	pthread_t t;
	CHECK(pthread_create(&t, NULL, blocked_recv, &b) == 0, "pthread_create");
	EXPECT(hy_close(b.h), HY_OK);
	pthread_join(t, NULL);
	CHECK(b.rc == HY_ECLOSED || b.rc == HY_EBADHANDLE, "the waiting hy_recv gave %d", b.rc);
	printf("ok: hy_close ends a hy_recv waiting in another thread\n");
}

/* worker: a connection of its own; sends and receives in lock step, then
   pipelined, then asks for telemetry. */
static void *worker(void *arg) {
	int id = (int)(intptr_t)arg;
	int64_t h = connect_or_die();
	char msg[64];
	for (int i = 0; i < MESSAGES / 2; i++) {
		snprintf(msg, sizeof msg, "worker %d message %d", id, i);
		send_str(h, msg);
		recv_str(h, msg);
	}
	for (int i = MESSAGES / 2; i < MESSAGES; i++) {
		snprintf(msg, sizeof msg, "worker %d message %d", id, i);
		send_str(h, msg);
	}
	for (int i = MESSAGES / 2; i < MESSAGES; i++) {
		snprintf(msg, sizeof msg, "worker %d message %d", id, i);
		recv_str(h, msg);
	}
	char json[HY_MAX_PAYLOAD + 1];
	int32_t n = hy_stats(h, 0.05f, json, sizeof json, NULL);
	CHECK(n > 0 && strstr(json, "\"up_time\":") != NULL, "worker %d: hy_stats = %d", id, n);
	EXPECT(hy_close(h), HY_OK);
	return NULL;
}

struct sender {
	int64_t h; /* shared by both senders */
	int id;
};

static void *shared_sender(void *arg) {
	struct sender *s = arg;
	char msg[32];
	for (int i = 0; i < MESSAGES; i++) {
		snprintf(msg, sizeof msg, "%d:%d", s->id, i);
		send_str(s->h, msg);
	}
	return NULL;
}

static void check_threads(void) {
	pthread_t workers[WORKERS], senders[2];
	for (int i = 0; i < WORKERS; i++)
		CHECK(pthread_create(&workers[i], NULL, worker, (void *)(intptr_t)i) == 0, "pthread_create");

	/* Two threads send on one handle while this one receives on it: every
	   message arrives once, and each sender's in the order it sent them. */
	int64_t h = connect_or_die();
	struct sender s[2] = {{h, 0}, {h, 1}};
	for (int i = 0; i < 2; i++)
		CHECK(pthread_create(&senders[i], NULL, shared_sender, &s[i]) == 0, "pthread_create");
	int next[2] = {0, 0};
	for (int i = 0; i < 2 * MESSAGES; i++) {
		char buf[32];
		int32_t n = hy_recv(h, buf, sizeof buf - 1, WAIT_MS, NULL);
		CHECK(n > 0, "shared handle: hy_recv = %d after %d messages", n, i);
		buf[n] = '\0';
		int id, seq;
		CHECK(sscanf(buf, "%d:%d", &id, &seq) == 2 && (id == 0 || id == 1), "shared handle: received \"%s\"", buf);
		CHECK(seq == next[id], "shared handle: sender %d's message %d came when %d was due", id, seq, next[id]);
		next[id]++;
	}
	for (int i = 0; i < 2; i++) pthread_join(senders[i], NULL);
	EXPECT(hy_close(h), HY_OK);
	for (int i = 0; i < WORKERS; i++) pthread_join(workers[i], NULL);
	printf("ok: %d threads with a connection each and 2 sharing one: every message came back, in order\n",
	       WORKERS);
}

int main(int argc, char **argv) {
	if (argc != 2) {
		fprintf(stderr, "usage: threads HOST:PORT\n");
		return 2;
	}
	addr = argv[1];
	check_arguments();
	check_bad_handles();
	check_too_small();
	check_timeout();
	check_refused_span();
	check_last_error();
	check_per_thread();
	check_close_unblocks();
	check_threads();
	printf("threads: all checks passed\n");
	return 0;
}
