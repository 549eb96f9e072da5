// Plugin loading: every way a library can be refused, each message naming the
// facts a user needs (file, entry symbol, ABI versions, paths searched), and the
// choice among providers.
#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <cstddef>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <optional>
#include <string>
#include <tessera/engine/block.hpp>
#include <tessera/engine/error.hpp>
#include <tessera/engine/log.hpp>
#include <tessera/engine/plugin_registry.hpp>
#include <vector>

namespace fs = std::filesystem;
using tessera::PluginError;
using tessera::PluginRegistry;

namespace {

const fs::path kFixtureDir = TESSERA_FIXTURE_PLUGIN_DIR;

fs::path fixture(const std::string& name) {
  return kFixtureDir / ("libtessera-" + name + ".so");
}

const std::string kHostAbi = std::to_string(TS_ABI_MAJOR) + "." + std::to_string(TS_ABI_MINOR);

// The message of the PluginError that `f` throws; fails the test if it throws nothing.
std::string plugin_error(const std::function<void()>& f) {
  try {
    f();
  } catch (const PluginError& e) {
    return e.what();
  }
  ADD_FAILURE() << "expected a PluginError";
  return {};
}

// A fresh empty folder, removed at the end of the test.
class TempDir {
 public:
  TempDir() {
    static int counter = 0;
    path_ = fs::temp_directory_path() /
            ("tessera-registry-" + std::to_string(::getpid()) + "-" + std::to_string(counter++));
    fs::remove_all(path_);
    fs::create_directories(path_);
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path_, ec);
  }
  const fs::path& path() const { return path_; }

 private:
  fs::path path_;
};

// Sets an environment variable for one scope and restores the previous value.
class ScopedEnv {
 public:
  ScopedEnv(const char* name, const std::optional<std::string>& value) : name_(name) {
    if (const char* old = std::getenv(name)) old_ = old;
    if (value) {
      ::setenv(name, value->c_str(), 1);
    } else {
      ::unsetenv(name);
    }
  }
  ~ScopedEnv() {
    if (old_) {
      ::setenv(name_, old_->c_str(), 1);
    } else {
      ::unsetenv(name_);
    }
  }

 private:
  const char* name_;
  std::optional<std::string> old_;
};

// Expects the message to name the file, the entry symbol and the host's ABI.
void expect_names_load_facts(const std::string& message, const fs::path& file) {
  EXPECT_NE(message.find(fs::canonical(file).string()), std::string::npos) << message;
  EXPECT_NE(message.find("'tessera_plugin'"), std::string::npos) << message;
  EXPECT_NE(message.find("host ABI " + kHostAbi), std::string::npos) << message;
}

bool contains(const std::string& haystack, const std::string& needle) {
  return haystack.find(needle) != std::string::npos;
}

}  // namespace

TEST(PluginRegistry, KindNames) {
  EXPECT_STREQ(tessera::kind_name(TS_KIND_ATTENTION), "attention");
  EXPECT_STREQ(tessera::kind_name(TS_KIND_FFN), "ffn");
  EXPECT_STREQ(tessera::kind_name(TS_KIND_DECODER), "decoder");
  EXPECT_STREQ(tessera::kind_name(TS_KIND_PARALLEL), "parallel");
  EXPECT_STREQ(tessera::kind_name(TS_KIND_SEARCH), "search");
  EXPECT_STREQ(tessera::kind_name(99), "unknown");
}

