/* Tessera plugin ABI.
 *
 * A plugin is a shared library that exports exactly one C symbol, the alias
 * TS_PLUGIN_ENTRY ("tessera_plugin"), a function returning a ts_plugin_descriptor.
 * Everything crosses this boundary as plain C: no exceptions, no C++ objects,
 * no allocation freed on the other side.
 *
 * Versioning: a host accepts a plugin whose abi_major equals its own. Minor
 * versions are additive: new fields and function pointers are only ever appended
 * to the end of a struct, and every extensible struct starts with struct_size so
 * that each side reads only what the other side has. A host never calls a
 * function pointer that is NULL or lies beyond the plugin's struct_size.
 */
#ifndef TESSERA_ABI_H
#define TESSERA_ABI_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define TS_ABI_MAJOR 1
/* 1.1 added TS_KIND_BACKEND and ts_backend_vtable (device runtimes). */
#define TS_ABI_MINOR 1
#define TS_PLUGIN_ENTRY "tessera_plugin"

/* ---------------------------------------------------------------- status */

enum ts_status { TS_OK = 0, TS_ERROR = 1, TS_UNSUPPORTED = 2 };

/* Filled by the callee when it returns TS_ERROR or TS_UNSUPPORTED. */
typedef struct ts_error {
  char message[1024];
} ts_error;

/* ---------------------------------------------------------------- tensors */

typedef enum ts_dtype {
  TS_F32 = 0,
  TS_F16 = 1,
  TS_BF16 = 2,
  TS_I32 = 3,
  TS_I64 = 4,
  TS_U8 = 5
} ts_dtype;

typedef enum ts_device { TS_DEVICE_CPU = 0, TS_DEVICE_CUDA = 1 } ts_device;

#define TS_MAX_DIMS 4

/* A non-owning view. Strides are in elements, row-major unless stated. */
typedef struct ts_tensor {
  void* data;
  int32_t dtype;        /* ts_dtype */
  int32_t device;       /* ts_device */
  int32_t device_index; /* GPU ordinal; 0 on the CPU */
  int32_t ndim;
  int64_t shape[TS_MAX_DIMS];
  int64_t stride[TS_MAX_DIMS];
} ts_tensor;

/* ------------------------------------------------------------- parameters */

typedef enum ts_param_type {
  TS_PARAM_INT = 0,
  TS_PARAM_FLOAT = 1,
  TS_PARAM_STRING = 2,
  TS_PARAM_BOOL = 3,
  TS_PARAM_INT_LIST = 4
} ts_param_type;

/* One named value from a manifest: model-wide fields and the block's own. */
typedef struct ts_param {
  const char* key;
  int32_t type;        /* ts_param_type */
  int32_t count;       /* elements of ints for TS_PARAM_INT_LIST */
  int64_t i;           /* INT and BOOL */
  double f;            /* FLOAT */
  const char* s;       /* STRING */
  const int64_t* ints; /* INT_LIST */
} ts_param;

typedef struct ts_params {
  const ts_param* items;
  int32_t count;
} ts_params;

/* ---------------------------------------------------------- host services */

typedef void (*ts_range_fn)(void* arg, int64_t begin, int64_t end);

/* What the host lends every plugin object: its thread pool, its log, its stream. */
typedef struct ts_host {
  uint32_t struct_size;
  uint32_t abi_minor;
  void* ctx;
  int32_t n_threads;
  /* Runs fn over [0, n) split into chunks of at least grain, on the host's threads;
   * returns when all chunks are done. */
  void (*parallel_for)(void* ctx, int64_t n, int64_t grain, ts_range_fn fn, void* arg);
  /* level: 0 debug, 1 info, 2 warning, 3 error. */
  void (*log)(void* ctx, int32_t level, const char* message);
  /* The application's CUDA stream (cudaStream_t) for device plugins, else NULL. */
  void* cuda_stream;
} ts_host;

/* A group of ranks. Tensors are reduced/gathered along `dim`. */
typedef struct ts_comm {
  uint32_t struct_size;
  void* ctx;
  int32_t rank;
  int32_t world;
  int (*all_reduce_sum)(void* ctx, ts_tensor* inout, ts_error* err);
  int (*all_gather)(void* ctx, const ts_tensor* in, ts_tensor* out, int32_t dim, ts_error* err);
  int (*reduce_scatter_sum)(void* ctx, const ts_tensor* in, ts_tensor* out, int32_t dim,
                            ts_error* err);
  int (*broadcast)(void* ctx, ts_tensor* inout, int32_t root, ts_error* err);
} ts_comm;

