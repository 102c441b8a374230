/* GPU test programs: fail-fast checks for CUDA and sluice calls. A test
 * tool, not a library: a failed call prints file:line and exits 2. */
#ifndef SLUICE_TESTS_GPU_CHECK_H
#define SLUICE_TESTS_GPU_CHECK_H

#include <stdio.h>
#include <stdlib.h>

#include <cuda_runtime_api.h>

#include "sluice/err.h"

#define CK(call)                                                                                   \
	do {                                                                                       \
		cudaError_t e_ = (call);                                                           \
		if (e_ != cudaSuccess) {                                                           \
			fprintf(stderr, "%s:%d: %s: %s\n", __FILE__, __LINE__, #call,              \
			        cudaGetErrorString(e_));                                           \
			exit(2);                                                                   \
		}                                                                                  \
	} while (0)
#define SK(call)                                                                                   \
	do {                                                                                       \
		if ((call) != SL_OK) {                                                             \
			fprintf(stderr, "%s:%d: %s: %s\n", __FILE__, __LINE__, #call, sl_errmsg()); \
			exit(2);                                                                   \
		}                                                                                  \
	} while (0)

#endif
