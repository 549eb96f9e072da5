// The communicator suite: a parallel provider's collectives against a single-process
// reference, at 1 to 4 ranks of ONE process, one thread per rank. Each rank's provider
// object is made in its thread with the parameters world, rank and (world > 1) group, a name
// unique to the case: how plugin-check drives every parallel provider (docs/plugins.md). A
// provider that cannot form several ranks in one process returns TS_UNSUPPORTED from create,
// and its cases at that world are skipped with the reason.
//
// Every case runs several calls (shapes, dims, strided views, roots) in lockstep: after each
// call the ranks meet, and all stop when one failed, so that no rank enters a collective the
// others will not. Values are exact in the dtype; sums are compared with the reference's in
// f64 within a tolerance of the dtype's rounding, copies exactly; elements between the rows
// of a strided view must stay untouched. Mismatched calls (shapes, dtypes, collectives,
// roots) must fail on every rank, not hang: a case whose ranks do not all return within
// kHangSeconds fails, and the provider's remaining cases are skipped.
#include <tessera/dtype.hpp>
#include <tessera/engine/error.hpp>
#include <tessera/engine/parallel.hpp>
#include <tessera/engine/params.hpp>
#include <tessera/engine/rng.hpp>
#include <tessera/engine/thread_pool.hpp>

#include <algorithm>
#include <atomic>
#include <barrier>
#include <chrono>
#include <cmath>
#include <condition_variable>
#include <cstring>
#include <functional>
#include <memory>
#include <mutex>
#include <sstream>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "conformance.hpp"

namespace tessera::cli {
namespace {

constexpr int kHangSeconds = 90;

enum class Op { kAllReduceSum, kAllGather, kReduceScatterSum, kBroadcast };

const char* op_name(Op op) {
  switch (op) {
    case Op::kAllReduceSum:
      return "all_reduce_sum";
    case Op::kAllGather:
      return "all_gather";
    case Op::kReduceScatterSum:
      return "reduce_scatter_sum";
    default:
      return "broadcast";
  }
}

bool pair_op(Op op) {
  return op == Op::kAllGather || op == Op::kReduceScatterSum;
}

// ------------------------------------------------------------------ buffers

// A CPU tensor in storage of its own: contiguous, or with every row padded by two elements
// (a strided view). Storage starts as a sentinel (all bits set: NaN, or -1 for i32).
struct Buffer {
  ts_dtype dtype = TS_F32;
  std::vector<int64_t> shape, stride;
  std::vector<unsigned char> bytes;

  Buffer() = default;
  Buffer(ts_dtype type, std::vector<int64_t> dims, bool padded)
      : dtype(type), shape(std::move(dims)) {
    stride.assign(shape.size(), 1);
    int64_t running = 1;
    for (size_t d = shape.size(); d-- > 0;) {
      stride[d] = running;
      running *= shape[d] + (padded && d + 1 == shape.size() ? 2 : 0);
    }
    bytes.assign(static_cast<size_t>(running) * dtype_size(dtype), 0xFF);
  }