/* Named weights owned by the host. `name` is local to the block
 * ("q_proj.weight"); the host maps it to the model file's full name. The view
 * stays valid for the life of the block. Shape is the full (unsharded) tensor. */
typedef struct ts_weights {
  void* ctx;
  int (*get)(void* ctx, const char* name, ts_tensor* out, ts_error* err);
} ts_weights;

/* ------------------------------------------------------------------ blocks */

typedef enum ts_kind {
  TS_KIND_ATTENTION = 0,
  TS_KIND_FFN = 1,
  TS_KIND_DECODER = 2,
  TS_KIND_PARALLEL = 3,
  TS_KIND_SEARCH = 4,
  TS_KIND_BACKEND = 5 /* ABI 1.1: ts_backend_vtable */
} ts_kind;

typedef struct ts_block_config {
  uint32_t struct_size;
  int32_t kind; /* TS_KIND_ATTENTION or TS_KIND_FFN */
  int32_t layer;
  int32_t hidden;
  int32_t dtype; /* activation dtype of x and y */
  int32_t device;
  int32_t device_index;
  /* Model-wide fields (num_heads, head_dim, rope_theta, rms_norm_eps, max_seq_len)
   * followed by the block's own (kv_heads, intermediate_size, ...). */
  ts_params params;
  const ts_weights* weights;
  const ts_comm* comm; /* rank/world for sharded blocks; world 1 when unsharded */
  const ts_host* host;
} ts_block_config;

enum ts_block_flags {
  /* The block adds nothing to the residual stream: the host may skip its norm,
   * its call and its residual add. */
  TS_BLOCK_IDENTITY = 1u << 0
};

typedef struct ts_block_info {
  uint32_t struct_size;
  uint32_t flags;   /* ts_block_flags */
  int32_t kv_heads; /* KV heads held by this rank; 0 = the block needs no cache */
  int32_t head_dim;
  int32_t kv_dtype;
  int64_t parameters; /* parameters this rank holds */
} ts_block_info;

/* One layer's KV cache, owned by the host. k and v are
 * [slots, capacity, kv_heads, head_dim]; lengths[slot] rows are already valid. */
typedef struct ts_kv_layer {
  ts_tensor k;
  ts_tensor v;
  const int32_t* lengths;
} ts_kv_layer;

/* A batch of sequences, each with its own number of new tokens. Token rows of
 * sequence s are offsets[s] .. offsets[s+1]-1 in x and y. Their K/V rows are
 * written at cache rows lengths[slot] .. lengths[slot] + n_new - 1; the host
 * advances lengths afterwards.
 * New tokens see every cached row. Among themselves they are causal, unless
 * tree_masks[s] is set: an n_new x n_new row-major matrix, nonzero where row i
 * may attend new token j (Medusa verification). */
typedef struct ts_batch {
  uint32_t struct_size;
  int32_t n_seqs;
  int32_t n_tokens;
  const int32_t* slots;             /* [n_seqs] cache slot of each sequence */
  const int32_t* offsets;           /* [n_seqs + 1] */
  const int32_t* positions;         /* [n_tokens] RoPE position of each token */
  const uint8_t* const* tree_masks; /* NULL, or [n_seqs] entries, each NULL or a mask */
} ts_batch;

typedef struct ts_block_io {
  uint32_t struct_size;
  const ts_tensor* x; /* [n_tokens, hidden], already normalised by the host */
  ts_tensor* y;       /* [n_tokens, hidden], the block's contribution to the residual */
  const ts_batch* batch;
  ts_kv_layer* kv; /* NULL when info.kv_heads == 0 */
} ts_block_io;

typedef struct ts_block_vtable {
  uint32_t struct_size;
  int (*create)(const ts_block_config* config, void** self, ts_error* err);
  void (*destroy)(void* self);
  int (*info)(void* self, ts_block_info* out, ts_error* err);
  int (*forward)(void* self, const ts_block_io* io, ts_error* err);
  /* Optional. Keep cache rows first_row + keep[i] (i < n_keep, ascending) and move
   * them to rows first_row + i, e.g. the accepted path of a verified tree. When
   * NULL the host moves the rows itself. */
  int (*compact_kv)(void* self, ts_kv_layer* kv, int32_t slot, int32_t first_row,
                    const int32_t* keep, int32_t n_keep, ts_error* err);
} ts_block_vtable;

/* ---------------------------------------------------------------- decoders */

