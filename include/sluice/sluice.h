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
#include "sluice/trace.h"

#define SLUICE_VERSION "0.1.0"

#endif
