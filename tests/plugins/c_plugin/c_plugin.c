/* A plugin written in plain C (C11) against <tessera/abi.h> and the C standard library
 * alone: no C++ runtime, no SDK helpers. It provides naive f32 blocks that have a
 * reference in the core, so `tessera plugin-check` checks it like any other plugin:
 *
 *   ffn swiglu        y = down(silu(gate(x)) * up(x))   weights gate_proj, up_proj, down_proj
 *   ffn linear        y = x W^T                          weight linear_mlp.weight [hidden, hidden]
 *   attention linear  y = x W^T                          weight linear_attn.weight [hidden, hidden]
 *
 * Activations are f32 on the CPU; weights f32, f16 or bf16 (converted to f32 once). Sharded
 * like the C++ CPU blocks: swiglu over the intermediate rows, linear over W's input
 * columns, then an all_reduce_sum of the partial outputs through config->comm.
 *
 * Every error is a message in ts_error and a status: TS_UNSUPPORTED for what it cannot run
 * (another device, non-f32 activations), TS_ERROR for bad input. */
#include <tessera/abi.h>

#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------------------ errors */

static int fail(ts_error* err, int status, const char* format, ...) {
  if (err != NULL) {
    va_list args;
    va_start(args, format);
    vsnprintf(err->message, sizeof(err->message), format, args);
    va_end(args);
  }
  return status;
}

/* -------------------------------------------------------------- parameters */

static const ts_param* find_param(const ts_params* params, const char* key) {
  /* The block's own keys follow the model-wide ones and replace them: the last wins. */
  const ts_param* found = NULL;
  for (int32_t i = 0; i < params->count; ++i)
    if (params->items[i].key != NULL && strcmp(params->items[i].key, key) == 0)
      found = &params->items[i];
  return found;
}

static int get_int(const ts_params* params, const char* key, int64_t* out, const char* label,
                   ts_error* err) {
  const ts_param* p = find_param(params, key);
  if (p == NULL) return fail(err, TS_ERROR, "%s: missing parameter '%s'", label, key);
  if (p->type == TS_PARAM_INT) {
    *out = p->i;
    return TS_OK;
  }
  if (p->type == TS_PARAM_FLOAT && p->f == floor(p->f)) {
    *out = (int64_t)p->f;
    return TS_OK;
  }
  return fail(err, TS_ERROR, "%s: parameter '%s' must be an integer", label, key);
}

/* ----------------------------------------------------------------- weights */

static float half_to_float(uint16_t h) {
  const uint32_t sign = (uint32_t)(h >> 15) << 31;
  const uint32_t exponent = (h >> 10) & 0x1f;
  const uint32_t mantissa = h & 0x3ff;
  float value;
  if (exponent == 0) {
    value = ldexpf((float)mantissa, -24); /* zero or subnormal */
  } else if (exponent == 31) {
    value = mantissa == 0 ? INFINITY : NAN;
  } else {
    value = ldexpf((float)(mantissa | 0x400), (int)exponent - 25);
  }
  return sign ? -value : value;
}

static float bf16_to_float(uint16_t h) {
  const uint32_t bits = (uint32_t)h << 16;
  float value;
  memcpy(&value, &bits, sizeof(value));
  return value;
}

static float element(const ts_tensor* t, int64_t row, int64_t col) {
  const int64_t at = row * t->stride[0] + col * t->stride[1];
  switch (t->dtype) {
    case TS_F16:
      return half_to_float(((const uint16_t*)t->data)[at]);
    case TS_BF16:
      return bf16_to_float(((const uint16_t*)t->data)[at]);
    default:
      return ((const float*)t->data)[at];
  }
}

/* Rows [r0, r1) and columns [c0, c1) of the 2-D weight `name` of shape [rows, cols], copied
 * to a new f32 matrix [r1 - r0, c1 - c0]. */
