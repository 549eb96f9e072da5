// Shared pieces of the Hugging Face reader/writer tests: a heterogeneous model DeciLM can
// express (FFN widths that are multiples of 256), a per-test folder, and error checks.
#pragma once

#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <initializer_list>
#include <sstream>
#include <string>
#include <tessera/engine/error.hpp>
#include <tessera/engine/manifest.hpp>
#include <vector>

namespace tessera::test {

// Six layers, each different: gqa with 4 and 1 KV heads, linear attention, no-op attention
// with a wider swiglu, gqa 2 with a linear FFN, gqa (model default 2) with a no-op FFN;
// Llama 3.1 RoPE scaling with a short original context. vocab 640 fits the toy tokenizers.
inline std::string hf_hetero_manifest_text() {
  return R"([model]
name = "hf-hetero"
hidden_size = 64
num_layers = 6
num_heads = 4
head_dim = 16
num_kv_heads = 2
intermediate_size = 256
vocab_size = 640
rope_theta = 10000.0
rope_scaling = { type = "llama3", factor = 8.0, low_freq_factor = 1.0, high_freq_factor = 4.0, original_max_position_embeddings = 16 }
rms_norm_eps = 1e-5
max_seq_len = 64
bos_token_id = 1
eos_token_id = [2, 0]

[weights]
format = "random"
seed = 3

[[layers]]
range = "0"
attention = { kind = "gqa", kv_heads = 4 }
ffn = { kind = "swiglu" }

[[layers]]
range = "1"
attention = { kind = "gqa", kv_heads = 1 }
ffn = { kind = "swiglu", intermediate_size = 512 }

[[layers]]
range = "2"
attention = { kind = "linear" }
ffn = { kind = "swiglu" }

[[layers]]
range = "3"
attention = { kind = "noop" }
ffn = { kind = "swiglu", intermediate_size = 768 }

[[layers]]
range = "4"
attention = { kind = "gqa", kv_heads = 2 }
ffn = { kind = "linear" }

[[layers]]
range = "5"
attention = { kind = "gqa" }
ffn = { kind = "noop" }
)";
}

inline Manifest hf_hetero_manifest() {
  return parse_manifest(hf_hetero_manifest_text(), "hf-hetero.toml", ".");
}

// Every layer as "gqa kv=2 | swiglu w=256", from the parameters the blocks receive, so that
// manifests that say the same thing differently (defaults vs explicit values) compare equal.
inline std::vector<std::string> effective_layers(const Manifest& m) {
  std::vector<std::string> out;
  for (const LayerSpec& layer : m.layers) {
    std::string text = layer.attention.kind;
    if (layer.attention.kind == "gqa") {
      const ParamList p = m.block_params(layer.attention);
      text += " kv=" + std::to_string(std::get<int64_t>(*p.find("kv_heads")));
    }
    text += " | " + layer.ffn.kind;
    if (layer.ffn.kind == "swiglu") {
      const ParamList p = m.block_params(layer.ffn);
      text += " w=" + std::to_string(std::get<int64_t>(*p.find("intermediate_size")));
    }
    out.push_back(text);
  }
  return out;
}

// A fresh folder per test, removed afterwards.
class TempFolderTest : public ::testing::Test {
 protected:
  void SetUp() override {
    const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
    dir_ = std::filesystem::temp_directory_path() /
           ("tessera_" + std::string(info->test_suite_name()) + "_" + info->name() + "_" +
            std::to_string(::getpid()));
    std::filesystem::remove_all(dir_);
    std::filesystem::create_directories(dir_);
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }

  void write_file(const std::filesystem::path& path, const std::string& text) const {
    std::ofstream out(path, std::ios::binary | std::ios::trunc);
    out << text;
    ASSERT_TRUE(out.good()) << path;
  }
  std::string read_file(const std::filesystem::path& path) const {
    std::ifstream in(path, std::ios::binary);
    std::ostringstream text;
    text << in.rdbuf();
    return text.str();
  }
  // The folder's entries, sorted; shows leftovers such as staging folders.
  std::vector<std::string> entries(const std::filesystem::path& folder) const {
    std::vector<std::string> names;
    for (const auto& e : std::filesystem::directory_iterator(folder))
      names.push_back(e.path().filename().string());
    std::sort(names.begin(), names.end());
    return names;
  }

  std::filesystem::path dir_;
};

// Runs `fn`, expecting a tessera::Error whose message holds every one of `parts`.
template <class Fn>
void expect_error_with(Fn&& fn, std::initializer_list<std::string> parts) {
  try {
    fn();
    ADD_FAILURE() << "expected an error mentioning '" << *parts.begin() << "'";
  } catch (const Error& e) {
    const std::string message = e.what();
    for (const std::string& part : parts) {
      EXPECT_NE(message.find(part), std::string::npos)
          << "missing '" << part << "' in: " << message;
    }
  }
}

}  // namespace tessera::test
