/* sluice: level-gated logging with a subsystem mask and a pluggable sink. */
#ifndef SLUICE_LOG_H
#define SLUICE_LOG_H

#ifdef __cplusplus
extern "C" {
#endif

typedef enum sl_log_level {
	SL_LOG_NONE = 0,
	SL_LOG_ERROR,
	SL_LOG_WARN,
	SL_LOG_INFO,
	SL_LOG_DEBUG,
	SL_LOG_TRACE
} sl_log_level;

/* Subsystems, one bit each. */
enum {
	SL_SUB_PLAN = 1u << 0,
	SL_SUB_LP = 1u << 1,
	SL_SUB_COMM = 1u << 2,
	SL_SUB_KERN = 1u << 3,
	SL_SUB_DAEMON = 1u << 4,
	SL_SUB_TRACE = 1u << 5,
	SL_SUB_CLI = 1u << 6,
	SL_SUB_ALL = 0xffu
};

typedef void (*sl_log_sink_fn)(sl_log_level level, unsigned sub, const char *file, int line,
                               const char *msg, void *arg);

/* The current threshold and mask; read by the macros, set by the functions
 * below. Atomic because sluiced's SIGHUP reload sets them on the main thread
 * while planner threads log; a relaxed load is enough (a message racing a
 * reload may use either level). */
#ifndef __cplusplus
#include <stdatomic.h>
extern _Atomic int sl_log_level_;
extern _Atomic unsigned sl_log_mask_;
#define SL_LOG_LEVEL_() atomic_load_explicit(&sl_log_level_, memory_order_relaxed)
#define SL_LOG_MASK_() atomic_load_explicit(&sl_log_mask_, memory_order_relaxed)
#else
/* C++ before C++23 has no _Atomic: it reads them through the functions
 * below. */
#define SL_LOG_LEVEL_() sl_log_level_get()
#define SL_LOG_MASK_() sl_log_mask_get()
#endif

void sl_log_set_level(sl_log_level level);
void sl_log_set_mask(unsigned mask);
/* The current threshold and mask (what SL_LOG compares against). */
int sl_log_level_get(void);
unsigned sl_log_mask_get(void);
/* Routes every message to fn (NULL restores the default stderr sink). */
void sl_log_set_sink(sl_log_sink_fn fn, void *arg);
/* Reads SLUICE_LOG (error|warn|info|debug|trace) and SLUICE_LOG_SUBSYS
 * (comma list of plan,lp,comm,kern,daemon,trace,cli or all). */
void sl_log_init_from_env(void);
/* Parses a level name; returns -1 when unknown. */
int sl_log_level_parse(const char *name);
const char *sl_log_subsys_name(unsigned sub);

void sl_log_(sl_log_level level, unsigned sub, const char *file, int line, const char *fmt, ...)
#if defined(__GNUC__)
	__attribute__((format(printf, 5, 6)))
#endif
	;

#define SL_LOG(level, sub, ...)                                                                    \
	do {                                                                                       \
		if ((int)(level) <= SL_LOG_LEVEL_() && ((sub) & SL_LOG_MASK_()))                  \
			sl_log_((level), (sub), __FILE__, __LINE__, __VA_ARGS__);                  \
	} while (0)
#define SL_ERROR(sub, ...) SL_LOG(SL_LOG_ERROR, sub, __VA_ARGS__)
#define SL_WARN(sub, ...) SL_LOG(SL_LOG_WARN, sub, __VA_ARGS__)
#define SL_INFO(sub, ...) SL_LOG(SL_LOG_INFO, sub, __VA_ARGS__)
#define SL_DEBUG(sub, ...) SL_LOG(SL_LOG_DEBUG, sub, __VA_ARGS__)
#define SL_TRACE(sub, ...) SL_LOG(SL_LOG_TRACE, sub, __VA_ARGS__)

/* Runs an sl_err-returning call; on failure logs file:line at debug level,
 * stores the code in rcvar and jumps to label. The local is named sl_rc_ so
 * it cannot capture a caller's variable. */
#define SL_CHECK_GOTO(call, rcvar, label)                                                          \
	do {                                                                                       \
		sl_err sl_rc_ = (call);                                                            \
		if (sl_rc_ != SL_OK) {                                                             \
			SL_DEBUG(SL_SUB_ALL, "%s failed: %s", #call, sl_errmsg());                 \
			(rcvar) = sl_rc_;                                                          \
			goto label;                                                                \
		}                                                                                  \
	} while (0)

#define SL_CHECK(call)                                                                             \
	do {                                                                                       \
		sl_err sl_rc_ = (call);                                                            \
		if (sl_rc_ != SL_OK) {                                                             \
			SL_DEBUG(SL_SUB_ALL, "%s failed: %s", #call, sl_errmsg());                 \
			return sl_rc_;                                                             \
		}                                                                                  \
	} while (0)

#ifdef __cplusplus
}
#endif
#endif
