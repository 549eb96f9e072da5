// The "local" parallel provider: the ranks of one process.
//
// world 1 (the default) is a single rank: every collective is the identity, so reductions
// leave their tensor alone and gathers copy in to out.
//
// world > 1: `world` provider objects made in ONE process with the same `group` name and
// world, each with its own `rank`, form a group; they meet in process-wide state inside this
// library. Each rank is driven by its own thread (a collective blocks until every rank of the
// group has called it). Collectives on CPU tensors of f32, f16, bf16 (summed in f32), i32 and
// i64 (summed with wrap-around), any strides; gathers and broadcasts also move u8:
//
//   all_reduce_sum(inout)            every rank gets the sum of every rank's inout
//   all_gather(in, out, dim)         out = the ranks' in concatenated along dim, rank order;
//                                    the ranks' sizes along dim may differ
//   reduce_scatter_sum(in, out, dim) out = rank r's part of the sum along dim; the parts are
//                                    the ranks' out sizes along dim, in rank order
//   broadcast(inout, root)           every rank gets root's inout
//
// Every rank sums in the same order (rank 0 first), so all ranks get the same bits. A
// collective is a barrier: each rank posts its call, waits for the others, checks that
// every rank called the same collective with matching dtypes and shapes (if not, EVERY rank
// gets the same error), reads its peers' tensors, waits again and writes its own output.
// A rank that waits longer than `timeout_s` for the others fails with a message naming the
// missing ranks and breaks the group: every later collective of the group fails at once.
// A group lives until one of its provider objects is destroyed; the name may then be
// used again by a new group.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <condition_variable>
#include <cstring>
#include <map>
#include <memory>
#include <mutex>
#include <sstream>
#include <stdexcept>
#include <string>
#include <tessera/plugin.hpp>
#include <utility>
#include <vector>