  int64_t numel() const {
    int64_t n = 1;
    for (int64_t s : shape) n *= s;
    return n;
  }
  // The storage offset (in elements) of logical element i (row-major over shape).
  int64_t offset(int64_t i) const {
    int64_t at = 0;
    for (size_t d = shape.size(); d-- > 0;) {
      at += (i % shape[d]) * stride[d];
      i /= shape[d];
    }
    return at;
  }
  double get_at(int64_t at) const {
    const unsigned char* p = bytes.data() + at * static_cast<int64_t>(dtype_size(dtype));
    switch (dtype) {
      case TS_F32: {
        float v;
        std::memcpy(&v, p, 4);
        return v;
      }
      case TS_F16:
      case TS_BF16: {
        uint16_t h;
        std::memcpy(&h, p, 2);
        return dtype == TS_F16 ? f16_to_f32(h) : bf16_to_f32(h);
      }
      default: {
        int32_t v;
        std::memcpy(&v, p, 4);
        return v;
      }
    }
  }
  double get(int64_t i) const { return get_at(offset(i)); }
  void set(int64_t i, double value) {
    unsigned char* p = bytes.data() + offset(i) * static_cast<int64_t>(dtype_size(dtype));
    switch (dtype) {
      case TS_F32: {
        const auto v = static_cast<float>(value);
        std::memcpy(p, &v, 4);
        break;
      }
      case TS_F16:
      case TS_BF16: {
        const float f = static_cast<float>(value);
        const uint16_t h = dtype == TS_F16 ? f32_to_f16(f) : f32_to_bf16(f);
        std::memcpy(p, &h, 2);
        break;
      }
      default: {
        const auto v = static_cast<int32_t>(value);
        std::memcpy(p, &v, 4);
        break;
      }
    }
  }
  // Storage elements outside the view that are no longer the sentinel.
  int64_t touched_padding() const {
    const size_t elem = dtype_size(dtype);
    std::vector<bool> inside(bytes.size() / elem, false);
    for (int64_t i = 0; i < numel(); ++i) inside[static_cast<size_t>(offset(i))] = true;
    int64_t touched = 0;
    for (size_t e = 0; e < inside.size(); ++e) {
      if (inside[e]) continue;
      for (size_t b = 0; b < elem; ++b) touched += bytes[e * elem + b] != 0xFF ? 1 : 0;
    }
    return touched;
  }
  ts_tensor view() {
    ts_tensor t{};
    t.data = bytes.data();
    t.dtype = dtype;
    t.device = TS_DEVICE_CPU;
    t.ndim = static_cast<int32_t>(shape.size());
    for (size_t d = 0; d < shape.size(); ++d) {
      t.shape[d] = shape[d];
      t.stride[d] = stride[d];
    }
    return t;
  }
};

// Random values the dtype holds exactly: integers for i32, else values rounded to the dtype.
void fill(Buffer& b, Rng& rng) {
  for (int64_t i = 0; i < b.numel(); ++i) {
    if (b.dtype == TS_I32) {
      b.set(i, std::floor(rng.uniform() * 2001.0) - 1000.0);
    } else {
      b.set(i, rng.normal());
    }
  }
}

std::string shape_text(const std::vector<int64_t>& shape) {
  std::string s = "[";
  for (size_t d = 0; d < shape.size(); ++d) (s += d ? ", " : "") += std::to_string(shape[d]);
  return s + "]";
}

// ------------------------------------------------------------------ calls

// One rank's side of one collective.
struct RankCall {
  Op op = Op::kAllReduceSum;
  ts_dtype dtype = TS_F32;
  std::vector<int64_t> in_shape, out_shape;  // out_shape: gathers and scatters only
  int32_t dim = 0;
  int32_t root = 0;
  bool padded = false;
};

// One collective call of a case: every rank's side.
using CallPlan = std::vector<RankCall>;

// A collective with the same arguments on every rank. `parts` are the ranks' sizes along
// dim (all_gather: of in, reduce_scatter_sum: of out); `shape` is then in's (scatter) or
// out's (gather) with the parts summed along dim.
CallPlan uniform_call(int32_t world, Op op, ts_dtype dtype, const std::vector<int64_t>& shape,
                      int32_t dim, int32_t root, bool padded,
                      const std::vector<int64_t>& parts = {}) {
  CallPlan plan(static_cast<size_t>(world));
  for (int32_t r = 0; r < world; ++r) {
    RankCall& c = plan[static_cast<size_t>(r)];
    c.op = op;
    c.dtype = dtype;
    c.dim = dim;
    c.root = root;
    c.padded = padded;
    c.in_shape = shape;
    if (pair_op(op)) {
      std::vector<int64_t> part = shape;
      part[static_cast<size_t>(dim)] = parts[static_cast<size_t>(r)];
      if (op == Op::kAllGather) {
        c.in_shape = part;
        c.out_shape = shape;
      } else {
        c.out_shape = part;
      }
    }
  }
  return plan;
}

// Equal parts of `each` along dim.
std::vector<int64_t> equal_parts(int32_t world, int64_t each) {
  return std::vector<int64_t>(static_cast<size_t>(world), each);
}

// The calls of a case of `op` on `dtype` at `world` ranks: several shapes, dims and roots,
// and a strided view.
std::vector<CallPlan> grid_calls(int32_t world, Op op, ts_dtype dtype) {
  const auto w = static_cast<int64_t>(world);
  std::vector<CallPlan> calls;
  switch (op) {
    case Op::kAllReduceSum:
      calls.push_back(uniform_call(world, op, dtype, {7}, 0, 0, false));
      calls.push_back(uniform_call(world, op, dtype, {3, 5}, 0, 0, false));
      calls.push_back(uniform_call(world, op, dtype, {2, 3, 4}, 0, 0, true));
      calls.push_back(uniform_call(world, op, dtype, {64, 33}, 0, 0, false));
      break;
    case Op::kBroadcast:
      for (int32_t root = 0; root < world; ++root)
        calls.push_back(uniform_call(world, op, dtype, {3, 5}, 0, root, root % 2 == 1));
      calls.push_back(uniform_call(world, op, dtype, {2, 3, 4}, 0, world - 1, true));
      break;
    case Op::kAllGather:
      calls.push_back(
          uniform_call(world, op, dtype, {3 * w, 4}, 0, 0, false, equal_parts(world, 3)));
      calls.push_back(
          uniform_call(world, op, dtype, {3, 2 * w}, 1, 0, false, equal_parts(world, 2)));
      calls.push_back(uniform_call(world, op, dtype, {2, w, 4}, 1, 0, true, equal_parts(world, 1)));
      calls.push_back(
          uniform_call(world, op, dtype, {2, 3, 2 * w}, 2, 0, true, equal_parts(world, 2)));
      break;
    default:  // reduce_scatter_sum
      calls.push_back(
          uniform_call(world, op, dtype, {2 * w, 3}, 0, 0, false, equal_parts(world, 2)));
      calls.push_back(
          uniform_call(world, op, dtype, {3, 2 * w}, 1, 0, false, equal_parts(world, 2)));
      calls.push_back(uniform_call(world, op, dtype, {2, w, 4}, 1, 0, true, equal_parts(world, 1)));
      calls.push_back(
          uniform_call(world, op, dtype, {2, 3, 3 * w}, 2, 0, true, equal_parts(world, 3)));
      break;
  }
  return calls;
}

// ------------------------------------------------------------------ running

// One call of a case: every rank's side and buffers, and what each rank got.
struct CallBuffers {
  CallPlan plan;
  std::vector<Buffer> in, out;      // per rank; out empty for all_reduce_sum and broadcast
  std::vector<Buffer> before;       // in as it was before the call
  std::vector<std::string> errors;  // per rank; empty when the call succeeded
  std::vector<char> unsupported;    // per rank: the call said TS_UNSUPPORTED
};

// Everything a case's rank threads share; they keep it alive, so that a case abandoned
// after a hang leaves nothing dangling.
struct CaseState {
  explicit CaseState(int32_t w) : world(w), sync(w), create_errors(static_cast<size_t>(w)) {}
  int32_t world;
  std::barrier<> sync;
  std::atomic<bool> stop{false};
  std::vector<std::string> create_errors;  // per rank
  std::string unsupported;                 // a create's TS_UNSUPPORTED reason
  std::vector<CallBuffers> calls;
  std::mutex mu;
  std::condition_variable cv;
  int32_t done = 0;
};

ThreadPool& suite_pool() {
  static ThreadPool pool(1);
  return pool;
}

void run_call(const Parallel& comm, const RankCall& c, Buffer& in, Buffer* out) {
  ts_tensor tin = in.view();
  switch (c.op) {
    case Op::kAllReduceSum:
      comm.all_reduce_sum(tin);
      break;
    case Op::kBroadcast:
      comm.broadcast(tin, c.root);
      break;
    case Op::kAllGather: {
      ts_tensor tout = out->view();
      comm.all_gather(tin, tout, c.dim);
      break;
    }
    default: {
      ts_tensor tout = out->view();
      comm.reduce_scatter_sum(tin, tout, c.dim);
      break;
    }
  }
}

// One rank's thread: makes its provider object, then runs every call in lockstep with the
// other ranks, and stops with them when any rank failed.
void rank_main(const std::shared_ptr<CaseState>& state, const ProviderRef& provider,
               const std::string& group, int32_t rank) {
  const int32_t world = state->world;
  const auto r = static_cast<size_t>(rank);
  std::unique_ptr<Parallel> comm;
  try {
    ParamList params;
    params.set("world", int64_t{world});
    params.set("rank", int64_t{rank});
    if (world > 1) params.set("group", group);
    comm = std::make_unique<Parallel>(
        provider, params, suite_pool().host(),
        std::string("parallel ") + provider.provider->name + " rank " + std::to_string(rank));
    if (comm->rank() != rank || comm->world() != world)
      throw Error("the communicator reports rank " + std::to_string(comm->rank()) + " of world " +
                  std::to_string(comm->world()) + ", expected rank " + std::to_string(rank) +
                  " of world " + std::to_string(world));
  } catch (const PluginUnsupported& e) {
    const std::lock_guard<std::mutex> lock(state->mu);
    if (state->unsupported.empty()) state->unsupported = e.what();
    state->stop = true;
  } catch (const std::exception& e) {
    state->create_errors[r] = e.what();
    state->stop = true;
  }
  state->sync.arrive_and_wait();
  for (size_t i = 0; i < state->calls.size() && !state->stop; ++i) {
    CallBuffers& call = state->calls[i];
    try {
      run_call(*comm, call.plan[r], call.in[r], call.out.empty() ? nullptr : &call.out[r]);
    } catch (const PluginUnsupported& e) {
      call.errors[r] = e.what();
      call.unsupported[r] = 1;
      state->stop = true;
    } catch (const std::exception& e) {
      call.errors[r] = e.what();
      state->stop = true;
    }
    state->sync.arrive_and_wait();
  }
  state->sync.arrive_and_wait();  // nobody destroys its object while another still calls
  comm.reset();
  const std::lock_guard<std::mutex> lock(state->mu);
  ++state->done;
  state->cv.notify_all();
}

// Runs the calls at `world` ranks, one thread each. nullptr when the ranks did not all
// return within kHangSeconds (the threads are then left to themselves).
std::shared_ptr<CaseState> run_ranks(const ProviderRef& provider, int32_t world,
                                     const std::vector<CallPlan>& plans, uint64_t seed) {
  static int64_t groups = 0;
  auto state = std::make_shared<CaseState>(world);
  Rng rng(seed);
  for (const CallPlan& plan : plans) {
    CallBuffers call;
    call.plan = plan;
    for (const RankCall& c : plan) {
      Buffer in(c.dtype, c.in_shape, c.padded);
      fill(in, rng);
      call.before.push_back(in);
      call.in.push_back(std::move(in));
      if (pair_op(c.op)) call.out.emplace_back(c.dtype, c.out_shape, c.padded);
    }
    // Every rank's out, or none: a mismatched plan may mix collectives.
    if (!call.out.empty() && call.out.size() != plan.size()) {
      call.out.clear();
      for (const RankCall& c : plan)
        call.out.emplace_back(c.dtype, pair_op(c.op) ? c.out_shape : c.in_shape, c.padded);
    }
    call.errors.resize(plan.size());
    call.unsupported.resize(plan.size(), 0);
    state->calls.push_back(std::move(call));
  }
  const std::string group = "plugin-check-" + std::to_string(++groups);
  std::vector<std::thread> threads;
  threads.reserve(static_cast<size_t>(world));
  for (int32_t r = 0; r < world; ++r)
    threads.emplace_back([state, provider, group, r] { rank_main(state, provider, group, r); });
  bool finished = false;
  {
    std::unique_lock<std::mutex> lock(state->mu);
    finished = state->cv.wait_for(lock, std::chrono::seconds(kHangSeconds),
                                  [&] { return state->done == world; });
  }
  for (std::thread& t : threads) finished ? t.join() : t.detach();
  return finished ? state : nullptr;
}

// ------------------------------------------------------------------ reference

// Logical index i of a tensor of `shape` around `dim`: [outer, along, inner].
struct Around {
  int64_t outer, along, inner;
};

Around split_index(const std::vector<int64_t>& shape, int32_t dim, int64_t i) {
  int64_t inner = 1;
  for (size_t d = static_cast<size_t>(dim) + 1; d < shape.size(); ++d) inner *= shape[d];
  const int64_t n = shape[static_cast<size_t>(dim)];
  return {i / (n * inner), (i / inner) % n, i % inner};
}

int64_t join_index(const std::vector<int64_t>& shape, int32_t dim, const Around& a) {
  int64_t inner = 1;
  for (size_t d = static_cast<size_t>(dim) + 1; d < shape.size(); ++d) inner *= shape[d];
  return (a.outer * shape[static_cast<size_t>(dim)] + a.along) * inner + a.inner;
}

// Compares every rank's result of one uniform call with the reference; exact for copies
// and i32, else accumulates the error. Throws naming the first exact mismatch.
void compare_call(const CallBuffers& call, double& max_abs, double& max_ref) {
  const auto world = static_cast<int32_t>(call.plan.size());
  for (int32_t r = 0; r < world; ++r) {
    const auto ru = static_cast<size_t>(r);
    const RankCall& c = call.plan[ru];
    const bool pair = pair_op(c.op);
    const Buffer& got = pair ? call.out[ru] : call.in[ru];
    const bool sum = c.op == Op::kAllReduceSum || c.op == Op::kReduceScatterSum;
    const bool exact = !sum || c.dtype == TS_I32;
    int64_t first = 0;  // reduce_scatter_sum: this rank's first index along dim
    if (c.op == Op::kReduceScatterSum)
      for (int32_t k = 0; k < r; ++k)
        first += call.plan[static_cast<size_t>(k)].out_shape[static_cast<size_t>(c.dim)];
    for (int64_t i = 0; i < got.numel(); ++i) {
      double want = 0;
      switch (c.op) {
        case Op::kAllReduceSum:
          for (int32_t k = 0; k < world; ++k) want += call.before[static_cast<size_t>(k)].get(i);
          break;
        case Op::kBroadcast:
          want = call.before[static_cast<size_t>(c.root)].get(i);
          break;
        case Op::kAllGather: {
          Around a = split_index(got.shape, c.dim, i);
          int32_t k = 0;
          while (a.along >= call.plan[static_cast<size_t>(k)].in_shape[static_cast<size_t>(c.dim)])
            a.along -= call.plan[static_cast<size_t>(k++)].in_shape[static_cast<size_t>(c.dim)];
          want = call.before[static_cast<size_t>(k)].get(
              join_index(call.plan[static_cast<size_t>(k)].in_shape, c.dim, a));
          break;
        }
        default: {
          Around a = split_index(got.shape, c.dim, i);
          a.along += first;
          const int64_t at = join_index(c.in_shape, c.dim, a);
          for (int32_t k = 0; k < world; ++k) want += call.before[static_cast<size_t>(k)].get(at);
          break;
        }
      }
      const double value = got.get(i);
      if (exact && value != want) {
        std::ostringstream m;
        m << op_name(c.op) << " of " << dtype_name(c.dtype) << " " << shape_text(c.in_shape);
        if (pair) m << " dim " << c.dim;
        if (c.op == Op::kBroadcast) m << " root " << c.root;
        m << ": rank " << r << " element " << i << " is " << value << ", expected " << want;
        throw Error(m.str());
      }
      const double d = std::fabs(value - want);
      max_abs = std::isnan(d) ? INFINITY : std::max(max_abs, d);
      max_ref = std::max(max_ref, std::fabs(want));
    }
    if (const int64_t touched = got.touched_padding(); touched > 0)
      throw Error(std::string(op_name(c.op)) + " of " + shape_text(c.in_shape) + ": rank " +
                  std::to_string(r) + " wrote " + std::to_string(touched) +
                  " byte(s) between the rows of its strided view");
    if (pair && call.in[ru].bytes != call.before[ru].bytes)
      throw Error(std::string(op_name(c.op)) + ": rank " + std::to_string(r) +
                  " changed its input tensor");
  }
}

// What a case's check found besides the error.
struct Verdict {
  double max_ref = 0;  // the largest magnitude of the reference
  bool skip = false;   // every rank declined a call (TS_UNSUPPORTED): skipped, not failed
};

double tolerance_of(Op op, ts_dtype dtype) {
  if (op == Op::kAllGather || op == Op::kBroadcast || dtype == TS_I32) return 0;
  // The sum's rounding to the dtype (with room for a few more roundings of its terms).
  if (dtype == TS_F16) return 1e-3;
  if (dtype == TS_BF16) return 8e-3;
  return 1e-5;
}

// The first failure of the ranks' calls, "" when every call succeeded. `unsupported` is set
// when every rank of the failed call said TS_UNSUPPORTED.
std::string call_failure(const CaseState& state, bool& unsupported) {
  unsupported = false;
  for (const CallBuffers& call : state.calls) {
    std::string first;
    bool every = true;
    for (size_t r = 0; r < call.errors.size(); ++r) {
      if (call.errors[r].empty()) {
        every = false;
        continue;
      }
      if (first.empty()) first = "rank " + std::to_string(r) + ": " + call.errors[r];
      every = every && call.unsupported[r] != 0;
    }
    if (!first.empty()) {
      unsupported = every;
      return first;
    }
  }
  return "";
}

}  // namespace

void check_parallel(const ProviderRef& provider, const ConformanceOptions& options,
                    ConformanceReport& report) {
  const std::string label = std::string("parallel ") + provider.provider->name;
  std::vector<std::pair<int32_t, std::string>> unsupported_worlds;  // world, reason
  bool abandoned = false;
  size_t ran = 0;
  uint64_t seed = 100;

  // Runs one case; `check` inspects a state whose ranks all returned, accumulating
  // r.max_abs and the verdict's max_ref, or setting skip when every rank declined a call.
  const auto run_case =
      [&](const std::string& name, int32_t world, const std::vector<CallPlan>& plans, bool measured,
          double tolerance,
          const std::function<void(const CaseState&, CaseResult&, Verdict&)>& check) {
        if (abandoned) return;
        for (const auto& [w, reason] : unsupported_worlds)
          if (w == world) return;
        const std::shared_ptr<CaseState> state = run_ranks(provider, world, plans, seed++);
        CaseResult r;
        r.name = name;
        r.measured = measured;
        r.tolerance = tolerance;
        if (state == nullptr) {
          r.error = "the ranks did not all return within " + std::to_string(kHangSeconds) +
                    " s: a hang (the provider's other cases are skipped)";
          abandoned = true;
          report.skipped.push_back(label + ": the cases after the hang in '" + name +
                                   "' were not run");
          report.cases.push_back(r);
          ++ran;
          return;
        }
        if (!state->unsupported.empty()) {
          unsupported_worlds.emplace_back(world, state->unsupported);
          report.skipped.push_back(label + " world=" + std::to_string(world) +
                                   ": cannot form this world in one process (" +
                                   state->unsupported + "); its cases are skipped");
          return;
        }
        for (const std::string& e : state->create_errors)
          if (!e.empty() && r.error.empty()) r.error = "create: " + e;
        Verdict verdict;
        if (r.error.empty()) {
          try {
            check(*state, r, verdict);
          } catch (const std::exception& e) {
            r.error = e.what();
          }
        }
        if (verdict.skip) return;  // every rank declined a call: not a failure
        if (measured) r.max_rel = r.max_abs / std::max(verdict.max_ref, 1e-30);
        r.passed = r.error.empty() && r.max_rel <= r.tolerance;
        report.cases.push_back(r);
        ++ran;
      };

  // Collectives against the reference.
  const auto compare = [&](const std::string& name) {
    return [&, name](const CaseState& state, CaseResult& r, Verdict& verdict) {
      bool unsupported = false;
      const std::string failure = call_failure(state, unsupported);
      if (unsupported) {
        report.skipped.push_back(name + ": " + failure);
        verdict.skip = true;
        return;
      }
      if (!failure.empty()) throw Error(failure);
      for (const CallBuffers& call : state.calls) compare_call(call, r.max_abs, verdict.max_ref);
    };
  };

  const std::vector<int32_t> worlds =
      options.quick ? std::vector<int32_t>{1, 2, 4} : std::vector<int32_t>{1, 2, 3, 4};
  const Op ops[] = {Op::kAllReduceSum, Op::kAllGather, Op::kReduceScatterSum, Op::kBroadcast};
  const ts_dtype dtypes[] = {TS_F32, TS_F16, TS_BF16, TS_I32};
  for (int32_t world : worlds)
    for (Op op : ops)
      for (ts_dtype dtype : dtypes) {
        const std::string name =
            label + " " + op_name(op) + " world=" + std::to_string(world) + " " + dtype_name(dtype);
        run_case(name, world, grid_calls(world, op, dtype), true, tolerance_of(op, dtype),
                 compare(name));
      }

  // Parts of different sizes along dim (shards of a size the world does not divide).
  for (Op op : {Op::kAllGather, Op::kReduceScatterSum}) {
    const std::string name =
        label + " " + op_name(op) + " world=3 f32 uneven parts (1, 2, 3) along dim 1";
    run_case(name, 3, {uniform_call(3, op, TS_F32, {2, 6, 3}, 1, 0, false, {1, 2, 3})}, true,
             tolerance_of(op, TS_F32), compare(name));
  }

  // Mismatched calls: an error on every rank, not a hang.
  struct Mismatch {
    const char* what;
    std::function<void(int32_t world, CallPlan&)> spoil;
  };
  const Mismatch mismatches[] = {
      {"all_reduce_sum with mismatched shapes",
       [](int32_t w, CallPlan& p) { p[static_cast<size_t>(w - 1)].in_shape = {5}; }},
      {"all_reduce_sum with mismatched dtypes",
       [](int32_t w, CallPlan& p) { p[static_cast<size_t>(w - 1)].dtype = TS_F16; }},
      {"different collectives (all_reduce_sum and broadcast)",
       [](int32_t w, CallPlan& p) { p[static_cast<size_t>(w - 1)].op = Op::kBroadcast; }},
      {"broadcast with mismatched roots",
       [](int32_t w, CallPlan& p) {
         for (int32_t r = 0; r < w; ++r) {
           p[static_cast<size_t>(r)].op = Op::kBroadcast;
           p[static_cast<size_t>(r)].root = r;
         }
       }},
      {"all_gather into an out of the wrong size",
       [](int32_t w, CallPlan& p) {
         for (RankCall& c : p) {
           c.op = Op::kAllGather;
           c.dim = 0;
           c.out_shape = {4 * static_cast<int64_t>(w)};
         }
         p[0].out_shape = {4 * static_cast<int64_t>(w) - 1};
       }},
  };
  for (int32_t world : {2, 3})
    for (const Mismatch& m : mismatches) {
      CallPlan plan = uniform_call(world, Op::kAllReduceSum, TS_F32, {4}, 0, 0, false);
      m.spoil(world, plan);
      const std::string name =
          label + " " + m.what + " fails on every rank, world=" + std::to_string(world);
      run_case(name, world, {plan}, false, 0, [&](const CaseState& state, CaseResult&, Verdict&) {
        const CallBuffers& call = state.calls[0];
        for (size_t r = 0; r < call.errors.size(); ++r)
          if (call.errors[r].empty())
            throw Error("rank " + std::to_string(r) + " accepted the mismatched call");
      });
    }

  if (ran == 0) ++report.unchecked_providers;
}

}  // namespace tessera::cli
