/* sluice: error codes and the per-thread error message. */
#include <stdio.h>
#include <string.h>

#include "sluice/err.h"

static const struct {
	const char *name;
	const char *text;
} err_table[SL_ERR_COUNT_] = {
	[SL_OK] = {"SL_OK", "success"},
	[SL_ENOMEM] = {"SL_ENOMEM", "out of memory"},
	[SL_EINVAL] = {"SL_EINVAL", "invalid argument"},
	[SL_EIO] = {"SL_EIO", "input/output error"},
	[SL_EFORMAT] = {"SL_EFORMAT", "malformed input"},
	[SL_ERANGE] = {"SL_ERANGE", "value out of range"},
	[SL_ENOTFOUND] = {"SL_ENOTFOUND", "not found"},
	[SL_EINFEASIBLE] = {"SL_EINFEASIBLE", "infeasible request"},
	[SL_ETIMEOUT] = {"SL_ETIMEOUT", "timed out"},
	[SL_ELP] = {"SL_ELP", "LP solver failure"},
	[SL_ECOMM] = {"SL_ECOMM", "communication failure"},
	[SL_EPROTO] = {"SL_EPROTO", "protocol error"},
	[SL_EDENIED] = {"SL_EDENIED", "access denied"},
	[SL_EBUSY] = {"SL_EBUSY", "busy"},
	[SL_ECLOSED] = {"SL_ECLOSED", "closed"},
	[SL_ECUDA] = {"SL_ECUDA", "CUDA error"},
	[SL_ENCCL] = {"SL_ENCCL", "NCCL error"},
	[SL_ECHECK] = {"SL_ECHECK", "numerical check failed"},
	[SL_EINTERNAL] = {"SL_EINTERNAL", "internal error"},
};

static _Thread_local char err_msg[1024];
static _Thread_local sl_err err_last;

const char *sl_strerror(sl_err err)
{
	if ((unsigned)err >= SL_ERR_COUNT_)
		return "unknown error";
	return err_table[err].text;
}

const char *sl_errname(sl_err err)
{
	if ((unsigned)err >= SL_ERR_COUNT_)
		return "SL_E?";
	return err_table[err].name;
}

sl_err sl_vseterr(sl_err err, const char *fmt, va_list ap)
{
	err_last = err;
	if (fmt == NULL) {
		err_msg[0] = '\0';
		return err;
	}
	vsnprintf(err_msg, sizeof(err_msg), fmt, ap);
	return err;
}

sl_err sl_seterr(sl_err err, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	sl_vseterr(err, fmt, ap);
	va_end(ap);
	return err;
}

const char *sl_errmsg(void)
{
	if (err_msg[0] != '\0')
		return err_msg;
	return sl_strerror(err_last);
}

void sl_clearerr(void)
{
	err_msg[0] = '\0';
	err_last = SL_OK;
}