TEST(PluginRegistry, LoadsAValidPluginAndCallsIntoIt) {
  PluginRegistry registry;
  const tessera::PluginInfo& info = registry.load(fixture("fixture-ffn"));
  EXPECT_EQ(info.name, "fixture-ffn");
  EXPECT_EQ(info.version, "0.1.0");
  EXPECT_EQ(info.abi_major, TS_ABI_MAJOR);
  EXPECT_EQ(info.abi_minor, TS_ABI_MINOR);
  EXPECT_EQ(info.path, fs::canonical(fixture("fixture-ffn")));
  ASSERT_EQ(info.providers.size(), 1u);
  EXPECT_EQ(info.providers[0]->kind, TS_KIND_FFN);
  EXPECT_STREQ(info.providers[0]->name, "fixture-ffn");

  // Loading the same file again, under another spelling, is a no-op.
  const fs::path other_spelling = kFixtureDir / "." / "libtessera-fixture-ffn.so";
  EXPECT_EQ(&registry.load(other_spelling), &info);
  ASSERT_EQ(registry.plugins().size(), 1u);

  tessera::ProviderRef ref = registry.find(TS_KIND_FFN, "fixture-ffn", TS_DEVICE_CPU);
  ASSERT_NE(ref.provider, nullptr);
  EXPECT_EQ(ref.plugin_name(), "fixture-ffn");
  EXPECT_EQ(ref.path(), info.path);
  EXPECT_EQ(ref.score, 1);  // no score function

  // The fixture computes y = scale * x; scale comes from the block params.
  const auto* vt = static_cast<const ts_block_vtable*>(ref.provider->vtable);
  ts_param scale{};
  scale.key = "scale";
  scale.type = TS_PARAM_FLOAT;
  scale.f = 3.0;
  ts_block_config config{};
  config.struct_size = sizeof(config);
  config.kind = TS_KIND_FFN;
  config.hidden = 4;
  config.params = ts_params{&scale, 1};
  void* self = nullptr;
  ts_error err{};
  ASSERT_EQ(vt->create(&config, &self, &err), TS_OK) << err.message;
  float x[8] = {1, 2, 3, 4, -1, -2, 0.5f, 0};
  float y[8] = {};
  ts_tensor tx{x, TS_F32, TS_DEVICE_CPU, 0, 2, {2, 4}, {4, 1}};
  ts_tensor ty{y, TS_F32, TS_DEVICE_CPU, 0, 2, {2, 4}, {4, 1}};
  ts_block_io io{sizeof(ts_block_io), &tx, &ty, nullptr, nullptr};
  ASSERT_EQ(vt->forward(self, &io, &err), TS_OK) << err.message;
  for (int i = 0; i < 8; ++i) EXPECT_FLOAT_EQ(y[i], 3.0f * x[i]) << i;
  vt->destroy(self);

  // Errors thrown inside the plugin come back as a status and a message.
  config.hidden = 0;
  EXPECT_EQ(vt->create(&config, &self, &err), TS_ERROR);
  EXPECT_TRUE(contains(err.message, "hidden must be positive")) << err.message;
}

TEST(PluginRegistry, MissingFileNamesThePath) {
  PluginRegistry registry;
  TempDir dir;
  const fs::path missing = dir.path() / "libtessera-nothing-here.so";
  const std::string message = plugin_error([&] { registry.load(missing); });
  EXPECT_TRUE(contains(message, missing.string())) << message;
  EXPECT_TRUE(contains(message, "no such file")) << message;
}

TEST(PluginRegistry, BareNameIsLookedUpInTheSearchPathsAndListsThem) {
  PluginRegistry registry;
  TempDir dir;
  registry.add_search_path(dir.path());
  registry.add_search_path(kFixtureDir);
  const std::string message = plugin_error([&] { registry.load("libtessera-nothing-here.so"); });
  EXPECT_TRUE(contains(message, "libtessera-nothing-here.so")) << message;
  EXPECT_TRUE(contains(message, "paths searched")) << message;
  EXPECT_TRUE(contains(message, fs::canonical(dir.path()).string())) << message;
  EXPECT_TRUE(contains(message, fs::canonical(kFixtureDir).string())) << message;

  // A bare name that exists in a search path is found there.
  EXPECT_EQ(registry.load("libtessera-fixture-ffn.so").name, "fixture-ffn");
}