static int load_weight(const ts_block_config* config, const char* label, const char* name,
                       int64_t rows, int64_t cols, int64_t r0, int64_t r1, int64_t c0, int64_t c1,
                       float** out, ts_error* err) {
  const ts_weights* weights = config->weights;
  ts_tensor t;
  ts_error inner;
  memset(&t, 0, sizeof(t));
  memset(&inner, 0, sizeof(inner));
  if (weights == NULL || weights->get == NULL)
    return fail(err, TS_ERROR, "%s: no weights were given (needed '%s')", label, name);
  if (weights->get(weights->ctx, name, &t, &inner) != TS_OK)
    return fail(err, TS_ERROR, "%s: cannot get weight '%s': %s", label, name, inner.message);
  if (t.ndim != 2 || t.shape[0] != rows || t.shape[1] != cols)
    return fail(err, TS_ERROR,
                "%s: weight '%s' has ndim %d and shape [%lld, %lld], expected [%lld, %lld]", label,
                name, (int)t.ndim, (long long)(t.ndim > 0 ? t.shape[0] : 0),
                (long long)(t.ndim > 1 ? t.shape[1] : 0), (long long)rows, (long long)cols);
  if (t.dtype != TS_F32 && t.dtype != TS_F16 && t.dtype != TS_BF16)
    return fail(err, TS_UNSUPPORTED, "%s: weight '%s' has dtype %d, expected f32, f16 or bf16",
                label, name, (int)t.dtype);
  if (t.device != TS_DEVICE_CPU)
    return fail(err, TS_UNSUPPORTED, "%s: weight '%s' is not on the cpu", label, name);
  if (t.data == NULL) return fail(err, TS_ERROR, "%s: weight '%s' has no data", label, name);
  float* m = (float*)malloc((size_t)((r1 - r0) * (c1 - c0)) * sizeof(float) + 1);
  if (m == NULL) return fail(err, TS_ERROR, "%s: out of memory for weight '%s'", label, name);
  for (int64_t r = r0; r < r1; ++r)
    for (int64_t c = c0; c < c1; ++c) m[(r - r0) * (c1 - c0) + (c - c0)] = element(&t, r, c);
  *out = m;
  return TS_OK;
}

/* ------------------------------------------------------------------ blocks */

enum block_type { SWIGLU, LINEAR };

typedef struct block {
  enum block_type type;
  char label[96];
  const ts_comm* comm;
  int64_t hidden;
  int64_t begin, end; /* this rank's intermediate rows (swiglu) or input columns (linear) */
  float* gate;        /* swiglu: [end - begin, hidden] */
  float* up;          /* swiglu: [end - begin, hidden] */
  float* down;        /* swiglu: [hidden, end - begin]; linear: W's columns [hidden, end - begin] */
} block;

static void destroy_block(void* self) {
  block* b = (block*)self;
  if (b == NULL) return;
  free(b->gate);
  free(b->up);
  free(b->down);
  free(b);
}

static int create_block(const ts_block_config* config, enum block_type type, const char* name,
                        void** self, ts_error* err) {
  char label[96];
  int32_t rank = 0, world = 1;
  int64_t total = 0;
  int status = TS_OK;
  snprintf(label, sizeof(label), "fixture-c layer %d %s", (int)config->layer, name);
  if (config->device != TS_DEVICE_CPU)
    return fail(err, TS_UNSUPPORTED, "%s: runs on the cpu only", label);
  if (config->dtype != TS_F32)
    return fail(err, TS_UNSUPPORTED, "%s: activation dtype %d is not supported (expected f32)",
                label, (int)config->dtype);
  if (config->hidden <= 0)
    return fail(err, TS_ERROR, "%s: hidden size must be positive, got %d", label,
                (int)config->hidden);
  if (config->comm != NULL) {
    rank = config->comm->rank;
    world = config->comm->world;
    if (world < 1 || rank < 0 || rank >= world)
      return fail(err, TS_ERROR, "%s: invalid communicator rank %d of world %d", label, (int)rank,
                  (int)world);
  }
  if (type == SWIGLU) {
    status = get_int(&config->params, "intermediate_size", &total, label, err);
    if (status != TS_OK) return status;
    if (total <= 0)
      return fail(err, TS_ERROR, "%s: intermediate_size must be positive, got %lld", label,
                  (long long)total);
  } else {
    total = config->hidden;
  }
  if (total < world)
    return fail(err, TS_ERROR, "%s: %lld rows cannot be split over %d ranks", label,
                (long long)total, (int)world);

  block* b = (block*)calloc(1, sizeof(block));
  if (b == NULL) return fail(err, TS_ERROR, "%s: out of memory", label);
  b->type = type;
  memcpy(b->label, label, sizeof(label));
  b->comm = config->comm;
  b->hidden = config->hidden;
  b->begin = total * rank / world;
  b->end = total * (rank + 1) / world;
  const int64_t h = b->hidden;
  if (type == SWIGLU) {
    status = load_weight(config, label, "gate_proj.weight", total, h, b->begin, b->end, 0, h,
                         &b->gate, err);
    if (status == TS_OK)
      status = load_weight(config, label, "up_proj.weight", total, h, b->begin, b->end, 0, h,
                           &b->up, err);
    if (status == TS_OK)
      status = load_weight(config, label, "down_proj.weight", h, total, 0, h, b->begin, b->end,
                           &b->down, err);
  } else {
    const char* weight =
        config->kind == TS_KIND_ATTENTION ? "linear_attn.weight" : "linear_mlp.weight";
    status = load_weight(config, label, weight, h, h, 0, h, b->begin, b->end, &b->down, err);
  }
  if (status != TS_OK) {
    destroy_block(b);
    return status;
  }
  *self = b;
  return TS_OK;
}

