// Plugin discovery, loading and validation, and provider lookup.
//
// Every check here exists because the host is about to call into foreign code
// through raw C structs: a wrong size or a NULL pointer would otherwise become a
// crash far away from its cause. Each error names the file, the entry symbol and
// the ABI versions involved so that the user can tell which library to rebuild.
#include <tessera/engine/error.hpp>
#include <tessera/engine/log.hpp>
#include <tessera/engine/plugin_registry.hpp>

#ifndef BOOST_DLL_USE_STD_FS
#define BOOST_DLL_USE_STD_FS
#endif
#include <dlfcn.h>
#include <elf.h>
#include <link.h>

#include <algorithm>
#include <boost/dll/shared_library.hpp>
#include <cstddef>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <map>
#include <mutex>
#include <set>
#include <sstream>
#include <string_view>
#include <system_error>
#include <tuple>
#include <utility>

namespace fs = std::filesystem;

namespace tessera {

class PluginLibrary {
 public:
  PluginLibrary(boost::dll::shared_library library, const ts_plugin_descriptor* descriptor,
                PluginInfo info)
      : library_(std::move(library)), descriptor_(descriptor), info_(std::move(info)) {}

  const PluginInfo& info() const { return info_; }
  const ts_plugin_descriptor* descriptor() const { return descriptor_; }

