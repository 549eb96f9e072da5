/* Tessera plugin ABI.
 *
 * A plugin is a shared library that exports exactly one C function,
 *
 *   TS_PLUGIN_EXPORT const ts_plugin_descriptor* tessera_plugin(void);
 *
 * (TS_PLUGIN_ENTRY names it), returning a descriptor that lives as long as the
 * library. This header is all a plugin needs: it is plain C, and a plugin written
 * in C against it alone is a complete plugin. Everything crosses this boundary as
 * plain C: no exceptions, no C++ objects, no allocation freed on the other side.
 *
 * Versioning: a host accepts a plugin whose abi_major equals its own. Minor
 * versions are additive: new fields and function pointers are only ever appended
 * to the end of a struct, and every extensible struct starts with struct_size so
 * that each side reads only what the other side has. A host never calls a
 * function pointer that is NULL or lies beyond the plugin's struct_size.
 * docs/architecture.md lists what each version added and what later minors plan.
 */
#ifndef TESSERA_ABI_H
#define TESSERA_ABI_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* 2.0: the entry point is an exported C function (1.x exported a Boost.DLL alias);
 * ts_host.device_context replaces cuda_stream; collectives take a device context;
 * blocks may describe their weights and the cache they need (describe) and say
 * whether they can be built (supports); decode requests address cache slots. */
#define TS_ABI_MAJOR 2
/* 2.1: training: a block may offer forward_train, backward and train_workspace.
 * 2.2: row-invariant passes: ts_batch.flags and TS_BLOCK_ROW_INVARIANT.
 * 2.3: block-quantised weight dtypes (TS_Q8_0 .. TS_Q6_K). */
#define TS_ABI_MINOR 3
#define TS_PLUGIN_ENTRY "tessera_plugin"

#if defined(_WIN32)
#define TS_PLUGIN_EXPORT __declspec(dllexport)
#else
#define TS_PLUGIN_EXPORT __attribute__((visibility("default")))
#endif

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
  TS_U8 = 5,
  /* (2.3) Block-quantised weights, in the public GGUF block layouts: each row of a
   * [rows, cols] matrix is cols / B blocks of B values (B = 32, or 256 for the K
   * types), rows back to back; stride[0] still counts values (cols). The host hands
   * a block such a tensor only for a weight whose ts_weight_decl.dtypes has its bit,
   * and only for matrices whose cols is a multiple of B. */
  TS_Q8_0 = 6,
  TS_Q4_0 = 7,
  TS_Q4_1 = 8,
  TS_Q4_K = 9,
  TS_Q5_K = 10,
  TS_Q6_K = 11
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

/* What the host lends every plugin object: its thread pool, its log, and the
 * device context of the backend the object runs with. */
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
  /* The context of the device backend (ts_backend_vtable.context): what it is,
   * the backend that made it defines. The CUDA backend's is a ts_cuda_context
   * (tessera/cuda/context.h: device ordinal and stream). NULL on the CPU. */
  void* device_context;
} ts_host;

/* A group of ranks. Tensors are reduced/gathered along `dim`. Every collective
 * takes the device context its tensors' work is ordered on (ts_host.device_context
 * of the caller: NCCL queues on the stream inside it); NULL for CPU tensors. */
typedef struct ts_comm {
  uint32_t struct_size;
  void* ctx;
  int32_t rank;
  int32_t world;
  int (*all_reduce_sum)(void* ctx, ts_tensor* inout, void* device_context, ts_error* err);
  int (*all_gather)(void* ctx, const ts_tensor* in, ts_tensor* out, int32_t dim,
                    void* device_context, ts_error* err);
  int (*reduce_scatter_sum)(void* ctx, const ts_tensor* in, ts_tensor* out, int32_t dim,
                            void* device_context, ts_error* err);
  int (*broadcast)(void* ctx, ts_tensor* inout, int32_t root, void* device_context, ts_error* err);
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
  TS_KIND_BACKEND = 5
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
  const ts_comm* comm; /* rank/world for sharded blocks; NULL or world 1 when unsharded */
  const ts_host* host;
} ts_block_config;

