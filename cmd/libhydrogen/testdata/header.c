/*
 * header.c is compiled by TestCABI, with warnings as errors, against
 * hydrogen.h and the libhydrogen.h that the c-shared build writes. Each
 * function is taken as the type hydrogen.h documents for it: a change to a
 * signature in either header that C callers would notice fails to compile.
 */
#include "hydrogen.h"
#include "libhydrogen.h"

int64_t (*const check_connect)(const char *addr, int32_t timeout_ms) = hy_connect;
int64_t (*const check_connect_secure)(const char *addr, const char *credential, int32_t use_tls,
                                      const char *tls_ca_file, const char *tls_server_name,
                                      int32_t timeout_ms) = hy_connect_secure;
int32_t (*const check_send)(int64_t h, const void *buf, int32_t len) = hy_send;
int32_t (*const check_recv)(int64_t h, void *buf, int32_t cap, int32_t timeout_ms, int32_t *needed) = hy_recv;
int32_t (*const check_stats)(int64_t h, float seconds, char *buf, int32_t cap, int32_t *needed) = hy_stats;
int32_t (*const check_close)(int64_t h) = hy_close;
int32_t (*const check_last_error)(char *buf, int32_t cap) = hy_last_error;

/* HY_OK is 0, the errors are negative, and no two codes are equal (a
   duplicate case label is an error). */
typedef char check_signs[(HY_OK == 0 && HY_EINVAL < 0 && HY_EBADHANDLE < 0 && HY_ECLOSED < 0 &&
                          HY_ETIMEOUT < 0 && HY_ETOOSMALL < 0 && HY_EBROKER < 0 && HY_EIO < 0 &&
                          HY_EPROTO < 0 && HY_EINTERNAL < 0 && HY_EAUTH < 0) ? 1 : -1];

int check_distinct(int code);
int check_distinct(int code) {
	switch (code) {
	case HY_OK:
	case HY_EINVAL:
	case HY_EBADHANDLE:
	case HY_ECLOSED:
	case HY_ETIMEOUT:
	case HY_EAUTH:
	case HY_ETOOSMALL:
	case HY_EBROKER:
	case HY_EIO:
	case HY_EPROTO:
	case HY_EINTERNAL:
		return 1;
	}
	return 0;
}