/* Feeds tokens to sequences through the whole model. Sequence s gets tokens
 * offsets[s] .. offsets[s+1]-1, appended after its cached rows. positions NULL
 * means consecutive positions after the cache; tree_masks as in ts_batch. When
 * logits / hidden are non-NULL they receive f32 [n_tokens, vocab] and
 * [n_tokens, hidden] (final-norm output) for every fed token. The host also
 * remembers, per sequence, the logits and hidden state of the last token fed. */
typedef struct ts_forward_request {
  uint32_t struct_size;
  int32_t n_seqs;
  const int32_t* seqs;
  const int32_t* offsets;
  const int32_t* tokens;
  const int32_t* positions;
  const uint8_t* const* tree_masks;
  float* logits;
  float* hidden;
} ts_forward_request;

typedef struct ts_decode_host {
  uint32_t struct_size;
  void* ctx;
  int32_t vocab;
  int32_t hidden;
  int (*forward)(void* ctx, const ts_forward_request* request, ts_error* err);
  /* As ts_block_vtable.compact_kv, across every layer, and shortens the sequence
   * to first_row + n_keep rows. */
  int (*compact_kv)(void* ctx, int32_t seq, int32_t first_row, const int32_t* keep, int32_t n_keep,
                    ts_error* err);
  const float* (*last_logits)(void* ctx, int32_t seq); /* [vocab] */
  const float* (*last_hidden)(void* ctx, int32_t seq); /* [hidden] */
  int32_t (*length)(void* ctx, int32_t seq);           /* cached rows */
} ts_decode_host;

typedef struct ts_decoder_config {
  uint32_t struct_size;
  int32_t vocab;
  int32_t hidden;
  ts_params params;          /* temperature, top_k, top_p, seed, eos_token_ids, ... */
  const ts_weights* weights; /* extra weights (Medusa heads); may be NULL */
  const ts_host* host;
} ts_decoder_config;

/* One step for each listed sequence: choose the next token(s) from the host's
 * last logits, write them out, and feed them through host->forward unless the
 * sequence finished (an end token, or budget exhausted). */
typedef struct ts_decode_step {
  uint32_t struct_size;
  int32_t n_seqs;
  const int32_t* seqs;
  const int32_t* budget; /* [n_seqs] tokens each sequence may still emit, >= 1 */
  int32_t capacity;      /* room per sequence in tokens */
  int32_t* tokens;       /* [n_seqs * capacity] */
  int32_t* counts;       /* [n_seqs] tokens emitted */
  uint8_t* finished;     /* [n_seqs] */
} ts_decode_step;

typedef struct ts_decoder_vtable {
  uint32_t struct_size;
  int (*create)(const ts_decoder_config* config, void** self, ts_error* err);
  void (*destroy)(void* self);
  int (*step)(void* self, const ts_decode_host* host, ts_decode_step* step, ts_error* err);
} ts_decoder_vtable;

/* ---------------------------------------------------------------- parallel */

typedef struct ts_parallel_vtable {
  uint32_t struct_size;
  int (*create)(const ts_params* params, const ts_host* host, void** self, ts_error* err);
  void (*destroy)(void* self);
  /* Fills the communicator of this process's rank; valid while self lives. */
  int (*communicator)(void* self, ts_comm* out, ts_error* err);
} ts_parallel_vtable;

/* ------------------------------------------------------------------ search */

/* A search takes a problem document (JSON, with a "problem" field naming its
 * type) and returns a solution document (JSON) allocated by the plugin and
 * released with free_string. */
typedef struct ts_search_vtable {
  uint32_t struct_size;
  int (*create)(const ts_params* params, const ts_host* host, void** self, ts_error* err);
  void (*destroy)(void* self);
  int (*solve)(void* self, const char* problem_json, char** solution_json, ts_error* err);
  void (*free_string)(void* self, char* text);
} ts_search_vtable;

/* ---------------------------------------------------------------- backends */

/* ABI 1.1. A device runtime: memory on one device, copies, and the operations
 * of the forward pass that are not blocks (RMSNorm, residual add, embedding
 * gather, the lm head, choosing tokens). The core stays free of device code:
 * it drives a model on a device through this table and lends device blocks the
 * backend's stream as ts_host.cuda_stream.
 *
 * Order: every call is queued on the backend's one stream in call order, as
 * is the work of blocks given that stream. Calls that leave results in host
 * memory (copy to TS_DEVICE_CPU, argmax, sample) return once they are there.
 * Tensors are on the backend's device unless a comment says host memory.
 * Every entry of 1.1 is mandatory; later minors append optional ones. */