/* One declared weight: block-local name, unsharded [rows, cols], its split over ranks. */
static void declare(ts_block_layout* out, int32_t index, const char* name, int64_t rows,
                    int64_t cols, int32_t split) {
  if (index >= out->capacity || out->weights == NULL) return; /* the host asks again */
  ts_weight_decl* d = &out->weights[index];
  memset(d, 0, sizeof(*d));
  snprintf(d->name, sizeof(d->name), "%s", name);
  d->ndim = 2;
  d->shape[0] = rows;
  d->shape[1] = cols;
  d->dtypes = 0; /* f32, f16 and bf16: load_weight converts */
  d->split = split;
  d->init = TS_INIT_LINEAR;
}

/* What a block of this configuration reads (ts_block_vtable.describe): no KV cache. */
static int describe_block(const ts_block_config* config, enum block_type type, ts_block_layout* out,
                          ts_error* err) {
  const int64_t h = config->hidden;
  out->flags = 0;
  out->kv_heads = 0;
  out->head_dim = 0;
  out->kv_dtype = TS_F32;
  if (h <= 0)
    return fail(err, TS_ERROR, "fixture-c: hidden size must be positive, got %lld", (long long)h);
  if (type == SWIGLU) {
    int64_t inter = 0;
    const int status =
        get_int(&config->params, "intermediate_size", &inter, "fixture-c swiglu", err);
    if (status != TS_OK) return status;
    if (inter <= 0)
      return fail(err, TS_ERROR, "fixture-c swiglu: intermediate_size must be positive, got %lld",
                  (long long)inter);
    out->n_weights = 3;
    declare(out, 0, "gate_proj.weight", inter, h, TS_SPLIT_ROWS);
    declare(out, 1, "up_proj.weight", inter, h, TS_SPLIT_ROWS);
    declare(out, 2, "down_proj.weight", h, inter, TS_SPLIT_COLUMNS);
  } else {
    out->n_weights = 1;
    declare(out, 0, config->kind == TS_KIND_ATTENTION ? "linear_attn.weight" : "linear_mlp.weight",
            h, h, TS_SPLIT_COLUMNS);
  }
  return TS_OK;
}

static int describe_swiglu(const ts_block_config* config, ts_block_layout* out, ts_error* err) {
  return describe_block(config, SWIGLU, out, err);
}

static int describe_linear(const ts_block_config* config, ts_block_layout* out, ts_error* err) {
  return describe_block(config, LINEAR, out, err);
}

static int create_swiglu(const ts_block_config* config, void** self, ts_error* err) {
  return create_block(config, SWIGLU, "ffn swiglu", self, err);
}

static int create_linear(const ts_block_config* config, void** self, ts_error* err) {
  return create_block(config, LINEAR,
                      config->kind == TS_KIND_ATTENTION ? "attention linear" : "ffn linear", self,
                      err);
}

static int block_info(void* self, ts_block_info* out, ts_error* err) {
  const block* b = (const block*)self;
  (void)err;
  memset(out, 0, sizeof(*out));
  out->struct_size = sizeof(*out);
  out->kv_heads = 0; /* no KV cache */
  out->kv_dtype = TS_F32;
  out->parameters = (b->type == SWIGLU ? 3 : 1) * (b->end - b->begin) * b->hidden;
  return TS_OK;
}

static int check_activation(const block* b, const ts_tensor* t, const char* what, int64_t rows,
                            ts_error* err) {
  if (t == NULL || (t->data == NULL && rows > 0))
    return fail(err, TS_ERROR, "%s: tensor %s is missing", b->label, what);
  if (t->dtype != TS_F32 || t->device != TS_DEVICE_CPU)
    return fail(err, TS_UNSUPPORTED, "%s: tensor %s must be f32 on the cpu", b->label, what);
  if (t->ndim != 2 || t->shape[0] != rows || t->shape[1] != b->hidden || t->stride[1] != 1 ||
      t->stride[0] < b->hidden)
    return fail(err, TS_ERROR, "%s: tensor %s must be [%lld, %lld] with contiguous rows", b->label,
                what, (long long)rows, (long long)b->hidden);
  return TS_OK;
}