 private:
  boost::dll::shared_library library_;
  const ts_plugin_descriptor* descriptor_;
  PluginInfo info_;
};

const std::string& ProviderRef::plugin_name() const {
  static const std::string kNone;
  return library ? library->info().name : kNone;
}

const fs::path& ProviderRef::path() const {
  static const fs::path kNone;
  return library ? library->info().path : kNone;
}

const char* kind_name(int32_t kind) {
  switch (kind) {
    case TS_KIND_ATTENTION:
      return "attention";
    case TS_KIND_FFN:
      return "ffn";
    case TS_KIND_DECODER:
      return "decoder";
    case TS_KIND_PARALLEL:
      return "parallel";
    case TS_KIND_SEARCH:
      return "search";
    case TS_KIND_BACKEND:
      return "backend";
    default:
      return "unknown";
  }
}

namespace {

constexpr const char* kEntrySymbol = TS_PLUGIN_ENTRY;

const char* device_name(int32_t device) {
  switch (device) {
    case TS_DEVICE_CPU:
      return "cpu";
    case TS_DEVICE_CUDA:
      return "cuda";
    default:
      return "unknown-device";
  }
}

std::string abi_string(unsigned major, unsigned minor) {
  return std::to_string(major) + "." + std::to_string(minor);
}

const std::string kHostAbi = abi_string(TS_ABI_MAJOR, TS_ABI_MINOR);

// The smallest struct sizes a plugin built against ABI 2.0 may report: each
// covers the fields and the function pointers that version made mandatory.
// Later minors only append, so anything at least this large is readable.
// The members' sizes are those of the pointers they hold, which is what is measured.
constexpr size_t kMinDescriptorSize =
    offsetof(ts_plugin_descriptor, providers) +
    sizeof(ts_plugin_descriptor::providers);  // NOLINT(bugprone-sizeof-expression)
constexpr size_t kDescriptorVersionSize =
    offsetof(ts_plugin_descriptor, abi_minor) + sizeof(ts_plugin_descriptor::abi_minor);
constexpr size_t kMinProviderSize = offsetof(ts_provider, vtable) + sizeof(ts_provider::vtable);
constexpr size_t kMinBlockVtableSize =
    offsetof(ts_block_vtable, forward) + sizeof(ts_block_vtable::forward);
constexpr size_t kMinDecoderVtableSize =
    offsetof(ts_decoder_vtable, step) + sizeof(ts_decoder_vtable::step);
constexpr size_t kMinParallelVtableSize =
    offsetof(ts_parallel_vtable, communicator) + sizeof(ts_parallel_vtable::communicator);
constexpr size_t kMinSearchVtableSize =
    offsetof(ts_search_vtable, free_string) + sizeof(ts_search_vtable::free_string);
constexpr size_t kMinBackendVtableSize =
    offsetof(ts_backend_vtable, sample) + sizeof(ts_backend_vtable::sample);

// Libraries that loaded and passed every check are never unloaded: a plugin may
// leave thread-local destructors or atexit handlers pointing into its code, and
// unloading it before process exit would turn those into crashes. The vector is
// deliberately leaked so that it outlives every static destructor.
void keep_loaded_for_process_lifetime(const std::shared_ptr<PluginLibrary>& library) {
  static std::mutex mutex;
  static auto* kept = new std::vector<std::shared_ptr<PluginLibrary>>();
  std::lock_guard<std::mutex> lock(mutex);
  kept->push_back(library);
}

fs::path executable_dir() {
  std::error_code ec;
  fs::path exe = fs::read_symlink("/proc/self/exe", ec);
  if (ec) return {};
  return exe.parent_path();
}

// The canonical form when the file exists (so that two spellings of one file
// compare equal), else the absolute, lexically normal form.
fs::path normalized(const fs::path& p) {
  std::error_code ec;
  fs::path canonical = fs::canonical(p, ec);
  if (!ec) return canonical;
  fs::path absolute = fs::absolute(p, ec);
  return (ec ? p : absolute).lexically_normal();
}

bool is_plugin_file_name(const std::string& name) {
  constexpr std::string_view kPrefix = "libtessera-";
  constexpr std::string_view kSuffix = ".so";
  return name.size() > kPrefix.size() + kSuffix.size() && name.rfind(kPrefix, 0) == 0 &&
         name.compare(name.size() - kSuffix.size(), kSuffix.size(), kSuffix) == 0;
}

std::string join_paths(const std::vector<fs::path>& paths) {
  if (paths.empty()) return "  (none)\n";
  std::string out;
  for (const fs::path& p : paths) {
    std::error_code ec;
    out += "  " + p.string() + (fs::is_directory(p, ec) ? "" : " (does not exist)") + "\n";
  }
  return out;
}

std::string provider_string(const ts_provider& p) {
  return std::string(kind_name(p.kind)) + " '" + (p.name ? p.name : "") + "' on " +
         device_name(p.device);
}

// "cannot load plugin '<path>': <what> [entry symbol 'tessera_plugin'; host ABI 1.0; ...]".
[[noreturn]] void fail_load(const fs::path& path, const std::string& what,
                            const std::string& plugin_abi = "") {
  std::string message = "cannot load plugin '" + path.string() + "': " + what + " [entry symbol '" +
                        kEntrySymbol + "'; host ABI " + kHostAbi;
  if (!plugin_abi.empty()) message += "; plugin ABI " + plugin_abi;
  throw PluginError(message + "]");
}

// Why the ELF file at `path` cannot be handed to the dynamic loader, or empty when it can:
// the loader maps each segment at its file offset, and touching a page past the end of a
// truncated file kills the process with SIGBUS, so every segment must lie inside the file.
std::string elf_problem(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  std::error_code ec;
  const uint64_t size = fs::file_size(path, ec);
  if (!in || ec) return "it cannot be read";
  // What is not a 64-bit ELF file at all the loader refuses safely, in its own words.
  Elf64_Ehdr header{};
  if (!in.read(reinterpret_cast<char*>(&header), sizeof(header))) return {};
  if (std::memcmp(header.e_ident, ELFMAG, SELFMAG) != 0) return {};
  if (header.e_ident[EI_CLASS] != ELFCLASS64) return {};
  if (header.e_phentsize != sizeof(Elf64_Phdr))
    return "its program headers are " + std::to_string(header.e_phentsize) +
           " bytes each; expected " + std::to_string(sizeof(Elf64_Phdr));
  const uint64_t table_end = header.e_phoff + uint64_t{header.e_phnum} * sizeof(Elf64_Phdr);
  if (header.e_phoff > size || table_end > size)
    return "it is truncated: its program headers end at byte " + std::to_string(table_end) +
           " and the file has " + std::to_string(size);
  in.seekg(static_cast<std::streamoff>(header.e_phoff));
  for (int i = 0; i < header.e_phnum; ++i) {
    Elf64_Phdr ph{};
    if (!in.read(reinterpret_cast<char*>(&ph), sizeof(ph))) return "it cannot be read";
    if (ph.p_type != PT_LOAD && ph.p_type != PT_DYNAMIC) continue;
    if (ph.p_offset > size || ph.p_filesz > size - ph.p_offset)
      return "it is truncated: segment " + std::to_string(i) + " needs bytes up to " +
             std::to_string(ph.p_offset + ph.p_filesz) + " and the file has " +
             std::to_string(size);
  }
  return {};
}

size_t min_vtable_size(int32_t kind) {
  switch (kind) {
    case TS_KIND_ATTENTION:
    case TS_KIND_FFN:
      return kMinBlockVtableSize;
    case TS_KIND_DECODER:
      return kMinDecoderVtableSize;
    case TS_KIND_PARALLEL:
      return kMinParallelVtableSize;
    case TS_KIND_SEARCH:
      return kMinSearchVtableSize;
    case TS_KIND_BACKEND:
      return kMinBackendVtableSize;
    default:
      return 0;
  }
}

// The names of the mandatory function pointers of a provider's vtable that are NULL.
std::vector<std::string> missing_functions(const ts_provider& p) {
  std::vector<std::string> missing;
  auto need = [&](const void* fn, const char* name) {
    if (fn == nullptr) missing.emplace_back(name);
  };
  switch (p.kind) {
    case TS_KIND_ATTENTION:
    case TS_KIND_FFN: {
      const auto* v = static_cast<const ts_block_vtable*>(p.vtable);
      need(reinterpret_cast<const void*>(v->create), "create");
      need(reinterpret_cast<const void*>(v->destroy), "destroy");
      need(reinterpret_cast<const void*>(v->info), "info");
      need(reinterpret_cast<const void*>(v->forward), "forward");
      break;
    }
    case TS_KIND_DECODER: {
      const auto* v = static_cast<const ts_decoder_vtable*>(p.vtable);
      need(reinterpret_cast<const void*>(v->create), "create");
      need(reinterpret_cast<const void*>(v->destroy), "destroy");
      need(reinterpret_cast<const void*>(v->step), "step");
      break;
    }
    case TS_KIND_PARALLEL: {
      const auto* v = static_cast<const ts_parallel_vtable*>(p.vtable);
      need(reinterpret_cast<const void*>(v->create), "create");
      need(reinterpret_cast<const void*>(v->destroy), "destroy");
      need(reinterpret_cast<const void*>(v->communicator), "communicator");
      break;
    }
    case TS_KIND_SEARCH: {
      const auto* v = static_cast<const ts_search_vtable*>(p.vtable);
      need(reinterpret_cast<const void*>(v->create), "create");
      need(reinterpret_cast<const void*>(v->destroy), "destroy");
      need(reinterpret_cast<const void*>(v->solve), "solve");
      need(reinterpret_cast<const void*>(v->free_string), "free_string");
      break;
    }
    case TS_KIND_BACKEND: {
      const auto* v = static_cast<const ts_backend_vtable*>(p.vtable);
      const std::pair<const void*, const char*> entries[] = {
          {reinterpret_cast<const void*>(v->create), "create"},
          {reinterpret_cast<const void*>(v->destroy), "destroy"},
          {reinterpret_cast<const void*>(v->device_info), "device_info"},
          {reinterpret_cast<const void*>(v->context), "context"},
          {reinterpret_cast<const void*>(v->alloc), "alloc"},
          {reinterpret_cast<const void*>(v->free), "free"},
          {reinterpret_cast<const void*>(v->copy), "copy"},
          {reinterpret_cast<const void*>(v->synchronize), "synchronize"},
          {reinterpret_cast<const void*>(v->convert), "convert"},
          {reinterpret_cast<const void*>(v->rmsnorm), "rmsnorm"},
          {reinterpret_cast<const void*>(v->add), "add"},
          {reinterpret_cast<const void*>(v->embed), "embed"},
          {reinterpret_cast<const void*>(v->matmul), "matmul"},
          {reinterpret_cast<const void*>(v->argmax), "argmax"},
          {reinterpret_cast<const void*>(v->sample), "sample"}};
      for (const auto& [fn, name] : entries) need(fn, name);
      break;
    }
    default:
      break;
  }
  return missing;
}

}  // namespace

std::string vtable_problem(const ts_provider& p) {
  if (p.vtable == nullptr) return "the provider has a NULL vtable";
  const uint32_t vtable_size = *static_cast<const uint32_t*>(p.vtable);
  const size_t min_size = min_vtable_size(p.kind);
  if (vtable_size < min_size) {
    return "its " + std::string(kind_name(p.kind)) + " vtable has struct_size " +
           std::to_string(vtable_size) + ", smaller than the ABI " + std::to_string(TS_ABI_MAJOR) +
           ".0 minimum of " + std::to_string(min_size);
  }
  const std::vector<std::string> missing = missing_functions(p);
  if (missing.empty()) return "";
  std::string names;
  for (const std::string& m : missing) names += (names.empty() ? "" : ", ") + m;
  return "its " + std::string(kind_name(p.kind)) +
         " vtable leaves mandatory functions NULL: " + names;
}

namespace {

// Checks the descriptor a plugin returned and collects its providers.
PluginInfo validate_descriptor(const fs::path& path, const ts_plugin_descriptor* d) {
  if (d == nullptr) fail_load(path, std::string("'") + kEntrySymbol + "' returned NULL");
  if (d->struct_size < kDescriptorVersionSize) {
    fail_load(path, "its descriptor reports struct_size " + std::to_string(d->struct_size) +
                        ", too small to hold even the ABI version");
  }
  const std::string plugin_abi = abi_string(d->abi_major, d->abi_minor);
  if (d->abi_major != TS_ABI_MAJOR) {
    fail_load(path,
              "it was built for plugin ABI " + plugin_abi + " but this host implements ABI " +
                  kHostAbi + "; the major versions must be equal (rebuild the plugin against " +
                  "this host's SDK)",
              plugin_abi);
  }
  if (d->abi_minor > TS_ABI_MINOR) {
    fail_load(path,
              "it needs plugin ABI " + plugin_abi + ", newer than this host's ABI " + kHostAbi +
                  "; it may rely on host features this host lacks (upgrade the host or rebuild " +
                  "the plugin against this host's SDK)",
              plugin_abi);
  }
  if (d->struct_size < kMinDescriptorSize) {
    fail_load(path,
              "its descriptor reports struct_size " + std::to_string(d->struct_size) +
                  ", smaller than the ABI " + std::to_string(TS_ABI_MAJOR) + ".0 minimum of " +
                  std::to_string(kMinDescriptorSize),
              plugin_abi);
  }
  if (d->name == nullptr || d->name[0] == '\0') {
    fail_load(path, "its descriptor has no plugin name", plugin_abi);
  }
  if (d->n_providers < 0 || (d->n_providers > 0 && d->providers == nullptr)) {
    fail_load(path,
              "plugin '" + std::string(d->name) + "' declares " + std::to_string(d->n_providers) +
                  " providers but gives " + (d->providers ? "a negative count" : "a NULL array"),
              plugin_abi);
  }

  PluginInfo info;
  info.name = d->name;
  info.version = d->version ? d->version : "";
  info.abi_major = d->abi_major;
  info.abi_minor = d->abi_minor;
  info.path = path;

  // The array's stride is the plugin's own sizeof(ts_provider), which its first
  // entry reports; a plugin from an older minor may have a shorter struct.
  const auto* bytes = reinterpret_cast<const unsigned char*>(d->providers);
  const size_t stride = d->n_providers > 0 ? d->providers[0].struct_size : 0;
  std::map<std::tuple<int32_t, std::string, int32_t>, int32_t> seen;
  for (int32_t i = 0; i < d->n_providers; ++i) {
    const auto* p = reinterpret_cast<const ts_provider*>(bytes + static_cast<size_t>(i) * stride);
    const std::string where = "plugin '" + info.name + "' provider #" + std::to_string(i);
    if (p->struct_size < kMinProviderSize || p->struct_size != stride) {
      fail_load(path,
                where + " reports struct_size " + std::to_string(p->struct_size) +
                    " (expected at least " + std::to_string(kMinProviderSize) +
                    " and the same for every provider)",
                plugin_abi);
    }
    if (p->kind < TS_KIND_ATTENTION || p->kind > TS_KIND_BACKEND) {
      fail_load(path,
                where + " has unknown kind " + std::to_string(p->kind) +
                    " (expected 0..5: attention, ffn, decoder, parallel, search, backend)",
                plugin_abi);
    }
    if (p->name == nullptr || p->name[0] == '\0') {
      fail_load(path, where + " (" + kind_name(p->kind) + ") has no name", plugin_abi);
    }
    if (p->device != TS_DEVICE_CPU && p->device != TS_DEVICE_CUDA) {
      fail_load(path,
                where + " (" + kind_name(p->kind) + " '" + p->name + "') has unknown device " +
                    std::to_string(p->device) + " (expected 0 = cpu or 1 = cuda)",
                plugin_abi);
    }
    const std::string described = where + " (" + provider_string(*p) + ")";
    if (p->vtable == nullptr) fail_load(path, described + " has a NULL vtable", plugin_abi);
    const uint32_t vtable_size = *static_cast<const uint32_t*>(p->vtable);
    const size_t min_size = min_vtable_size(p->kind);
    if (vtable_size < min_size) {
      fail_load(path,
                described + " has a vtable with struct_size " + std::to_string(vtable_size) +
                    ", smaller than the ABI " + std::to_string(TS_ABI_MAJOR) + ".0 minimum of " +
                    std::to_string(min_size) + " for a " + kind_name(p->kind) + " vtable",
                plugin_abi);
    }
    const std::vector<std::string> missing = missing_functions(*p);
    if (!missing.empty()) {
      std::string names;
      for (const std::string& m : missing) names += (names.empty() ? "" : ", ") + m;
      fail_load(path, described + " leaves mandatory functions NULL: " + names, plugin_abi);
    }
    auto [it, inserted] =
        seen.emplace(std::make_tuple(p->kind, std::string(p->name), p->device), i);
    if (!inserted) {
      fail_load(path,
                "plugin '" + info.name + "' declares " + provider_string(*p) +
                    " twice (providers #" + std::to_string(it->second) + " and #" +
                    std::to_string(i) + "); each (kind, name, device) may appear once per plugin",
                plugin_abi);
    }
    info.providers.push_back(p);
  }
  return info;
}

// The entry point: an exported function named tessera_plugin. The symbol's ELF type is
// checked before anything is called, so a library exporting that name as data (an ABI
// 1.x plugin, whose entry was a Boost.DLL alias, or a variable by mistake) is refused
// instead of being jumped into.
ts_plugin_entry_fn resolve_entry(const boost::dll::shared_library& handle, const fs::path& path) {
  const std::string how =
      " (define it with TESSERA_PLUGIN from <tessera/plugin.hpp>, or in C as "
      "'TS_PLUGIN_EXPORT const ts_plugin_descriptor* tessera_plugin(void)')";
  if (!handle.has(kEntrySymbol)) {
    fail_load(path, std::string("not a Tessera plugin: it exports no '") + kEntrySymbol +
                        "' symbol" + how);
  }
  auto& function = handle.get<const ts_plugin_descriptor*()>(kEntrySymbol);
  void* address = reinterpret_cast<void*>(&function);
  Dl_info where{};
  void* entry = nullptr;  // the symbol's ElfW(Sym) in the library's dynamic symbol table
  if (::dladdr1(address, &where, &entry, RTLD_DL_SYMENT) == 0 || entry == nullptr) {
    fail_load(path,
              std::string("the dynamic loader cannot describe its '") + kEntrySymbol + "' symbol");
  }
  const unsigned type = ELF64_ST_TYPE(static_cast<const ElfW(Sym)*>(entry)->st_info);
  if (type != STT_FUNC && type != STT_GNU_IFUNC) {
    fail_load(path, std::string("it exports '") + kEntrySymbol +
                        "' as data, not as a function: a plugin built for ABI 1.x (whose entry "
                        "was a Boost.DLL alias) or a variable of that name; rebuild it against "
                        "this host's SDK" +
                        how);
  }
  return reinterpret_cast<ts_plugin_entry_fn>(address);
}

}  // namespace

struct PluginRegistry::State {
  std::vector<fs::path> added_paths;
  std::vector<std::shared_ptr<PluginLibrary>> libraries;  // in load order
  std::vector<PluginInfo> infos;                          // parallel to libraries
  std::vector<SkippedLibrary> skipped;                    // load_all(true)'s failures
};

PluginRegistry::PluginRegistry() : state_(std::make_unique<State>()) {}
PluginRegistry::~PluginRegistry() = default;

void PluginRegistry::add_search_path(const fs::path& dir) {
  state_->added_paths.push_back(normalized(dir));
}

namespace {

// The folders the host's own plugins are installed in, beside the executable.
std::vector<fs::path> builtin_plugin_dirs() {
  const fs::path exe_dir = executable_dir();
  if (exe_dir.empty()) return {};
  return {normalized(exe_dir / ".." / "lib" / "tessera" / "plugins"),
          normalized(exe_dir / "plugins")};
}

bool is_builtin_plugin(const fs::path& library) {
  const std::vector<fs::path> dirs = builtin_plugin_dirs();
  return std::find(dirs.begin(), dirs.end(), normalized(library.parent_path())) != dirs.end();
}

}  // namespace

std::vector<fs::path> PluginRegistry::search_paths() const {
  std::vector<fs::path> paths = state_->added_paths;
  if (const char* env = std::getenv("TESSERA_PLUGIN_PATH"); env != nullptr) {
    std::string_view rest(env);
    while (!rest.empty()) {
      const size_t colon = rest.find(':');
      const std::string_view part = rest.substr(0, colon);
      if (!part.empty()) paths.push_back(normalized(fs::path(std::string(part))));
      if (colon == std::string_view::npos) break;
      rest.remove_prefix(colon + 1);
    }
  }
  for (const fs::path& dir : builtin_plugin_dirs()) paths.push_back(dir);
  // The same folder named twice (say, in the variable and as the default) is searched once.
  std::vector<fs::path> unique;
  for (const fs::path& p : paths) {
    if (std::find(unique.begin(), unique.end(), p) == unique.end()) unique.push_back(p);
  }
  return unique;
}

void PluginRegistry::load_all(bool skip_broken) {
  std::set<fs::path> seen;
  std::vector<fs::path> in_order;  // every candidate once, in search order
  for (const fs::path& dir : search_paths()) {
    std::error_code ec;
    if (!fs::is_directory(dir, ec)) continue;
    std::vector<fs::path> candidates;
    for (const fs::directory_entry& entry : fs::directory_iterator(dir, ec)) {
      if (is_plugin_file_name(entry.path().filename().string())) candidates.push_back(entry.path());
    }
    std::sort(candidates.begin(), candidates.end());
    for (const fs::path& candidate : candidates) {
      if (seen.insert(normalized(candidate)).second) in_order.push_back(normalized(candidate));
    }
  }
  // The host's own plugins load first, so that a library elsewhere that reuses one of their
  // names is the one refused (and named); afterwards the libraries are put back in search
  // order, which is what breaks ties between providers.
  std::vector<fs::path> load_order;
  for (const fs::path& c : in_order)
    if (is_builtin_plugin(c)) load_order.push_back(c);
  for (const fs::path& c : in_order)
    if (!is_builtin_plugin(c)) load_order.push_back(c);
  for (const fs::path& candidate : load_order) {
    try {
      load(candidate);
    } catch (const PluginError& e) {
      if (!skip_broken) throw;
      log(LogLevel::info, std::string("skipping plugin: ") + e.what());
      state_->skipped.push_back({candidate, e.what()});
    }
  }
  // Libraries loaded before this call (by load()) keep their place in front.
  const auto rank = [&](const fs::path& library) -> std::ptrdiff_t {
    const auto it = std::find(in_order.begin(), in_order.end(), library);
    return it == in_order.end() ? -1 : it - in_order.begin();
  };
  std::vector<size_t> order(state_->libraries.size());
  for (size_t i = 0; i < order.size(); ++i) order[i] = i;
  std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) {
    return rank(state_->infos[a].path) < rank(state_->infos[b].path);
  });
  std::vector<std::shared_ptr<PluginLibrary>> libraries;
  std::vector<PluginInfo> infos;
  for (const size_t i : order) {
    libraries.push_back(state_->libraries[i]);
    infos.push_back(std::move(state_->infos[i]));
  }
  state_->libraries = std::move(libraries);
  state_->infos = std::move(infos);
  std::stable_sort(state_->skipped.begin(), state_->skipped.end(),
                   [&](const SkippedLibrary& a, const SkippedLibrary& b) {
                     return rank(normalized(a.path)) < rank(normalized(b.path));
                   });
}