typedef struct ts_backend_config {
  uint32_t struct_size;
  int32_t device_index;
  ts_params params; /* backend options (none defined yet) */
  const ts_host* host;
} ts_backend_config;

typedef struct ts_backend_device_info {
  uint32_t struct_size;
  char name[256];
  int32_t device; /* ts_device */
  int32_t device_index;
  int32_t compute_major; /* compute capability on CUDA, else 0 */
  int32_t compute_minor;
  int32_t multiprocessors;
  uint64_t total_memory; /* bytes */
  uint64_t free_memory;  /* bytes, when device_info was called */
} ts_backend_device_info;

typedef struct ts_backend_vtable {
  uint32_t struct_size;
  /* TS_UNSUPPORTED when the device is absent (no GPU, no driver). */
  int (*create)(const ts_backend_config* config, void** self, ts_error* err);
  void (*destroy)(void* self);
  int (*device_info)(void* self, ts_backend_device_info* out, ts_error* err);
  /* The native queue (a cudaStream_t), lent to device blocks as ts_host.cuda_stream. */
  void* (*stream)(void* self);

  int (*alloc)(void* self, size_t bytes, void** out, ts_error* err);
  void (*free)(void* self, void* ptr);
  /* bytes from src to dst; each side is TS_DEVICE_CPU (host memory) or the
   * backend's device. */
  int (*copy)(void* self, void* dst, int32_t dst_device, const void* src, int32_t src_device,
              size_t bytes, ts_error* err);
  int (*synchronize)(void* self, ts_error* err);

  /* dst = src converted between f32, f16 and bf16; same shape. */
  int (*convert)(void* self, const ts_tensor* src, ts_tensor* dst, ts_error* err);
  /* y[r] = x[r] / sqrt(mean(x[r]^2) + eps) * weight; x, y [rows, dim], weight [dim]. */
  int (*rmsnorm)(void* self, const ts_tensor* x, const ts_tensor* weight, double eps, ts_tensor* y,
                 ts_error* err);
  /* inout += addend, same shape (the residual add). */
  int (*add)(void* self, ts_tensor* inout, const ts_tensor* addend, ts_error* err);
  /* out[i] = table[tokens[i]]; table [vocab, hidden], out [n_tokens, hidden];
   * tokens in host memory. */
  int (*embed)(void* self, const ts_tensor* table, const int32_t* tokens, int32_t n_tokens,
               ts_tensor* out, ts_error* err);
  /* y = x w^T; x [m, k], w [n, k], y [m, n] (the lm head). */
  int (*matmul)(void* self, const ts_tensor* x, const ts_tensor* w, ts_tensor* y, ts_error* err);
  /* tokens[r] = the first index of the largest logit of row r; logits [rows, vocab];
   * tokens in host memory. */
  int (*argmax)(void* self, const ts_tensor* logits, int32_t* tokens, ts_error* err);
  /* tokens[r] drawn from softmax(logits[r] / temperature) by inverting its
   * cumulative sum at uniforms[r] in [0, 1), a number from the host's generator;
   * uniforms and tokens in host memory; temperature > 0. */
  int (*sample)(void* self, const ts_tensor* logits, float temperature, const float* uniforms,
                int32_t* tokens, ts_error* err);
} ts_backend_vtable;

/* -------------------------------------------------------------- descriptor */

typedef struct ts_provider {
  uint32_t struct_size;
  int32_t kind;     /* ts_kind */
  const char* name; /* "gqa", "swiglu", "greedy", ... */
  int32_t device;   /* ts_device */
  /* Preference when a manifest names no plugin: higher wins, 0 = cannot run
   * on this machine. May be NULL: a score of 1. */
  int32_t (*score)(void);
  /* ts_block_vtable for ATTENTION and FFN, ts_decoder_vtable, ts_parallel_vtable,
   * ts_search_vtable, ts_backend_vtable (ABI 1.1). */
  const void* vtable;
} ts_provider;

typedef struct ts_plugin_descriptor {
  uint32_t struct_size;
  uint16_t abi_major;
  uint16_t abi_minor;
  const char* name;    /* unique plugin name, e.g. "tessera-attention-cpu" */
  const char* version; /* semantic version of the plugin */
  int32_t n_providers;
  const ts_provider* providers;
} ts_plugin_descriptor;

typedef const ts_plugin_descriptor* (*ts_plugin_entry_fn)(void);

#ifdef __cplusplus
}
#endif

#endif /* TESSERA_ABI_H */