TEST(PluginRegistry, FileThatIsNotASharedLibrary) {
  PluginRegistry registry;
  TempDir dir;
  const fs::path garbage = dir.path() / "libtessera-garbage.so";
  std::ofstream(garbage) << "this is a text file, not an ELF library\n";
  const std::string message = plugin_error([&] { registry.load(garbage); });
  expect_names_load_facts(message, garbage);
  EXPECT_TRUE(contains(message, "not a loadable shared library")) << message;
  // The dynamic loader's own words (dlerror) are passed on; they name the file too.
  EXPECT_TRUE(contains(message, "dynamic loader refused it: ")) << message;
  EXPECT_TRUE(contains(message, "ELF") || contains(message, "too short")) << message;

  // A real library cut short: refused before the loader maps it (touching its missing pages
  // would be SIGBUS), with the segment and the sizes.
  const fs::path real = fs::path(TESSERA_PLUGIN_DIR) / "libtessera-ffn-cpu.so";
  std::ifstream whole(real, std::ios::binary);
  std::string bytes(20000, '\0');
  ASSERT_TRUE(whole.read(bytes.data(), static_cast<std::streamsize>(bytes.size())));
  const fs::path cut = dir.path() / "libtessera-cut.so";
  std::ofstream(cut, std::ios::binary) << bytes;
  const std::string truncated = plugin_error([&] { registry.load(cut); });
  expect_names_load_facts(truncated, cut);
  EXPECT_TRUE(contains(truncated, "it is truncated: segment ")) << truncated;
  EXPECT_TRUE(contains(truncated, "and the file has 20000")) << truncated;

  // A folder named like a plugin is not a library either.
  const fs::path folder = dir.path() / "libtessera-folder.so";
  fs::create_directories(folder);
  EXPECT_TRUE(contains(plugin_error([&] { registry.load(folder); }), "not a regular file"));
  EXPECT_TRUE(registry.plugins().empty());
}

TEST(PluginRegistry, LibraryWithoutEntrySymbolIsNotAPlugin) {
  PluginRegistry registry;
  const fs::path lib = fixture("notaplugin");
  ASSERT_TRUE(fs::exists(lib)) << lib;
  const std::string message = plugin_error([&] { registry.load(lib); });
  expect_names_load_facts(message, lib);
  EXPECT_TRUE(contains(message, "not a Tessera plugin")) << message;
  EXPECT_TRUE(contains(message, "exports no 'tessera_plugin' symbol")) << message;
}

// An ABI 1.x plugin exported its entry as data (a Boost.DLL alias holding a pointer);
// calling that symbol would jump into data, so the host checks the symbol's type first.
TEST(PluginRegistry, RefusesAnEntryExportedAsData) {
  PluginRegistry registry;
  const fs::path lib = fixture("fixture-data-entry");
  const std::string message = plugin_error([&] { registry.load(lib); });
  expect_names_load_facts(message, lib);
  EXPECT_TRUE(contains(message, "exports 'tessera_plugin' as data, not as a function")) << message;
  EXPECT_TRUE(contains(message, "rebuild it against this host's SDK")) << message;
  EXPECT_TRUE(registry.plugins().empty());
}

TEST(PluginRegistry, RefusesAnotherAbiMajor) {
  PluginRegistry registry;
  const fs::path lib = fixture("fixture-abi-major-next");
  const std::string message = plugin_error([&] { registry.load(lib); });
  expect_names_load_facts(message, lib);
  const std::string plugin_abi =
      std::to_string(TS_ABI_MAJOR + 1) + "." + std::to_string(TS_ABI_MINOR);
  EXPECT_TRUE(contains(message, "built for plugin ABI " + plugin_abi)) << message;
  EXPECT_TRUE(contains(message, "this host implements ABI " + kHostAbi)) << message;
  EXPECT_TRUE(contains(message, "major versions must be equal")) << message;
  EXPECT_TRUE(registry.plugins().empty());
}