enum ts_block_flags {
  /* The block adds nothing to the residual stream: the host may skip its norm,
   * its call and its residual add. */
  TS_BLOCK_IDENTITY = 1u << 0,
  /* (2.2) The block honours TS_BATCH_ROW_INVARIANT. The host asks for such passes only
   * when every non-identity block of the model reports this flag. */
  TS_BLOCK_ROW_INVARIANT = 1u << 1
};

typedef struct ts_block_info {
  uint32_t struct_size;
  uint32_t flags;   /* ts_block_flags */
  int32_t kv_heads; /* KV heads held by this rank; 0 = the block needs no cache */
  int32_t head_dim;
  int32_t kv_dtype;
  int64_t parameters; /* parameters this rank holds */
} ts_block_info;

/* How a weight may be split across the ranks of a tensor-parallel group. */
typedef enum ts_split {
  TS_SPLIT_REPLICATED = 0, /* every rank holds all of it (norms, small maps) */
  TS_SPLIT_ROWS = 1,       /* dim 0 is split: column-parallel linears (q/k/v, gate/up) */
  TS_SPLIT_COLUMNS = 2     /* dim 1 is split: row-parallel linears (o, down) */
} ts_split;

/* How the host fills a weight when a model asks for random weights. The draws
 * are the host's (deterministic per seed and full name); only the law is the
 * block's. */
typedef enum ts_init {
  TS_INIT_LINEAR = 0, /* N(0, 1) / sqrt(shape[ndim - 1]): a linear map's fan-in */
  TS_INIT_NORM = 1,   /* 1 + 0.1 N(0, 1): a norm's scale */
  TS_INIT_NORMAL = 2, /* init_scale * N(0, 1) */
  TS_INIT_ZEROS = 3,
  TS_INIT_ONES = 4
} ts_init;

#define TS_MAX_WEIGHT_NAME 128

/* One weight a block reads through ts_weights.get, as it declares it before it
 * is made. All of it is written by the plugin into host-owned memory. */
typedef struct ts_weight_decl {
  char name[TS_MAX_WEIGHT_NAME]; /* block-local ("q_proj.weight"), NUL-terminated */
  int32_t ndim;
  int64_t shape[TS_MAX_DIMS]; /* the whole tensor, unsharded */
  /* The dtypes the block reads it in, as a mask of (1u << ts_dtype). The host keeps
   * matrices in [runtime] weight_dtype and vectors in f32 when the mask allows;
   * 0 means f32, f16 and bf16. (2.3) A quantised dtype's bit lets the host keep a
   * quantised matrix as the file stores it; without it the host dequantises. */
  uint32_t dtypes;
  int32_t split;    /* ts_split */
  int32_t init;     /* ts_init */
  float init_scale; /* TS_INIT_NORMAL only */
} ts_weight_decl;

/* What a block with a given configuration needs, known before it is made: its
 * weights, its KV cache and whether it is an identity. Filled by describe. */
typedef struct ts_block_layout {
  uint32_t struct_size;
  uint32_t flags;   /* ts_block_flags, as info() will report them */
  int32_t kv_heads; /* as ts_block_info: per rank of config->comm; 0 = no cache */
  int32_t head_dim;
  int32_t kv_dtype;
  int32_t n_weights;       /* written by the plugin: how many weights it reads */
  int32_t capacity;        /* set by the host: entries `weights` can hold */
  ts_weight_decl* weights; /* host-owned; the plugin fills min(n_weights, capacity)
                            * entries, and the host asks again with more room when
                            * n_weights > capacity */
} ts_block_layout;

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
  /* (2.2) ts_batch_flags; read only when struct_size covers it (sdk::batch_flags). */
  uint32_t flags;
} ts_batch;

