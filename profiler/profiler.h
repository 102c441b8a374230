/* sluice profiler: internal header of the calibration part (sl_profiler:
 * shapes, fit, profile JSON; sl_profiler_gpu: the measurements, CUDA only).
 * The public API is include/sluice/calib.h. */
#ifndef SLUICE_PROFILER_H
#define SLUICE_PROFILER_H

#include "sluice/calib.h"
#include "sluice/log.h"

/* Largest hidden / ffn size accepted (a larger one is a typo, not a model). */
#define PROFILER_MAX_DIM 1048576
/* Most columns of a least-squares design (sl_calib_nnls_rel). */
#define PROFILER_MAX_COLS 4
/* Most points of one kind in a measurements file. */
#define PROFILER_MAX_POINTS 4096

#endif
