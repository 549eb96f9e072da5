/* The device context of the CUDA backend (ts_backend_vtable.context), lent to
 * CUDA blocks and collectives as ts_host.device_context. Plain C, so that any
 * plugin can read it without the CUDA headers. */
#ifndef TESSERA_CUDA_CONTEXT_H
#define TESSERA_CUDA_CONTEXT_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct ts_cuda_context {
  uint32_t struct_size;
  int32_t device_index; /* the CUDA ordinal every queued operation runs on */
  void* stream;         /* cudaStream_t: the one queue of the backend */
} ts_cuda_context;

#ifdef __cplusplus
}
#endif

#endif /* TESSERA_CUDA_CONTEXT_H */