enum ts_batch_flags {
  /* Every token's output must be the bits it would get as the only new token of a
   * one-sequence pass: no reduction may depend on how many tokens or sequences the pass
   * holds, nor on the thread count. Attention reduces over the rows a token sees in
   * their logical order (cached rows, then the new rows it sees, ascending), in chunks
   * whose bounds depend on that order alone. A tree verified this way gives what
   * token-by-token decoding gives, by construction (Medusa's exact mode). */
  TS_BATCH_ROW_INVARIANT = 1u << 0
};

typedef struct ts_block_io {
  uint32_t struct_size;
  const ts_tensor* x; /* [n_tokens, hidden], already normalised by the host */
  ts_tensor* y;       /* [n_tokens, hidden], the block's contribution to the residual */
  const ts_batch* batch;
  /* NULL when info.kv_heads == 0, and (2.1) for a cache-free run of an attention
   * block: each sequence of the batch is then whole, its tokens attend causally
   * (or by its tree mask) among themselves only, and nothing is cached. Training
   * and scoring run this way. */
  ts_kv_layer* kv;
} ts_block_io;

/* ------------------------------------------------------- training (ABI 2.1) */

/* What a training forward keeps for backward (the run's activation policy). */
typedef enum ts_recompute {
  TS_RECOMPUTE_NONE = 0, /* keep every activation backward needs */
  TS_RECOMPUTE_CORE = 1, /* keep the projections, recompute the attention core (scores,
                          * softmax, the sum over V) in backward: Megatron's selective
                          * recomputation; blocks without such a core keep everything */
  TS_RECOMPUTE_ALL = 2   /* keep nothing: backward recomputes the block from x */
} ts_recompute;

/* Host-owned f32 gradient buffers of one block's weights, by the block-local names
 * it declared (ts_weight_decl.name). get fills `out` with the buffer of `name`,
 * shaped as the tensor ts_weights.get gave the block; the block adds its gradient
 * into it (+=, so that the host can accumulate over micro-batches). TS_OK with
 * out->data NULL means the weight is frozen: compute nothing for it. */
typedef struct ts_grads {
  void* ctx;
  int (*get)(void* ctx, const char* name, ts_tensor* out, ts_error* err);
} ts_grads;

typedef struct ts_backward_io {
  uint32_t struct_size;
  const ts_tensor* x;      /* [n_tokens, hidden]: the input forward_train saw */
  const ts_tensor* grad_y; /* [n_tokens, hidden]: d loss / d y */
  /* [n_tokens, hidden]: d loss / d x, written (not added) and complete (summed over
   * the ranks of config->comm by the block); NULL when nothing upstream trains, so
   * the block may skip it. */
  ts_tensor* grad_x;
  const ts_batch* batch; /* as forward_train's: whole sequences, no cache */
  void* workspace;       /* what forward_train kept; backward may overwrite it */
  int32_t recompute;     /* ts_recompute, as forward_train's */
  const ts_grads* grads;
} ts_backward_io;

typedef struct ts_block_vtable {
  uint32_t struct_size;
  /* create may return TS_UNSUPPORTED (with a reason) when it cannot build this
   * configuration on this machine: the host then tries the next provider. */
  int (*create)(const ts_block_config* config, void** self, ts_error* err);
  void (*destroy)(void* self);
  int (*info)(void* self, ts_block_info* out, ts_error* err);
  int (*forward)(void* self, const ts_block_io* io, ts_error* err);
  /* Optional. Keep cache rows first_row + keep[i] (i < n_keep, ascending) and move
   * them to rows first_row + i, e.g. the accepted path of a verified tree. When
   * NULL the host moves the rows itself. */
  int (*compact_kv)(void* self, ts_kv_layer* kv, int32_t slot, int32_t first_row,
                    const int32_t* keep, int32_t n_keep, ts_error* err);
  /* Optional. The weights and cache a block of this configuration needs, without
   * making it (config->weights is NULL). TS_ERROR for parameters it cannot accept,
   * naming them. The host derives from it random weights, the shape checks at
   * load, the KV cache and what `tessera info` shows; a provider without it gets
   * none of these for its own tensors. */
  int (*describe)(const ts_block_config* config, ts_block_layout* out, ts_error* err);
  /* Optional. TS_OK when create would succeed for this configuration on this
   * machine (config->weights is NULL); TS_UNSUPPORTED with the reason when not,
   * so that the host picks another provider before loading anything. */
  int (*supports)(const ts_block_config* config, ts_error* reason);

  /* ABI 2.1, optional, all three or none: training. A block without them cannot be
   * trained (the host says so, naming the layer, the kind and the plugin). */
  /* Bytes of workspace forward_train keeps for this batch under `recompute`. */
  int (*train_workspace)(void* self, const ts_batch* batch, int32_t recompute, uint64_t* bytes,
                         ts_error* err);
  /* As forward with io->kv NULL (whole causal sequences), also keeping in `workspace`
   * (host-owned, train_workspace bytes, 64-byte aligned) what backward needs. */
  int (*forward_train)(void* self, const ts_block_io* io, int32_t recompute, void* workspace,
                       ts_error* err);
  /* Given d loss / d y: d loss / d x into io->grad_x, and the weights' gradients added
   * into io->grads. Gradients do not depend on `recompute`. */
  int (*backward)(void* self, const ts_backward_io* io, ts_error* err);
} ts_block_vtable;