TEST(PluginRegistry, RefusesANewerAbiMinor) {
  PluginRegistry registry;
  const fs::path lib = fixture("fixture-abi-minor-next");
  const std::string message = plugin_error([&] { registry.load(lib); });
  expect_names_load_facts(message, lib);
  const std::string plugin_abi =
      std::to_string(TS_ABI_MAJOR) + "." + std::to_string(TS_ABI_MINOR + 1);
  EXPECT_TRUE(contains(message, "needs plugin ABI " + plugin_abi)) << message;
  EXPECT_TRUE(contains(message, "host features this host lacks")) << message;
  EXPECT_TRUE(registry.plugins().empty());
}

TEST(PluginRegistry, RefusesBadDescriptors) {
  PluginRegistry registry;
  {
    const fs::path lib = fixture("fixture-null-descriptor");
    const std::string message = plugin_error([&] { registry.load(lib); });
    expect_names_load_facts(message, lib);
    EXPECT_TRUE(contains(message, "'tessera_plugin' returned NULL")) << message;
  }
  {
    const fs::path lib = fixture("fixture-small-descriptor");
    const std::string message = plugin_error([&] { registry.load(lib); });
    expect_names_load_facts(message, lib);
    EXPECT_TRUE(contains(message, "descriptor reports struct_size " +
                                      std::to_string(offsetof(ts_plugin_descriptor, n_providers))))
        << message;
    EXPECT_TRUE(contains(message, "smaller than the ABI " + std::to_string(TS_ABI_MAJOR) +
                                      ".0 minimum of " +
                                      std::to_string(sizeof(ts_plugin_descriptor))))
        << message;
  }
  EXPECT_TRUE(registry.plugins().empty());
}

TEST(PluginRegistry, RefusesBadProviderVtables) {
  PluginRegistry registry;
  {
    const fs::path lib = fixture("fixture-null-vtable");
    const std::string message = plugin_error([&] { registry.load(lib); });
    expect_names_load_facts(message, lib);
    EXPECT_TRUE(contains(message, "provider #0 (ffn 'fixture-defective' on cpu) has a NULL vtable"))
        << message;
  }
  {
    const fs::path lib = fixture("fixture-small-vtable");
    const std::string message = plugin_error([&] { registry.load(lib); });
    expect_names_load_facts(message, lib);
    const size_t minimum = offsetof(ts_block_vtable, forward) + sizeof(void*);
    EXPECT_TRUE(contains(
        message, "vtable with struct_size " + std::to_string(offsetof(ts_block_vtable, info))))
        << message;
    EXPECT_TRUE(contains(message, "ABI " + std::to_string(TS_ABI_MAJOR) + ".0 minimum of " +
                                      std::to_string(minimum)))
        << message;
  }
  {
    const fs::path lib = fixture("fixture-missing-forward");
    const std::string message = plugin_error([&] { registry.load(lib); });
    expect_names_load_facts(message, lib);
    EXPECT_TRUE(contains(message, "leaves mandatory functions NULL: forward")) << message;
  }
  EXPECT_TRUE(registry.plugins().empty());
}

TEST(PluginRegistry, RefusesTheSameProviderTwiceInOnePlugin) {
  PluginRegistry registry;
  const fs::path lib = fixture("fixture-dup-provider");
  const std::string message = plugin_error([&] { registry.load(lib); });
  expect_names_load_facts(message, lib);
  EXPECT_TRUE(contains(message, "declares ffn 'fixture-defective' on cpu twice")) << message;
  EXPECT_TRUE(contains(message, "providers #0 and #2")) << message;
}

