/* sluice: level-gated logging with a subsystem mask and a pluggable sink. */
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "sluice/log.h"

_Atomic int sl_log_level_ = SL_LOG_WARN;
_Atomic unsigned sl_log_mask_ = SL_SUB_ALL;

static sl_log_sink_fn log_sink;
static void *log_sink_arg;
static pthread_mutex_t log_lock = PTHREAD_MUTEX_INITIALIZER;

static const char *const level_names[] = {"none", "error", "warn", "info", "debug", "trace"};
static const struct {
	const char *name;
	unsigned bit;
} subsys[] = {
	{"plan", SL_SUB_PLAN},     {"lp", SL_SUB_LP},       {"comm", SL_SUB_COMM},
	{"kern", SL_SUB_KERN},     {"daemon", SL_SUB_DAEMON}, {"trace", SL_SUB_TRACE},
	{"cli", SL_SUB_CLI},
};

void sl_log_set_level(sl_log_level level)
{
	atomic_store_explicit(&sl_log_level_, (int)level, memory_order_relaxed);
}

void sl_log_set_mask(unsigned mask)
{
	atomic_store_explicit(&sl_log_mask_, mask, memory_order_relaxed);
}

int sl_log_level_get(void)
{
	return SL_LOG_LEVEL_();
}

unsigned sl_log_mask_get(void)
{
	return SL_LOG_MASK_();
}

void sl_log_set_sink(sl_log_sink_fn fn, void *arg)
{
	pthread_mutex_lock(&log_lock);
	log_sink = fn;
	log_sink_arg = arg;
	pthread_mutex_unlock(&log_lock);
}

int sl_log_level_parse(const char *name)
{
	for (size_t i = 0; i < sizeof(level_names) / sizeof(level_names[0]); i++)
		if (strcasecmp(name, level_names[i]) == 0)
			return (int)i;
	if (strcasecmp(name, "warning") == 0)
		return SL_LOG_WARN;
	return -1;
}

const char *sl_log_subsys_name(unsigned sub)
{
	for (size_t i = 0; i < sizeof(subsys) / sizeof(subsys[0]); i++)
		if (sub & subsys[i].bit)
			return subsys[i].name;
	return "all";
}

void sl_log_init_from_env(void)
{
	const char *lv = getenv("SLUICE_LOG");
	if (lv != NULL && sl_log_level_parse(lv) >= 0)
		sl_log_set_level((sl_log_level)sl_log_level_parse(lv));
	const char *ss = getenv("SLUICE_LOG_SUBSYS");
	if (ss == NULL || *ss == '\0')
		return;
	unsigned mask = 0;
	char buf[256];
	snprintf(buf, sizeof(buf), "%s", ss);
	char *save = NULL;
	for (char *tok = strtok_r(buf, ",", &save); tok != NULL; tok = strtok_r(NULL, ",", &save)) {
		if (strcasecmp(tok, "all") == 0)
			mask |= SL_SUB_ALL;
		for (size_t i = 0; i < sizeof(subsys) / sizeof(subsys[0]); i++)
			if (strcasecmp(tok, subsys[i].name) == 0)
				mask |= subsys[i].bit;
	}
	if (mask != 0)
		sl_log_set_mask(mask);
}

void sl_log_(sl_log_level level, unsigned sub, const char *file, int line, const char *fmt, ...)
{
	char msg[2048];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);

	pthread_mutex_lock(&log_lock);
	if (log_sink != NULL) {
		log_sink(level, sub, file, line, msg, log_sink_arg);
	} else {
		const char *base = strrchr(file, '/');
		fprintf(stderr, "sluice %s %s %s:%d: %s\n", level_names[level], sl_log_subsys_name(sub),
		        base ? base + 1 : file, line, msg);
	}
	pthread_mutex_unlock(&log_lock);
}