namespace tessera::parallel {
namespace {

constexpr const char* kAcceptedParams = "world, rank, group, timeout_s";
constexpr double kDefaultTimeoutSeconds = 60.0;

std::string format_number(double value) {
  std::ostringstream out;
  out << value;
  return out.str();
}

void check_tensor(const ts_tensor* t, const std::string& where, const char* what) {
  if (t == nullptr) throw std::invalid_argument(where + what + " is NULL");
  if (t->ndim < 0 || t->ndim > TS_MAX_DIMS)
    throw std::invalid_argument(where + what + " has ndim " + std::to_string(t->ndim) +
                                ", expected 0.." + std::to_string(TS_MAX_DIMS));
  if (dtype_size(t->dtype) == 0)
    throw std::invalid_argument(where + what + " has unknown dtype " + std::to_string(t->dtype));
  for (int32_t d = 0; d < t->ndim; ++d)
    if (t->shape[d] < 0)
      throw std::invalid_argument(where + what + " has negative shape " + sdk::shape_string(*t));
  if (t->data == nullptr && sdk::numel(*t) > 0)
    throw std::invalid_argument(where + what + " has no data");
}

bool same_layout(const ts_tensor& a, const ts_tensor& b) {
  if (a.ndim != b.ndim) return false;
  for (int32_t d = 0; d < a.ndim; ++d)
    if (a.shape[d] != b.shape[d] || (a.shape[d] > 1 && a.stride[d] != b.stride[d])) return false;
  return true;
}

bool same_shape(const ts_tensor& a, const ts_tensor& b) {
  if (a.ndim != b.ndim) return false;
  for (int32_t d = 0; d < a.ndim; ++d)
    if (a.shape[d] != b.shape[d]) return false;
  return true;
}

// Equal shapes except along `dim`.
bool same_shape_except(const ts_tensor& a, const ts_tensor& b, int32_t dim) {
  if (a.ndim != b.ndim) return false;
  for (int32_t d = 0; d < a.ndim; ++d)
    if (d != dim && a.shape[d] != b.shape[d]) return false;
  return true;
}

// Calls f(element offset) for every element of t in row-major order of its shape.
template <class F>
void for_each_offset(const ts_tensor& t, F&& f) {
  const int64_t count = sdk::numel(t);
  int64_t index[TS_MAX_DIMS] = {0, 0, 0, 0};
  for (int64_t n = 0; n < count; ++n) {
    int64_t offset = 0;
    for (int32_t d = 0; d < t.ndim; ++d) offset += index[d] * t.stride[d];
    f(offset);
    for (int32_t d = t.ndim - 1; d >= 0; --d) {
      if (++index[d] < t.shape[d]) break;
      index[d] = 0;
    }
  }
}

// Copies `in` to `out` (same shape and dtype), any strides, on the CPU.
void copy_tensor(const ts_tensor& in, const ts_tensor& out) {
  const size_t elem = dtype_size(in.dtype);
  const int64_t count = sdk::numel(in);
  if (count == 0) return;
  if (in.data == out.data && same_layout(in, out)) return;  // in-place: nothing to move
  if (sdk::is_contiguous(in) && sdk::is_contiguous(out)) {
    std::memmove(out.data, in.data, static_cast<size_t>(count) * elem);
    return;
  }
  const auto* src = static_cast<const unsigned char*>(in.data);
  auto* dst = static_cast<unsigned char*>(out.data);
  int64_t index[TS_MAX_DIMS] = {0, 0, 0, 0};
  for (int64_t n = 0; n < count; ++n) {
    int64_t in_offset = 0, out_offset = 0;
    for (int32_t d = 0; d < in.ndim; ++d) {
      in_offset += index[d] * in.stride[d];
      out_offset += index[d] * out.stride[d];
    }
    std::memcpy(dst + out_offset * static_cast<int64_t>(elem),
                src + in_offset * static_cast<int64_t>(elem), elem);
    for (int32_t d = in.ndim - 1; d >= 0; --d) {
      if (++index[d] < in.shape[d]) break;
      index[d] = 0;
    }
  }
}

// The elements of t, contiguous, in row-major order.
std::vector<unsigned char> pack(const ts_tensor& t) {
  const size_t elem = dtype_size(t.dtype);
  std::vector<unsigned char> out(static_cast<size_t>(sdk::numel(t)) * elem);
  const auto* src = static_cast<const unsigned char*>(t.data);
  size_t at = 0;
  for_each_offset(t, [&](int64_t offset) {
    std::memcpy(out.data() + at, src + offset * static_cast<int64_t>(elem), elem);
    at += elem;
  });
  return out;
}

// Writes contiguous row-major elements into t (any strides).
void unpack(const std::vector<unsigned char>& bytes, const ts_tensor& t) {
  const size_t elem = dtype_size(t.dtype);
  auto* dst = static_cast<unsigned char*>(t.data);
  size_t at = 0;
  for_each_offset(t, [&](int64_t offset) {
    std::memcpy(dst + offset * static_cast<int64_t>(elem), bytes.data() + at, elem);
    at += elem;
  });
}

// ------------------------------------------------------------------ sums

bool summable(int32_t dtype) {
  return dtype == TS_F32 || dtype == TS_F16 || dtype == TS_BF16 || dtype == TS_I32 ||
         dtype == TS_I64;
}

// Sums of packed elements: f32 for the float dtypes, wrap-around for the integers.
class Accumulator {
 public:
  Accumulator(int32_t dtype, size_t n) : dtype_(dtype) {
    if (is_float())
      f_.assign(n, 0.0f);
    else
      i_.assign(n, 0);
  }

  // acc[i] += element `first + i` of packed `bytes`, for i < count.
  void add(const std::vector<unsigned char>& bytes, size_t first, size_t count, size_t at) {
    const unsigned char* p = bytes.data();
    for (size_t i = 0; i < count; ++i) {
      const size_t e = first + i;
      switch (dtype_) {
        case TS_F32: {
          float v;
          std::memcpy(&v, p + e * 4, 4);
          f_[at + i] += v;
          break;
        }
        case TS_F16:
        case TS_BF16: {
          uint16_t h;
          std::memcpy(&h, p + e * 2, 2);
          f_[at + i] += dtype_ == TS_F16 ? f16_to_f32(h) : bf16_to_f32(h);
          break;
        }
        case TS_I32: {
          uint32_t v;
          std::memcpy(&v, p + e * 4, 4);
          i_[at + i] = static_cast<uint32_t>(i_[at + i] + v);
          break;
        }
        default: {  // TS_I64
          uint64_t v;
          std::memcpy(&v, p + e * 8, 8);
          i_[at + i] += v;
          break;
        }
      }
    }
  }