TEST(PluginRegistry, RefusesAPluginNameLoadedFromAnotherFile) {
  PluginRegistry registry;
  const fs::path first = fixture("fixture-dup-name-a");
  const fs::path second = fixture("fixture-dup-name-b");
  EXPECT_EQ(registry.load(first).name, "fixture-dup-name");
  const std::string message = plugin_error([&] { registry.load(second); });
  expect_names_load_facts(message, second);
  EXPECT_TRUE(contains(message, "plugin name 'fixture-dup-name' is already loaded from '" +
                                    fs::canonical(first).string() + "'"))
      << message;
  ASSERT_EQ(registry.plugins().size(), 1u);
  EXPECT_EQ(registry.plugins()[0].path, fs::canonical(first));
}

TEST(PluginRegistry, OlderSmallerVtableLacksCompactKv) {
  PluginRegistry registry;
  registry.load(fixture("fixture-small-structs"));
  tessera::ProviderRef ref =
      registry.find(TS_KIND_ATTENTION, "fixture-small-attention", TS_DEVICE_CPU);
  const auto* vt = static_cast<const ts_block_vtable*>(ref.provider->vtable);
  EXPECT_LT(vt->struct_size, sizeof(ts_block_vtable));
  // The word past struct_size is poison, not NULL: only struct_size says it is absent.
  EXPECT_NE(reinterpret_cast<const void*>(vt->compact_kv), nullptr);

  ts_block_config config{};
  config.struct_size = sizeof(config);
  config.kind = TS_KIND_ATTENTION;
  config.hidden = 2;
  tessera::Block block(ref, config, "layer 0 attention fixture-small-attention");
  EXPECT_FALSE(block.has_compact_kv());
  EXPECT_TRUE(block.identity());
  ts_kv_layer kv{};
  EXPECT_THROW(block.compact_kv(kv, 0, 0, nullptr, 0), tessera::Error);
}

TEST(PluginRegistry, FindPicksByScoreOrByPluginName) {
  PluginRegistry registry;
  registry.load(fixture("fixture-ffn"));
  registry.load(fixture("fixture-ffn-scored"));

  // Both provide ffn 'fixture-ffn' on cpu: the scored one (5) beats the default (1).
  tessera::ProviderRef best = registry.find(TS_KIND_FFN, "fixture-ffn", TS_DEVICE_CPU);
  EXPECT_EQ(best.plugin_name(), "fixture-ffn-scored");
  EXPECT_EQ(best.score, 5);
  tessera::ProviderRef named =
      registry.find(TS_KIND_FFN, "fixture-ffn", TS_DEVICE_CPU, "fixture-ffn");
  EXPECT_EQ(named.plugin_name(), "fixture-ffn");
  EXPECT_EQ(named.score, 1);

  // Score 0: it cannot run here, and the message says so.
  std::string message =
      plugin_error([&] { registry.find(TS_KIND_FFN, "fixture-unrunnable", TS_DEVICE_CPU); });
  EXPECT_TRUE(contains(message, "no plugin provides ffn 'fixture-unrunnable' on cpu")) << message;
  EXPECT_TRUE(contains(message, "cannot run on this machine (score 0)")) << message;
  EXPECT_TRUE(contains(message, "fixture-ffn-scored")) << message;
}

