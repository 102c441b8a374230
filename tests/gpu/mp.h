/* sluice GPU tests: run a function in n forked processes (one per rank)
 * with a file-based bootstrap channel (worker/backend.h's worker_boot_t).
 * The parent never touches CUDA: children fork first, then initialise. */
#ifndef SLUICE_TEST_GPU_MP_H
#define SLUICE_TEST_GPU_MP_H

#include "backend.h"

typedef int (*mp_fn)(int rank, int nranks, const worker_boot_t *boot, void *arg);

/* Runs fn(rank, n, boot, arg) in n child processes; returns 0 when all exit
 * 0, else the first non-zero exit code (or 1 for a signal / timeout). */
int mp_run(int n, mp_fn fn, void *arg, int timeout_s);

/* Number of CUDA devices, asked in a child process (0 when none or when
 * the driver is missing). */
int mp_gpu_count(void);

#endif
