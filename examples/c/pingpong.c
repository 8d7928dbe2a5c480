/*
 * pingpong: the hydrogen C client in one page.
 *
 * It connects to a broker, sends "ping", prints the reply, asks for a
 * telemetry reading over half a second, prints the JSON and a few of its
 * fields, and closes. Against `broker serve --app echo` the reply is the
 * message itself:
 *
 *   $ ./pingpong 127.0.0.1:1337
 *   sent: ping
 *   received: ping
 *   telemetry: {"up_time":3,"bytes_recv":9,...}
 *   up_time: 3
 *   num_clients: 1
 *   msg_recv: 2
 *
 * To a broker that requires TLS or authentication, give them in the
 * environment: HYDROGEN_TLS_CA (a PEM file of the CA to trust) turns on
 * TLS, HYDROGEN_CREDENTIAL is the token or JWT sent first:
 *
 *   $ HYDROGEN_TLS_CA=ca.pem HYDROGEN_CREDENTIAL=$(cat token) ./pingpong 127.0.0.1:1337
 *
 * Exit status 0 on success; on any error, a message on stderr and 1.
 * Build: see README.md in this directory.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "hydrogen.h"

/* die prints what failed, the code and the library's message, and exits. */
static void die(const char *what, int64_t code) {
	char msg[1024];
	hy_last_error(msg, sizeof msg);
	fprintf(stderr, "pingpong: %s: error %" PRId64 ": %s\n", what, code, msg);
	exit(1);
}

/*
 * field finds "name": in the JSON object and parses the unsigned integer
 * after it. A real program would use a JSON parser; the reply's counters
 * are plain integers, so this does for a demonstration.
 */
static int field(const char *json, const char *name, unsigned long long *out) {
	char key[64];
	snprintf(key, sizeof key, "\"%s\":", name);
	const char *p = strstr(json, key);
	if (p == NULL) return 0;
	char *end;
	*out = strtoull(p + strlen(key), &end, 10);
	return end != p + strlen(key);
}

int main(int argc, char **argv) {
	if (argc != 2) {
		fprintf(stderr, "usage: pingpong HOST:PORT\n");
		return 2;
	}

	const char *ca = getenv("HYDROGEN_TLS_CA");
	const char *credential = getenv("HYDROGEN_CREDENTIAL");
	int64_t h;
	if (ca != NULL || credential != NULL) {
		h = hy_connect_secure(argv[1], credential, ca != NULL, ca, NULL, 5000);
	} else {
		h = hy_connect(argv[1], 5000);
	}
	if (h < 0) die("connect", h);

	const char *ping = "ping";
	int32_t rc = hy_send(h, ping, (int32_t)strlen(ping));
	if (rc != HY_OK) die("send", rc);
	printf("sent: %s\n", ping);

	char reply[HY_MAX_PAYLOAD + 1];
	rc = hy_recv(h, reply, HY_MAX_PAYLOAD, 5000, NULL);
	if (rc < 0) die("recv", rc);
	reply[rc] = '\0';
	printf("received: %s\n", reply);

	/* A buffer of HY_MAX_PAYLOAD + 1 bytes holds any reply. */
	static char json[HY_MAX_PAYLOAD + 1];
	rc = hy_stats(h, 0.5f, json, sizeof json, NULL);
	if (rc < 0) die("stats", rc);
	printf("telemetry: %s\n", json);

	const char *names[] = {"up_time", "num_clients", "msg_recv"};
	for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
		unsigned long long v;
		if (!field(json, names[i], &v)) {
			fprintf(stderr, "pingpong: telemetry: no integer field %s\n", names[i]);
			return 1;
		}
		printf("%s: %llu\n", names[i], v);
	}

	rc = hy_close(h);
	if (rc != HY_OK) die("close", rc);
	return 0;
}