TEST(PluginRegistry, FindWithoutAMatchListsPluginsProvidersAndPaths) {
  PluginRegistry registry;
  registry.add_search_path(kFixtureDir);
  registry.load(fixture("fixture-ffn"));
  registry.load(fixture("fixture-small-structs"));

  std::string message =
      plugin_error([&] { registry.find(TS_KIND_ATTENTION, "gqa", TS_DEVICE_CUDA); });
  EXPECT_TRUE(contains(message, "no plugin provides attention 'gqa' on cuda")) << message;
  EXPECT_TRUE(contains(message, "fixture-ffn 0.1.0 (" +
                                    fs::canonical(fixture("fixture-ffn")).string() +
                                    "): ffn 'fixture-ffn' on cpu"))
      << message;
  EXPECT_TRUE(contains(message, "attention 'fixture-small-attention' on cpu")) << message;
  EXPECT_TRUE(contains(message, "paths searched:\n  " + fs::canonical(kFixtureDir).string()))
      << message;

  // Right name, wrong device or kind: still nothing.
  EXPECT_THROW(registry.find(TS_KIND_FFN, "fixture-ffn", TS_DEVICE_CUDA), PluginError);
  EXPECT_THROW(registry.find(TS_KIND_ATTENTION, "fixture-ffn", TS_DEVICE_CPU), PluginError);

  // A plugin named (as a manifest would) that is not loaded.
  message = plugin_error(
      [&] { registry.find(TS_KIND_FFN, "fixture-ffn", TS_DEVICE_CPU, "tessera-ffn-missing"); });
  EXPECT_TRUE(contains(message,
                       "plugin 'tessera-ffn-missing', named for ffn 'fixture-ffn' on "
                       "cpu, is not loaded"))
      << message;
  EXPECT_TRUE(contains(message, "loaded plugins:")) << message;
  EXPECT_TRUE(contains(message, "paths searched:")) << message;

  // A loaded plugin that does not provide what was asked of it.
  message = plugin_error(
      [&] { registry.find(TS_KIND_FFN, "fixture-ffn", TS_DEVICE_CPU, "fixture-small-structs"); });
  EXPECT_TRUE(contains(message,
                       "plugin 'fixture-small-structs' does not provide ffn "
                       "'fixture-ffn' on cpu"))
      << message;
}

TEST(PluginRegistry, SearchPathOrder) {
  TempDir a;
  TempDir b;
  TempDir c;
  ScopedEnv env("TESSERA_PLUGIN_PATH", a.path().string() + "::" + b.path().string());
  PluginRegistry registry;
  registry.add_search_path(c.path());
  const std::vector<fs::path> paths = registry.search_paths();
  const fs::path exe_dir = fs::read_symlink("/proc/self/exe").parent_path();
  ASSERT_EQ(paths.size(), 5u);
  EXPECT_EQ(paths[0], fs::canonical(c.path()));
  EXPECT_EQ(paths[1], fs::canonical(a.path()));
  EXPECT_EQ(paths[2], fs::canonical(b.path()));
  EXPECT_EQ(paths[3], fs::weakly_canonical(exe_dir / ".." / "lib" / "tessera" / "plugins"));
  EXPECT_EQ(paths[4], fs::weakly_canonical(exe_dir / "plugins"));
}

TEST(PluginRegistry, LoadAllSkipsBrokenLibrariesOnlyWhenAsked) {
  TempDir links;
  // A second name for a fixture: load_all must load the file once, not report a duplicate.
  fs::create_symlink(fixture("fixture-ffn"), links.path() / "libtessera-alias-of-ffn.so");
  std::ofstream(links.path() / "libtessera-garbage.so") << "not a library";
  std::ofstream(links.path() / "not-a-tessera-name.so") << "ignored: wrong file name";

  ScopedEnv env("TESSERA_PLUGIN_PATH", std::nullopt);
  {
    PluginRegistry registry;
    registry.add_search_path(kFixtureDir);
    EXPECT_THROW(registry.load_all(), PluginError);
  }
  PluginRegistry registry;
  registry.add_search_path(links.path());
  registry.add_search_path(kFixtureDir);
  tessera::set_log_level(tessera::LogLevel::off);  // the skipped libraries are logged
  registry.load_all(/*skip_broken=*/true);
  tessera::set_log_level(tessera::LogLevel::warning);

  auto loaded_from = [&](const std::string& file) {
    for (const tessera::PluginInfo& info : registry.plugins()) {
      if (info.path == fs::canonical(fixture(file))) return true;
    }
    return false;
  };
  // Folders in order: the alias in the first folder loads fixture-ffn, and its
  // real file in the fixture folder is recognised as the same file.
  ASSERT_FALSE(registry.plugins().empty());
  EXPECT_EQ(registry.plugins().front().name, "fixture-ffn");
  for (const char* good :
       {"fixture-ffn", "fixture-ffn-scored", "fixture-small-structs", "fixture-dup-name-a"}) {
    EXPECT_TRUE(loaded_from(good)) << good;
  }
  // Sorted by file name, so dup-name-a came first and dup-name-b is the duplicate.
  for (const char* broken :
       {"fixture-dup-name-b", "fixture-abi-major-next", "fixture-abi-minor-next",
        "fixture-null-descriptor", "fixture-small-descriptor", "fixture-dup-provider",
        "fixture-null-vtable", "fixture-small-vtable", "fixture-missing-forward", "notaplugin"}) {
    EXPECT_FALSE(loaded_from(broken)) << broken;
  }
  EXPECT_NO_THROW(registry.find(TS_KIND_FFN, "fixture-ffn", TS_DEVICE_CPU, "fixture-ffn"));
}

