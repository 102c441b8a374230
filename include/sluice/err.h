/* sluice: error codes and the per-thread error message. */
#ifndef SLUICE_ERR_H
#define SLUICE_ERR_H

#include <stdarg.h>

#ifdef __cplusplus
extern "C" {
#endif

/* One error enum for the whole project; SL_OK is zero. */
typedef enum sl_err {
	SL_OK = 0,
	SL_ENOMEM,      /* out of memory */
	SL_EINVAL,      /* invalid argument or option */
	SL_EIO,         /* file or system I/O failed */
	SL_EFORMAT,     /* malformed input (file, message, JSON) */
	SL_ERANGE,      /* a value outside its allowed range */
	SL_ENOTFOUND,   /* unknown name (policy, profile, key, file) */
	SL_EINFEASIBLE, /* no valid plan exists for the request */
	SL_ETIMEOUT,    /* a deadline or time limit passed */
	SL_ELP,         /* the LP/MILP solver failed */
	SL_ECOMM,       /* transport failure (ZeroMQ) */
	SL_EPROTO,      /* protocol violation (wrong message, bad frame) */
	SL_EDENIED,     /* authentication or permission refused */
	SL_EBUSY,       /* resource busy or queue full */
	SL_ECLOSED,     /* peer or object closed */
	SL_ECUDA,       /* CUDA runtime error */
	SL_ENCCL,       /* NCCL error */
	SL_ECHECK,      /* a numerical check failed */
	SL_EINTERNAL,   /* broken invariant: a bug */
	SL_ERR_COUNT_
} sl_err;

/* Returns a static, one-line description of an error code. */
const char *sl_strerror(sl_err err);

/* Returns the short symbolic name of an error code ("SL_EFORMAT"). */
const char *sl_errname(sl_err err);

/* Records a message for the calling thread and returns err, so callers can
 * write `return sl_seterr(SL_EFORMAT, "%s:%d: ...", path, line);`. */
sl_err sl_seterr(sl_err err, const char *fmt, ...)
#if defined(__GNUC__)
	__attribute__((format(printf, 2, 3)))
#endif
	;
sl_err sl_vseterr(sl_err err, const char *fmt, va_list ap);

/* The last message recorded by this thread, or sl_strerror of the last code
 * when none was given. Valid until the thread's next sl_seterr. */
const char *sl_errmsg(void);

/* Forgets the calling thread's last message. */
void sl_clearerr(void);

#ifdef __cplusplus
}
#endif
#endif