const PluginInfo& PluginRegistry::load(const fs::path& library) {
  fs::path path = library;
  std::error_code ec;
  // A bare file name is looked for in the search paths, like load_all would.
  if (!library.has_parent_path() && !fs::exists(library, ec)) {
    for (const fs::path& dir : search_paths()) {
      if (fs::exists(dir / library, ec)) {
        path = dir / library;
        break;
      }
    }
  }
  if (!fs::exists(path, ec)) {
    std::string message = "cannot load plugin '" + library.string() + "': no such file";
    if (!library.has_parent_path()) message += "; paths searched:\n" + join_paths(search_paths());
    throw PluginError(message);
  }
  if (!fs::is_regular_file(path, ec)) {
    fail_load(path, "it is not a regular file");
  }
  path = normalized(path);

  for (const auto& loaded : state_->libraries) {
    if (loaded->info().path == path) return loaded->info();
  }
  if (const std::string problem = elf_problem(path); !problem.empty()) fail_load(path, problem);

  boost::dll::shared_library handle;
  handle.load(path, boost::dll::load_mode::rtld_lazy | boost::dll::load_mode::rtld_local, ec);
  if (ec || !handle.is_loaded()) {
    // Boost.DLL keeps only a generic error code; ask the loader again for its own text.
    std::string reason = "the dynamic loader refused it";
    ::dlerror();
    if (void* raw = ::dlopen(path.c_str(), RTLD_LAZY | RTLD_LOCAL); raw != nullptr) {
      ::dlclose(raw);
    } else if (const char* text = ::dlerror(); text != nullptr) {
      reason += ": ";
      reason += text;
    }
    fail_load(path, "it is not a loadable shared library (" + reason + ")");
  }
  const ts_plugin_entry_fn entry = resolve_entry(handle, path);
  const ts_plugin_descriptor* descriptor = entry();
  PluginInfo info = validate_descriptor(path, descriptor);

  for (const auto& loaded : state_->libraries) {
    if (loaded->info().name == info.name && is_builtin_plugin(loaded->info().path) &&
        !is_builtin_plugin(path)) {
      throw PluginError("cannot load plugin '" + path.string() + "': its name '" + info.name +
                        "' is that of the built-in plugin '" + loaded->info().path.string() +
                        "'; give this library a name of its own (the descriptor's name) and "
                        "choose it with plugin = \"<name>\" in the manifest");
    }
    if (loaded->info().name == info.name) {
      throw PluginError("cannot load plugin '" + path.string() + "': plugin name '" + info.name +
                        "' is already loaded from '" + loaded->info().path.string() +
                        "'; plugin names must be unique (remove or rename one of the two files) " +
                        "[entry symbol '" + kEntrySymbol + "'; host ABI " + kHostAbi +
                        "; plugin ABI " + abi_string(info.abi_major, info.abi_minor) + "]");
    }
  }

  auto loaded = std::make_shared<PluginLibrary>(std::move(handle), descriptor, info);
  keep_loaded_for_process_lifetime(loaded);
  state_->libraries.push_back(loaded);
  state_->infos.push_back(std::move(info));
  log(LogLevel::debug, "loaded plugin '" + loaded->info().name + "' " + loaded->info().version +
                           " from " + path.string());
  return loaded->info();
}

