/* sluice kernels: the worker backend object defined by sl_kernels. */
#ifndef SLUICE_KERN_BACKEND_H
#define SLUICE_KERN_BACKEND_H

#include "backend.h"

#ifdef __cplusplus
extern "C" {
#endif

/* worker/backend.h's operations on CUDA + NCCL ("cuda"). */
extern const worker_backend_ops_t kern_cuda_backend_ops;

#ifdef __cplusplus
}
#endif
#endif