static int block_forward(void* self, const ts_block_io* io, ts_error* err) {
  const block* b = (const block*)self;
  if (io == NULL || io->x == NULL || io->y == NULL)
    return fail(err, TS_ERROR, "%s: forward needs x and y", b->label);
  const int64_t n = io->x->ndim == 2 ? io->x->shape[0] : -1;
  if (n < 0) return fail(err, TS_ERROR, "%s: x must be [n_tokens, hidden]", b->label);
  if (io->batch != NULL && io->batch->n_tokens != n)
    return fail(err, TS_ERROR, "%s: batch has %d tokens but x has %lld rows", b->label,
                (int)io->batch->n_tokens, (long long)n);
  int status = check_activation(b, io->x, "x", n, err);
  if (status == TS_OK) status = check_activation(b, io->y, "y", n, err);
  if (status != TS_OK) return status;

  const int64_t h = b->hidden, width = b->end - b->begin;
  double* mid = NULL;
  if (b->type == SWIGLU) {
    mid = (double*)malloc((size_t)width * sizeof(double) + 1);
    if (mid == NULL) return fail(err, TS_ERROR, "%s: out of memory", b->label);
  }
  for (int64_t t = 0; t < n; ++t) {
    const float* x = (const float*)io->x->data + t * io->x->stride[0];
    float* y = (float*)io->y->data + t * io->y->stride[0];
    if (b->type == SWIGLU) {
      for (int64_t j = 0; j < width; ++j) {
        double g = 0, u = 0;
        for (int64_t i = 0; i < h; ++i) {
          g += (double)x[i] * b->gate[j * h + i];
          u += (double)x[i] * b->up[j * h + i];
        }
        mid[j] = g / (1.0 + exp(-g)) * u;
      }
      for (int64_t i = 0; i < h; ++i) {
        double acc = 0;
        for (int64_t j = 0; j < width; ++j) acc += mid[j] * b->down[i * width + j];
        y[i] = (float)acc;
      }
    } else {
      for (int64_t i = 0; i < h; ++i) {
        double acc = 0;
        for (int64_t j = 0; j < width; ++j) acc += (double)x[b->begin + j] * b->down[i * width + j];
        y[i] = (float)acc;
      }
    }
  }
  free(mid);

  if (b->comm != NULL && b->comm->world > 1) {
    ts_error inner;
    memset(&inner, 0, sizeof(inner));
    if (b->comm->all_reduce_sum == NULL)
      return fail(err, TS_ERROR, "%s: the communicator has no all_reduce_sum", b->label);
    if (b->comm->all_reduce_sum(b->comm->ctx, io->y, NULL, &inner) != TS_OK)
      return fail(err, TS_ERROR, "%s: all_reduce_sum failed: %s", b->label, inner.message);
  }
  return TS_OK;
}

/* -------------------------------------------------------------- descriptor */

/* Designated initializers: entries a later ABI minor appends stay NULL (absent). */
static const ts_block_vtable swiglu_vtable = {
    .struct_size = sizeof(ts_block_vtable),
    .create = create_swiglu,
    .destroy = destroy_block,
    .info = block_info,
    .forward = block_forward,
    .describe = describe_swiglu,
};

static const ts_block_vtable linear_vtable = {
    .struct_size = sizeof(ts_block_vtable),
    .create = create_linear,
    .destroy = destroy_block,
    .info = block_info,
    .forward = block_forward,
    .describe = describe_linear,
};

static const ts_provider providers[] = {
    {sizeof(ts_provider), TS_KIND_FFN, "swiglu", TS_DEVICE_CPU, NULL, &swiglu_vtable},
    {sizeof(ts_provider), TS_KIND_FFN, "linear", TS_DEVICE_CPU, NULL, &linear_vtable},
    {sizeof(ts_provider), TS_KIND_ATTENTION, "linear", TS_DEVICE_CPU, NULL, &linear_vtable},
};

static const ts_plugin_descriptor descriptor = {sizeof(ts_plugin_descriptor),
                                                TS_ABI_MAJOR,
                                                TS_ABI_MINOR,
                                                "tessera-fixture-c",
                                                "0.1.0",
                                                (int32_t)(sizeof(providers) / sizeof(providers[0])),
                                                providers};

TS_PLUGIN_EXPORT const ts_plugin_descriptor* tessera_plugin(void) {
  return &descriptor;
}