  // The sums as packed elements of the dtype.
  std::vector<unsigned char> bytes() const {
    const size_t n = is_float() ? f_.size() : i_.size();
    std::vector<unsigned char> out(n * dtype_size(dtype_));
    for (size_t i = 0; i < n; ++i) {
      switch (dtype_) {
        case TS_F32:
          std::memcpy(out.data() + i * 4, &f_[i], 4);
          break;
        case TS_F16:
        case TS_BF16: {
          const uint16_t h = dtype_ == TS_F16 ? f32_to_f16(f_[i]) : f32_to_bf16(f_[i]);
          std::memcpy(out.data() + i * 2, &h, 2);
          break;
        }
        case TS_I32: {
          const auto v = static_cast<uint32_t>(i_[i]);
          std::memcpy(out.data() + i * 4, &v, 4);
          break;
        }
        default:
          std::memcpy(out.data() + i * 8, &i_[i], 8);
          break;
      }
    }
    return out;
  }

 private:
  bool is_float() const { return dtype_ == TS_F32 || dtype_ == TS_F16 || dtype_ == TS_BF16; }

  int32_t dtype_;
  std::vector<float> f_;
  std::vector<uint64_t> i_;
};

// Rows of a packed tensor around `dim`: [outer, shape[dim], inner].
struct Slabs {
  int64_t outer = 1, inner = 1;
};

Slabs slabs(const ts_tensor& t, int32_t dim) {
  Slabs s;
  for (int32_t d = 0; d < dim; ++d) s.outer *= t.shape[d];
  for (int32_t d = dim + 1; d < t.ndim; ++d) s.inner *= t.shape[d];
  return s;
}

// ---------------------------------------------------------------- groups

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

// What one rank asked for in one collective.
struct Call {
  Op op = Op::kAllReduceSum;
  const ts_tensor* in = nullptr;   // all_reduce_sum and broadcast: their inout
  const ts_tensor* out = nullptr;  // all_gather and reduce_scatter_sum
  int32_t dim = 0;
  int32_t root = 0;
  std::string invalid;  // why this rank's own call is invalid; empty when it is fine
};

std::string ranks_string(const std::vector<int32_t>& ranks) {
  std::string s;
  for (size_t i = 0; i < ranks.size(); ++i) (s += i ? ", " : "") += std::to_string(ranks[i]);
  return s;
}

class Group {
 public:
  Group(std::string name, int32_t world)
      : name_(std::move(name)),
        world_(world),
        joined_(static_cast<size_t>(world), false),
        arrived_(static_cast<size_t>(world), false),
        calls_(static_cast<size_t>(world)) {}

  const std::string& name() const { return name_; }
  int32_t world() const { return world_; }
  std::string describe() const {
    return "group '" + name_ + "' (world " + std::to_string(world_) + ")";
  }

  // Under the registry's lock.
  void join(int32_t rank) {
    const std::lock_guard<std::mutex> lock(mu_);
    if (joined_[static_cast<size_t>(rank)])
      throw std::invalid_argument("parallel-local: rank " + std::to_string(rank) + " of " +
                                  describe() +
                                  " is already taken by another provider object of this process");
    joined_[static_cast<size_t>(rank)] = true;
  }

  // A member is destroyed: the group can run no more collectives.
  void leave(int32_t rank) {
    const std::lock_guard<std::mutex> lock(mu_);
    joined_[static_cast<size_t>(rank)] = false;
    if (broken_.empty()) {
      broken_ = "rank " + std::to_string(rank) + " left " + describe() +
                " (its provider object was destroyed); make a new group";
      cv_.notify_all();
    }
  }

