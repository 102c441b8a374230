/* sluice: umbrella header of the public API. */
#ifndef SLUICE_SLUICE_H
#define SLUICE_SLUICE_H

#include "sluice/clock.h"
#include "sluice/err.h"
#include "sluice/exit.h"
#include "sluice/log.h"
#include "sluice/plan.h"
#include "sluice/policy.h"
#include "sluice/profile.h"
#include "sluice/stats.h"
#include "sluice/trace.h"

/* The one place the version is written (CMakeLists.txt and python/setup.py
 * read it from here). */
#define SLUICE_VERSION "0.1.0"

#endif