TEST(PluginRegistry, ALibraryTakingABuiltInPluginsNameIsTheOneRefused) {
  // A copy of the built-in FFN plugin under another file name, on a path searched before the
  // built-in folder: the built-in keeps its name and the copy is skipped, named.
  TempDir dir;
  const fs::path builtin = fs::canonical(fs::path(TESSERA_PLUGIN_DIR) / "libtessera-ffn-cpu.so");
  fs::copy_file(builtin, dir.path() / "libtessera-my-ffn.so");
  ScopedEnv env("TESSERA_PLUGIN_PATH", std::nullopt);
  PluginRegistry registry;
  registry.add_search_path(dir.path());
  tessera::set_log_level(tessera::LogLevel::off);
  registry.load_all(/*skip_broken=*/true);
  tessera::set_log_level(tessera::LogLevel::warning);
  const tessera::ProviderRef ffn = registry.find(TS_KIND_FFN, "swiglu", TS_DEVICE_CPU);
  EXPECT_EQ(ffn.plugin_name(), "tessera-ffn-cpu");
  bool listed = false;
  for (const tessera::PluginInfo& info : registry.plugins()) {
    if (info.name == "tessera-ffn-cpu") {
      EXPECT_EQ(info.path, builtin);
      listed = true;
    }
  }
  EXPECT_TRUE(listed);
  ASSERT_EQ(registry.skipped().size(), 1u);
  EXPECT_EQ(registry.skipped()[0].path.filename(), "libtessera-my-ffn.so");
  EXPECT_NE(registry.skipped()[0].error.find("is that of the built-in plugin '" + builtin.string()),
            std::string::npos)
      << registry.skipped()[0].error;
  // Afterwards the libraries are in search order again: nothing from the built-in folder
  // comes before a library of an earlier folder.
  const std::vector<fs::path> paths = registry.search_paths();
  std::vector<std::ptrdiff_t> ranks;
  for (const tessera::PluginInfo& info : registry.plugins())
    ranks.push_back(std::find(paths.begin(), paths.end(), info.path.parent_path()) - paths.begin());
  EXPECT_TRUE(std::is_sorted(ranks.begin(), ranks.end()));
}

TEST(PluginRegistry, LoadAllReadsTheEnvironmentVariable) {
  ScopedEnv env("TESSERA_PLUGIN_PATH", "/nonexistent-tessera-dir:" + kFixtureDir.string());
  PluginRegistry registry;
  tessera::set_log_level(tessera::LogLevel::off);  // the skipped libraries are logged
  registry.load_all(/*skip_broken=*/true);
  tessera::set_log_level(tessera::LogLevel::warning);
  bool found = false;
  for (const tessera::PluginInfo& info : registry.plugins()) found |= info.name == "fixture-ffn";
  EXPECT_TRUE(found);
  const std::string message =
      plugin_error([&] { registry.find(TS_KIND_SEARCH, "nothing", TS_DEVICE_CPU); });
  EXPECT_TRUE(contains(message, "/nonexistent-tessera-dir (does not exist)")) << message;
}