  // One collective for `rank`: posts its call, waits for every rank, checks that the calls
  // agree, runs work(calls) (which reads the peers' tensors and fills this rank's result),
  // waits until every rank has done so, then runs finish() (which writes this rank's
  // output). Every failure throws std::runtime_error or std::invalid_argument.
  template <class Work, class Finish>
  void run(int32_t rank, Call call, double timeout_s, Work&& work, Finish&& finish) {
    const Op op = call.op;
    std::unique_lock<std::mutex> lock(mu_);
    calls_[static_cast<size_t>(rank)] = std::move(call);
    barrier(lock, rank, op, timeout_s);
    // Every rank checks the same calls in the same way, so all agree on the verdict.
    const std::string mismatch = check_calls();
    std::exception_ptr failure;
    if (mismatch.empty()) {
      // No rank changes calls_ or its tensors before the barrier below.
      lock.unlock();
      try {
        work(calls_);
      } catch (...) {
        failure = std::current_exception();
      }
      lock.lock();
    }
    barrier(lock, rank, op, timeout_s);
    lock.unlock();
    if (!mismatch.empty()) throw std::invalid_argument(prefix(op) + mismatch);
    if (failure) std::rethrow_exception(failure);
    finish();
  }

 private:
  std::string prefix(Op op) const {
    return std::string("parallel-local ") + op_name(op) + ", " + describe() + ": ";
  }

  void barrier(std::unique_lock<std::mutex>& lock, int32_t rank, Op op, double timeout_s) {
    if (!broken_.empty()) throw std::runtime_error(prefix(op) + "the group is broken: " + broken_);
    const uint64_t generation = generation_;
    arrived_[static_cast<size_t>(rank)] = true;
    if (++n_arrived_ == world_) {
      n_arrived_ = 0;
      std::fill(arrived_.begin(), arrived_.end(), false);
      ++generation_;
      cv_.notify_all();
      return;
    }
    const auto deadline =
        std::chrono::steady_clock::now() + std::chrono::duration_cast<std::chrono::nanoseconds>(
                                               std::chrono::duration<double>(timeout_s));
    while (generation_ == generation && broken_.empty()) {
      if (cv_.wait_until(lock, deadline) != std::cv_status::timeout) continue;
      if (generation_ != generation || !broken_.empty()) break;
      std::vector<int32_t> missing, absent;
      for (int32_t r = 0; r < world_; ++r) {
        if (!arrived_[static_cast<size_t>(r)]) missing.push_back(r);
        if (!joined_[static_cast<size_t>(r)]) absent.push_back(r);
      }
      broken_ = "rank " + std::to_string(rank) + " waited " + format_number(timeout_s) +
                " s (parameter timeout_s) in " + op_name(op) + " for rank(s) " +
                ranks_string(missing) + ", which did not reach it" +
                (absent.empty() ? std::string()
                                : " (rank(s) " + ranks_string(absent) + " never joined)") +
                "; every rank must call the same collectives in the same order";
      cv_.notify_all();
      throw std::runtime_error(prefix(op) + broken_ + "; the group is now broken");
    }
    if (generation_ == generation)
      throw std::runtime_error(prefix(op) + "the group is broken: " + broken_);
  }

