/* sluice kernels: CUDA and NCCL error codes translated to sl_err. */
#include <cuda_runtime_api.h>
#include <nccl.h>

#include "kern.h"

sl_err kern_cuda_err(int code, const char *what, const char *file, int line)
{
	/* A failed runtime call leaves its (non-sticky) error as the last error
	 * until someone reads it; read it here, where it is reported. A sticky
	 * error (a broken context) stays: every later call returns it anyway. */
	(void)cudaGetLastError();
	return sl_seterr(SL_ECUDA, "%s:%d: %s failed: %s (%s, CUDA error %d)", file, line, what,
	                 cudaGetErrorString((cudaError_t)code), cudaGetErrorName((cudaError_t)code),
	                 code);
}

sl_err kern_nccl_err(int code, const char *what, const char *file, int line)
{
	return sl_seterr(SL_ENCCL, "%s:%d: %s failed: %s (NCCL error %d)", file, line, what,
	                 ncclGetErrorString((ncclResult_t)code), code);
}