/* ---------------------------------------------------------------- decoders */

/* Slots and sequences: a slot is a row of the KV cache (the host's storage); a
 * sequence is one stream of tokens being generated, which occupies a slot while
 * it runs. Every call below addresses slots; entry s of a batch or step is the
 * sequence in slots[s].
 *
 * Feeds tokens through the whole model. Entry s gets tokens offsets[s] ..
 * offsets[s+1]-1, appended after the rows cached in slots[s]. positions NULL
 * means consecutive positions after the cache; tree_masks as in ts_batch. When
 * logits / hidden are non-NULL they receive f32 [n_tokens, vocab] and
 * [n_tokens, hidden] (final-norm output) for every fed token. The host also
 * remembers, per slot, the logits and hidden state of the last token fed. */
typedef struct ts_forward_request {
  uint32_t struct_size;
  int32_t n_seqs;
  const int32_t* slots;
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
  /* As ts_block_vtable.compact_kv, across every layer, and shortens the slot
   * to first_row + n_keep rows. */
  int (*compact_kv)(void* ctx, int32_t slot, int32_t first_row, const int32_t* keep, int32_t n_keep,
                    ts_error* err);
  const float* (*last_logits)(void* ctx, int32_t slot); /* [vocab] */
  const float* (*last_hidden)(void* ctx, int32_t slot); /* [hidden] */
  int32_t (*length)(void* ctx, int32_t slot);           /* cached rows */
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
 * last logits of its slot, write them out, and feed them through host->forward
 * unless the sequence finished (an end token, or budget exhausted). Entry s of
 * every array is the sequence in slots[s]. */
typedef struct ts_decode_step {
  uint32_t struct_size;
  int32_t n_seqs;
  const int32_t* slots;
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

/* A device runtime: memory on one device, copies, and the operations of the
 * forward pass that are not blocks (RMSNorm, residual add, embedding gather,
 * the lm head, choosing tokens). The core stays free of device code: it drives
 * a model on a device through this table and lends device blocks the backend's
 * context as ts_host.device_context.
 *
 * Order: every call is queued on the backend's one stream in call order, as
 * is the work of blocks given that stream. Calls that leave results in host
 * memory (copy to TS_DEVICE_CPU, argmax, sample) return once they are there.
 * Tensors are on the backend's device unless a comment says host memory.
 * Every entry of 2.0 is mandatory; later minors append optional ones. */

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
  /* The device context lent to device blocks and collectives as
   * ts_host.device_context; valid while self lives. Its layout is this backend's
   * (the CUDA one: ts_cuda_context). */
  void* (*context)(void* self);

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
   * ts_search_vtable, ts_backend_vtable. */
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

/* The one symbol a plugin exports (define it; the host resolves it by name). */
TS_PLUGIN_EXPORT const ts_plugin_descriptor* tessera_plugin(void);

#ifdef __cplusplus
}
#endif

#endif /* TESSERA_ABI_H */