  // Empty when every rank's call is valid and the calls agree; else what is wrong.
  std::string check_calls() const {
    for (int32_t r = 0; r < world_; ++r)
      if (!calls_[static_cast<size_t>(r)].invalid.empty())
        return "rank " + std::to_string(r) +
               "'s call is invalid: " + calls_[static_cast<size_t>(r)].invalid;
    const Call& first = calls_[0];
    for (int32_t r = 1; r < world_; ++r) {
      const Call& c = calls_[static_cast<size_t>(r)];
      const std::string who = "rank " + std::to_string(r) + " ";
      if (c.op != first.op)
        return who + "called " + op_name(c.op) + " but rank 0 called " + op_name(first.op);
      if (c.in->dtype != first.in->dtype)
        return who + "passed dtype " + dtype_name(c.in->dtype) + " but rank 0 passed " +
               dtype_name(first.in->dtype);
      if (first.op == Op::kAllReduceSum || first.op == Op::kBroadcast ||
          first.op == Op::kReduceScatterSum) {
        if (!same_shape(*c.in, *first.in))
          return who + "passed shape " + sdk::shape_string(*c.in) + " but rank 0 passed " +
                 sdk::shape_string(*first.in);
      }
      if (first.op == Op::kBroadcast && c.root != first.root)
        return who + "named root " + std::to_string(c.root) + " but rank 0 named root " +
               std::to_string(first.root);
      if ((first.op == Op::kAllGather || first.op == Op::kReduceScatterSum) && c.dim != first.dim)
        return who + "passed dim " + std::to_string(c.dim) + " but rank 0 passed dim " +
               std::to_string(first.dim);
      if (first.op == Op::kAllGather && !same_shape_except(*c.in, *first.in, first.dim))
        return who + "passed in of shape " + sdk::shape_string(*c.in) + " but rank 0 passed " +
               sdk::shape_string(*first.in) + "; they may differ along dim " +
               std::to_string(first.dim) + " only";
    }
    const int32_t dim = first.dim;
    if (first.op == Op::kAllGather) {
      int64_t total = 0;
      for (const Call& c : calls_) total += c.in->shape[dim];
      for (int32_t r = 0; r < world_; ++r) {
        const Call& c = calls_[static_cast<size_t>(r)];
        if (c.out->shape[dim] != total)
          return "rank " + std::to_string(r) + "'s out has shape " + sdk::shape_string(*c.out) +
                 ", expected " + std::to_string(total) + " along dim " + std::to_string(dim) +
                 " (the ranks' in summed along it)";
      }
    }
    if (first.op == Op::kReduceScatterSum) {
      int64_t total = 0;
      std::string parts;
      for (const Call& c : calls_) {
        total += c.out->shape[dim];
        (parts += parts.empty() ? "" : " + ") += std::to_string(c.out->shape[dim]);
      }
      if (total != first.in->shape[dim])
        return "the ranks' out sizes along dim " + std::to_string(dim) + " add up to " + parts +
               " = " + std::to_string(total) + ", expected in's " +
               std::to_string(first.in->shape[dim]);
    }
    return "";
  }