const std::vector<PluginInfo>& PluginRegistry::plugins() const {
  return state_->infos;
}

const std::vector<PluginRegistry::SkippedLibrary>& PluginRegistry::skipped() const {
  return state_->skipped;
}

ProviderRef PluginRegistry::find(ts_kind kind, const std::string& name, ts_device device,
                                 const std::string& plugin) const {
  return candidates(kind, name, device, plugin).front();
}

std::vector<ProviderRef> PluginRegistry::candidates(ts_kind kind, const std::string& name,
                                                    ts_device device,
                                                    const std::string& plugin) const {
  const std::string wanted =
      std::string(kind_name(kind)) + " '" + name + "' on " + device_name(device);
  auto describe_state = [&] {
    std::string out = "loaded plugins:\n";
    if (state_->libraries.empty()) out += "  (none)\n";
    for (const auto& lib : state_->libraries) {
      const PluginInfo& info = lib->info();
      out += "  " + info.name + " " + info.version + " (" + info.path.string() + ")";
      if (info.providers.empty()) out += ": no providers";
      for (size_t i = 0; i < info.providers.size(); ++i) {
        out += (i == 0 ? ": " : ", ") + provider_string(*info.providers[i]);
      }
      out += "\n";
    }
    for (const SkippedLibrary& bad : state_->skipped)
      out += "skipped (it failed to load): " + bad.error + "\n";
    return out + "paths searched:\n" + join_paths(search_paths());
  };

  std::shared_ptr<PluginLibrary> named;
  if (!plugin.empty()) {
    for (const auto& lib : state_->libraries) {
      if (lib->info().name == plugin) named = lib;
    }
    if (!named) {
      throw PluginError("plugin '" + plugin + "', named for " + wanted +
                        ", is not loaded (no library in the search paths declares that " +
                        "plugin name)\n" + describe_state());
    }
  }

  std::vector<ProviderRef> ranked;
  std::vector<std::string> unable;  // providers that matched but reported score 0
  for (const auto& lib : state_->libraries) {
    if (named && lib != named) continue;
    for (const ts_provider* p : lib->info().providers) {
      if (p->kind != kind || p->device != device || name != p->name) continue;
      const int32_t score = p->score ? p->score() : 1;
      if (score <= 0) {
        unable.push_back(lib->info().name + " (" + lib->info().path.string() + ")");
        continue;
      }
      ranked.push_back(ProviderRef{lib, p, score});
    }
  }
  // Best first; ties go to the plugin loaded first, i.e. earliest in the search order.
  std::stable_sort(ranked.begin(), ranked.end(),
                   [](const ProviderRef& a, const ProviderRef& b) { return a.score > b.score; });
  if (!ranked.empty()) return ranked;

  std::string message = "no plugin provides " + wanted;
  if (!plugin.empty()) message = "plugin '" + plugin + "' does not provide " + wanted;
  if (!unable.empty()) {
    message += "; these providers report they cannot run on this machine (score 0):";
    for (const std::string& u : unable) message += " " + u;
  }
  throw PluginError(message + "\n" + describe_state());
}

}  // namespace tessera