  const std::string name_;
  const int32_t world_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::vector<bool> joined_;
  std::vector<bool> arrived_;
  int32_t n_arrived_ = 0;
  uint64_t generation_ = 0;
  std::vector<Call> calls_;
  std::string broken_;  // why the group can run no more collectives
};

// The groups of this process, by name. A group is retired (removed) when a member leaves.
struct Groups {
  std::mutex mu;
  std::map<std::string, std::weak_ptr<Group>> by_name;
};

Groups& groups() {
  // Never destroyed: provider objects may outlive static destruction order.
  static auto* g = new Groups();
  return *g;
}

std::shared_ptr<Group> join_group(const std::string& name, int32_t world, int32_t rank) {
  Groups& all = groups();
  const std::lock_guard<std::mutex> lock(all.mu);
  std::shared_ptr<Group> group = all.by_name[name].lock();
  if (group == nullptr) {
    group = std::make_shared<Group>(name, world);
    all.by_name[name] = group;
  } else if (group->world() != world) {
    throw std::invalid_argument("parallel-local: " + group->describe() +
                                " already exists in this process; this rank asks for world " +
                                std::to_string(world) +
                                " (every rank of a group must give the same world)");
  }
  group->join(rank);
  return group;
}

void leave_group(const std::shared_ptr<Group>& group, int32_t rank) {
  {
    Groups& all = groups();
    const std::lock_guard<std::mutex> lock(all.mu);
    const auto it = all.by_name.find(group->name());
    if (it != all.by_name.end() && it->second.lock() == group) all.by_name.erase(it);
  }
  group->leave(rank);
}

// ------------------------------------------------------------ world 1

// all_gather and reduce_scatter over one rank: out must have the shape of in; a copy.
void copy_collective(const char* name, const ts_tensor* in, ts_tensor* out, int32_t dim) {
  const std::string where = std::string("parallel-local ") + name + ": ";
  check_tensor(in, where, "in");
  check_tensor(out, where, "out");
  if (dim < 0 || dim >= in->ndim)
    throw std::invalid_argument(where + "dim " + std::to_string(dim) + " is outside [0, " +
                                std::to_string(in->ndim) + ") for in of shape " +
                                sdk::shape_string(*in));
  if (in->dtype != out->dtype)
    throw std::invalid_argument(where + "in has dtype " + dtype_name(in->dtype) +
                                " but out has dtype " + dtype_name(out->dtype) +
                                "; they must match");
  if (!same_shape(*in, *out))
    throw std::invalid_argument(where + "out has shape " + sdk::shape_string(*out) +
                                ", expected the shape of in " + sdk::shape_string(*in) +
                                " with a world of 1 rank");
  if (in->device != TS_DEVICE_CPU || out->device != TS_DEVICE_CPU) {
    if (in->data == out->data && same_layout(*in, *out)) return;
    throw sdk::Unsupported(where + "copying between distinct " + device_name(in->device) + " and " +
                           device_name(out->device) +
                           " tensors is not supported; pass out == in, or use a device "
                           "parallel plugin");
  }
  copy_tensor(*in, *out);
}

// ------------------------------------------------------------ the provider

class LocalParallel {
 public:
  LocalParallel(const ts_params& params, const ts_host*) {
    const sdk::Params p(params);
    for (int32_t i = 0; i < params.count; ++i) {
      const char* key = params.items[i].key;
      const std::string name = key ? key : "";
      if (name != "world" && name != "rank" && name != "group" && name != "timeout_s")
        throw std::invalid_argument("parallel-local: unknown parameter '" + name +
                                    "'; accepted parameters: " + kAcceptedParams);
    }
    try {
      read_params(p);
    } catch (const std::invalid_argument& e) {
      const std::string message = e.what();
      if (message.rfind("parallel-local", 0) == 0) throw;
      throw std::invalid_argument("parallel-local: " + message);
    }
    if (world_ > 1) group_ = join_group(group_name_, world_, rank_);
  }

  ~LocalParallel() {
    if (group_ != nullptr) leave_group(group_, rank_);
  }
  LocalParallel(const LocalParallel&) = delete;
  LocalParallel& operator=(const LocalParallel&) = delete;

  ts_comm communicator() {
    ts_comm comm{};
    comm.ctx = this;
    comm.rank = rank_;
    comm.world = world_;
    comm.all_reduce_sum = [](void* ctx, ts_tensor* inout, void*, ts_error* err) {
      return sdk::guard(err, [&] { static_cast<LocalParallel*>(ctx)->all_reduce_sum(inout); });
    };
    comm.all_gather = [](void* ctx, const ts_tensor* in, ts_tensor* out, int32_t dim, void*,
                         ts_error* err) {
      return sdk::guard(err, [&] { static_cast<LocalParallel*>(ctx)->all_gather(in, out, dim); });
    };
    comm.reduce_scatter_sum = [](void* ctx, const ts_tensor* in, ts_tensor* out, int32_t dim, void*,
                                 ts_error* err) {
      return sdk::guard(
          err, [&] { static_cast<LocalParallel*>(ctx)->reduce_scatter_sum(in, out, dim); });
    };
    comm.broadcast = [](void* ctx, ts_tensor* inout, int32_t root, void*, ts_error* err) {
      return sdk::guard(err, [&] { static_cast<LocalParallel*>(ctx)->broadcast(inout, root); });
    };
    return comm;
  }

 private:
  void read_params(const sdk::Params& p) {
    const int64_t world = p.get_int("world", 1);
    if (world < 1 || world > 4096)
      throw std::invalid_argument("parallel-local: parameter 'world' is " + std::to_string(world) +
                                  ", expected an integer in 1..4096");
    world_ = static_cast<int32_t>(world);
    const int64_t rank = p.get_int("rank", 0);
    if (rank < 0 || rank >= world)
      throw std::invalid_argument("parallel-local: parameter 'rank' is " + std::to_string(rank) +
                                  ", expected 0.." + std::to_string(world - 1) + " (world " +
                                  std::to_string(world) + ")");
    rank_ = static_cast<int32_t>(rank);
    group_name_ = p.get_string("group", "default");
    if (group_name_.empty())
      throw std::invalid_argument("parallel-local: parameter 'group' is empty, expected a name");
    timeout_s_ = p.get_float("timeout_s", kDefaultTimeoutSeconds);
    if (!(timeout_s_ > 0) || !std::isfinite(timeout_s_))
      throw std::invalid_argument("parallel-local: parameter 'timeout_s' is " +
                                  format_number(timeout_s_) + ", expected a finite number > 0");
  }

  // The checks of one rank's own call, before it meets the others.
  std::string check_own(const Call& call, const ts_tensor* in, const ts_tensor* out) const {
    const std::string where;  // the caller prefixes the collective and the group
    try {
      const bool pair = call.op == Op::kAllGather || call.op == Op::kReduceScatterSum;
      check_tensor(in, where, pair ? "in" : "inout");
      if (pair) check_tensor(out, where, "out");
      const int32_t device = in->device != TS_DEVICE_CPU ? in->device
                             : pair                      ? out->device
                                                         : TS_DEVICE_CPU;
      if (device != TS_DEVICE_CPU)
        return std::string("a ") + device_name(device) +
               " tensor; a group of more than one rank moves CPU tensors only";
      if ((call.op == Op::kAllReduceSum || call.op == Op::kReduceScatterSum) &&
          !summable(in->dtype))
        return std::string("dtype ") + dtype_name(in->dtype) +
               " cannot be summed (f32, f16, bf16, i32 and i64 can)";
      if (call.op == Op::kBroadcast && (call.root < 0 || call.root >= world_))
        return "root " + std::to_string(call.root) + " is outside the world of " +
               std::to_string(world_) + " ranks (expected 0.." + std::to_string(world_ - 1) + ")";
      if (pair) {
        if (call.dim < 0 || call.dim >= in->ndim)
          return "dim " + std::to_string(call.dim) + " is outside [0, " + std::to_string(in->ndim) +
                 ") for in of shape " + sdk::shape_string(*in);
        if (in->dtype != out->dtype)
          return std::string("in has dtype ") + dtype_name(in->dtype) + " but out has dtype " +
                 dtype_name(out->dtype) + "; they must match";
        if (!same_shape_except(*in, *out, call.dim))
          return "out has shape " + sdk::shape_string(*out) + " and in " + sdk::shape_string(*in) +
                 "; they may differ along dim " + std::to_string(call.dim) + " only";
      }
    } catch (const std::invalid_argument& e) {
      return e.what();
    }
    return "";
  }

  void all_reduce_sum(ts_tensor* inout) {
    if (world_ == 1) {
      check_tensor(inout, "parallel-local all_reduce_sum: ", "inout");
      return;
    }
    Call call;
    call.op = Op::kAllReduceSum;
    call.in = inout;
    call.invalid = check_own(call, inout, nullptr);
    std::vector<unsigned char> result;
    group_->run(
        rank_, std::move(call), timeout_s_,
        [&](const std::vector<Call>& calls) {
          const auto n = static_cast<size_t>(sdk::numel(*inout));
          Accumulator acc(inout->dtype, n);
          for (const Call& c : calls) acc.add(pack(*c.in), 0, n, 0);
          result = acc.bytes();
        },
        [&] { unpack(result, *inout); });
  }

  void all_gather(const ts_tensor* in, ts_tensor* out, int32_t dim) {
    if (world_ == 1) {
      copy_collective("all_gather", in, out, dim);
      return;
    }
    Call call;
    call.op = Op::kAllGather;
    call.in = in;
    call.out = out;
    call.dim = dim;
    call.invalid = check_own(call, in, out);
    std::vector<unsigned char> result;
    group_->run(
        rank_, std::move(call), timeout_s_,
        [&](const std::vector<Call>& calls) {
          const size_t elem = dtype_size(out->dtype);
          const Slabs s = slabs(*out, dim);
          const int64_t total = out->shape[dim];
          result.resize(static_cast<size_t>(sdk::numel(*out)) * elem);
          int64_t at = 0;  // where this rank's part starts along dim
          for (const Call& c : calls) {
            const std::vector<unsigned char> part = pack(*c.in);
            const int64_t n = c.in->shape[dim];
            const auto row = static_cast<size_t>(n * s.inner) * elem;
            for (int64_t o = 0; o < s.outer; ++o)
              std::memcpy(result.data() + static_cast<size_t>((o * total + at) * s.inner) * elem,
                          part.data() + static_cast<size_t>(o) * row, row);
            at += n;
          }
        },
        [&] { unpack(result, *out); });
  }

  void reduce_scatter_sum(const ts_tensor* in, ts_tensor* out, int32_t dim) {
    if (world_ == 1) {
      copy_collective("reduce_scatter_sum", in, out, dim);
      return;
    }
    Call call;
    call.op = Op::kReduceScatterSum;
    call.in = in;
    call.out = out;
    call.dim = dim;
    call.invalid = check_own(call, in, out);
    std::vector<unsigned char> result;
    group_->run(
        rank_, std::move(call), timeout_s_,
        [&](const std::vector<Call>& calls) {
          const Slabs s = slabs(*in, dim);
          const int64_t total = in->shape[dim];
          int64_t first = 0;  // this rank's part along dim
          for (int32_t r = 0; r < rank_; ++r)
            first += calls[static_cast<size_t>(r)].out->shape[dim];
          const int64_t n = out->shape[dim];
          const auto row = static_cast<size_t>(n * s.inner);
          Accumulator acc(in->dtype, static_cast<size_t>(s.outer) * row);
          for (const Call& c : calls) {
            const std::vector<unsigned char> whole = pack(*c.in);
            for (int64_t o = 0; o < s.outer; ++o)
              acc.add(whole, static_cast<size_t>((o * total + first) * s.inner), row,
                      static_cast<size_t>(o) * row);
          }
          result = acc.bytes();
        },
        [&] { unpack(result, *out); });
  }

  void broadcast(ts_tensor* inout, int32_t root) {
    if (world_ == 1) {
      check_tensor(inout, "parallel-local broadcast: ", "inout");
      if (root != 0)
        throw std::invalid_argument("parallel-local broadcast: root " + std::to_string(root) +
                                    " is outside the world of 1 rank (expected 0)");
      return;
    }
    Call call;
    call.op = Op::kBroadcast;
    call.in = inout;
    call.root = root;
    call.invalid = check_own(call, inout, nullptr);
    std::vector<unsigned char> result;
    group_->run(
        rank_, std::move(call), timeout_s_,
        [&](const std::vector<Call>& calls) {
          if (root != rank_) result = pack(*calls[static_cast<size_t>(root)].in);
        },
        [&] {
          if (root != rank_) unpack(result, *inout);
        });
  }

  int32_t world_ = 1;
  int32_t rank_ = 0;
  std::string group_name_;
  double timeout_s_ = kDefaultTimeoutSeconds;
  std::shared_ptr<Group> group_;  // world > 1
};

const ts_parallel_vtable kVtable = sdk::parallel_vtable<LocalParallel>();
const ts_provider kProviders[] = {
    sdk::provider(TS_KIND_PARALLEL, "local", TS_DEVICE_CPU, &kVtable)};

}  // namespace
}  // namespace tessera::parallel

TESSERA_PLUGIN("tessera-parallel-local", "0.1.0", tessera::parallel::kProviders)
