// Corpus files, their tokenising and the token cache.
//
// The cache file, all integers little-endian:
//   "TSTOKEN1"                        8 bytes, the format
//   tokenizer identity, corpus hash   64 + 64 bytes, sha256 hex
//   documents D, tokens T, text bytes 3 x u64
//   D names                           u32 length + bytes each
//   D + 1 offsets                     u64 each
//   T token ids                       i32 each
//   "TSTOKEND"                        8 bytes: a file cut short is never taken for whole
#include <tessera/engine/log.hpp>
#include <tessera/engine/thread_pool.hpp>
#include <tessera/train/corpus.hpp>
#include <tessera/train/digest.hpp>

#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdlib>
#include <fstream>
#include <sstream>
#include <system_error>

namespace fs = std::filesystem;

namespace tessera {

namespace {

constexpr char kMagic[] = "TSTOKEN1";
constexpr char kTrailer[] = "TSTOKEND";
// Changes whenever the way documents are encoded changes (options, the file's layout).
constexpr char kEncodingConvention[] =
    "tessera corpus tokens v1: parse_special=false add_bos=false";

bool glob_match_at(std::string_view p, std::string_view n) {
  while (!p.empty()) {
    if (p.substr(0, 2) == "**") {
      std::string_view rest = p.substr(2);
      // "**/" also matches no folder at all.
      if (!rest.empty() && rest.front() == '/' && glob_match_at(rest.substr(1), n)) return true;
      for (size_t i = 0; i <= n.size(); ++i) {
        if (glob_match_at(rest, n.substr(i))) return true;
      }
      return false;
    }
    if (p.front() == '*') {
      for (size_t i = 0; i <= n.size(); ++i) {
        if (glob_match_at(p.substr(1), n.substr(i))) return true;
        if (i < n.size() && n[i] == '/') break;
      }
      return false;
    }
    if (n.empty()) return false;
    if (p.front() == '?' ? n.front() == '/' : p.front() != n.front()) return false;
    p.remove_prefix(1);
    n.remove_prefix(1);
  }
  return n.empty();
}

bool hidden(const fs::path& relative) {
  for (const fs::path& part : relative) {
    const std::string s = part.string();
    if (s.size() > 1 && s.front() == '.' && s != "..") return true;
  }
  return false;
}

std::string quoted_list(const std::vector<std::string>& items) {
  std::string out = "[";
  for (size_t i = 0; i < items.size(); ++i) out += (i ? ", \"" : "\"") + items[i] + "\"";
  return out + "]";
}

std::string read_file(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw CorpusError("cannot read the corpus file " + path.string());
  std::ostringstream text;
  text << in.rdbuf();
  if (in.bad()) throw CorpusError("cannot read the corpus file " + path.string());
  return std::move(text).str();
}

// ---------------------------------------------------------------- the cache file

class Out {
 public:
  void bytes(const void* data, size_t size) {
    const auto* p = static_cast<const char*>(data);
    buffer_.insert(buffer_.end(), p, p + size);
  }
  void text(std::string_view s) { bytes(s.data(), s.size()); }
  void u32(uint32_t v) { little(v, 4); }
  void u64(uint64_t v) { little(v, 8); }
  const std::vector<char>& data() const { return buffer_; }

 private:
  void little(uint64_t v, int n) {
    for (int i = 0; i < n; ++i) buffer_.push_back(static_cast<char>((v >> (8 * i)) & 0xff));
  }
  std::vector<char> buffer_;
};

// Reads what Out wrote; every read past the end or mismatch makes ok() false.
class In {
 public:
  explicit In(std::string data) : data_(std::move(data)) {}
  bool ok() const { return ok_; }
  bool at_end() const { return pos_ == data_.size(); }
  std::string_view text(size_t n) {
    if (!ok_ || data_.size() - pos_ < n) {
      ok_ = false;
      return {};
    }
    std::string_view out(data_.data() + pos_, n);
    pos_ += n;
    return out;
  }
  uint64_t little(int n) {
    const std::string_view b = text(static_cast<size_t>(n));
    uint64_t v = 0;
    for (size_t i = 0; i < b.size(); ++i) v |= uint64_t{static_cast<uint8_t>(b[i])} << (8 * i);
    return v;
  }
  size_t remaining() const { return data_.size() - pos_; }

 private:
  std::string data_;
  size_t pos_ = 0;
  bool ok_ = true;
};

void write_cache(const fs::path& path, const TokenizedCorpus& corpus) {
  Out out;
  out.text(std::string_view(kMagic, 8));
  out.text(corpus.tokenizer_hash);
  out.text(corpus.corpus_hash);
  out.u64(corpus.names.size());
  out.u64(corpus.tokens.size());
  out.u64(corpus.text_bytes);
  for (const std::string& name : corpus.names) {
    out.u32(static_cast<uint32_t>(name.size()));
    out.text(name);
  }
  for (const uint64_t offset : corpus.offsets) out.u64(offset);
  for (const int32_t id : corpus.tokens) out.u32(static_cast<uint32_t>(id));
  out.text(std::string_view(kTrailer, 8));

  std::error_code ec;
  if (!path.parent_path().empty()) fs::create_directories(path.parent_path(), ec);
  static std::atomic<int> counter{0};
  fs::path partial = path;
  partial += ".partial-" + std::to_string(::getpid()) + "-" + std::to_string(counter++);
  {
    std::ofstream file(partial, std::ios::binary | std::ios::trunc);
    file.write(out.data().data(), static_cast<std::streamsize>(out.data().size()));
    if (!file) {
      fs::remove(partial, ec);
      log(LogLevel::warning, "cannot write the token cache " + partial.string() +
                                 "; the corpus will be tokenised again next time");
      return;
    }
  }
  fs::rename(partial, path, ec);
  if (ec) {
    fs::remove(partial, ec);
    log(LogLevel::warning, "cannot move the token cache into place at " + path.string());
  }
}

// The cached corpus when the file is whole and made for this tokenizer and these documents;
// otherwise nothing, and `note` says why.
std::optional<TokenizedCorpus> read_cache(const fs::path& path, const std::string& tokenizer_hash,
                                          const std::string& corpus_hash, std::string& note) {
  std::error_code ec;
  if (!fs::exists(path, ec)) {
    note = "absent";
    return std::nullopt;
  }
  std::string bytes;
  try {
    bytes = read_file(path);
  } catch (const CorpusError&) {
    note = "unreadable";
    return std::nullopt;
  }
  In in(std::move(bytes));
  if (in.text(8) != std::string_view(kMagic, 8)) {
    note = "not a token cache of this version";
    return std::nullopt;
  }
  TokenizedCorpus c;
  c.tokenizer_hash = std::string(in.text(64));
  c.corpus_hash = std::string(in.text(64));
  if (!in.ok()) {
    note = "cut short";
    return std::nullopt;
  }
  if (c.tokenizer_hash != tokenizer_hash) {
    note = "made for another tokenizer";
    return std::nullopt;
  }
  if (c.corpus_hash != corpus_hash) {
    note = "stale: the corpus' files changed";
    return std::nullopt;
  }
  const uint64_t documents = in.little(8);
  const uint64_t tokens = in.little(8);
  c.text_bytes = in.little(8);
  // Sizes bounded by what the file holds, before anything is allocated from them.
  if (!in.ok() || documents > in.remaining() / 12 || tokens > in.remaining() / 4) {
    note = "corrupt";
    return std::nullopt;
  }
  c.names.reserve(documents);
  for (uint64_t i = 0; i < documents && in.ok(); ++i) {
    const auto length = static_cast<size_t>(in.little(4));
    c.names.emplace_back(in.text(length));
  }
  c.offsets.reserve(documents + 1);
  for (uint64_t i = 0; i <= documents && in.ok(); ++i) c.offsets.push_back(in.little(8));
  c.tokens.reserve(tokens);
  for (uint64_t i = 0; i < tokens && in.ok(); ++i) {
    c.tokens.push_back(static_cast<int32_t>(static_cast<uint32_t>(in.little(4))));
  }
  const bool offsets_ok = in.ok() && c.offsets.front() == 0 && c.offsets.back() == tokens &&
                          std::is_sorted(c.offsets.begin(), c.offsets.end());
  if (!offsets_ok || in.text(8) != std::string_view(kTrailer, 8) || !in.at_end()) {
    note = "corrupt or cut short";
    return std::nullopt;
  }
  return c;
}

}  // namespace

bool glob_match(std::string_view pattern, std::string_view name) {
  return glob_match_at(pattern, name);
}

std::vector<CorpusFile> list_corpus(const CorpusOptions& options) {
  const fs::path& root = options.path;
  std::error_code ec;
  const fs::file_status status = fs::status(root, ec);
  if (root.empty()) throw CorpusError("no corpus path given");
  if (!fs::exists(status)) {
    throw CorpusError("the corpus path " + root.string() +
                      " does not exist (scripts/fetch-corpus.sh fetches the default corpus and "
                      "prints its folder)");
  }
  std::vector<CorpusFile> files;
  if (fs::is_regular_file(status)) {
    files.push_back({root, root.filename().string(), fs::file_size(root, ec)});
    return files;
  }
  if (!fs::is_directory(status)) {
    throw CorpusError("the corpus path " + root.string() + " is neither a file nor a folder");
  }
  size_t seen = 0;
  fs::recursive_directory_iterator it(root, fs::directory_options::skip_permission_denied, ec);
  if (ec) throw CorpusError("cannot list the corpus folder " + root.string() + ": " + ec.message());
  for (; it != fs::recursive_directory_iterator(); it.increment(ec)) {
    if (ec)
      throw CorpusError("cannot list the corpus folder " + root.string() + ": " + ec.message());
    const fs::path relative = it->path().lexically_relative(root);
    if (hidden(relative)) {
      if (it->is_directory(ec)) it.disable_recursion_pending();
      continue;
    }
    if (!it->is_regular_file(ec)) continue;
    ++seen;
    const std::string name = relative.generic_string();
    const std::string file_name = relative.filename().string();
    const bool included =
        std::any_of(options.include.begin(), options.include.end(), [&](const std::string& p) {
          return glob_match(p, p.find('/') == std::string::npos ? file_name : name);
        });
    if (included) files.push_back({it->path(), name, it->file_size(ec)});
  }
  if (files.empty()) {
    throw CorpusError("the corpus folder " + root.string() +
                      " has no file matching include = " + quoted_list(options.include) + " (" +
                      std::to_string(seen) + " files seen, hidden ones skipped)");
  }
  std::sort(files.begin(), files.end(),
            [](const CorpusFile& a, const CorpusFile& b) { return a.name < b.name; });
  return files;
}

std::string tokenizer_identity(const Tokenizer& tokenizer) {
  const TokenizerData& d = tokenizer.data();
  Sha256 h;
  h.add_field(kEncodingConvention);
  h.add_field(d.model);
  h.add_field(to_string(tokenizer.pre_tokenizer()));
  h.add_u64(d.ignore_merges.value_or(false) ? 1 : 0);
  h.add_u64(d.tokens.size());
  for (const std::string& token : d.tokens) h.add_field(token);
  h.add_u64(d.merges.size());
  for (const std::string& merge : d.merges) h.add_field(merge);
  h.add_u64(d.token_types.size());
  for (const int32_t type : d.token_types) h.add_u64(static_cast<uint32_t>(type));
  return h.hex();
}

TokenizedCorpus tokenize_corpus(const std::vector<CorpusFile>& files, const Tokenizer& tokenizer,
                                const TokenizeOptions& options, TokenizeReport* report) {
  const auto start = std::chrono::steady_clock::now();
  TokenizeReport local;
  TokenizeReport& rep = report != nullptr ? *report : local;
  rep = TokenizeReport{};

  // Every non-empty file is a document; its bytes go into the corpus hash.
  std::vector<std::string> texts;
  TokenizedCorpus c;
  Sha256 corpus_hash;
  corpus_hash.add_field(kEncodingConvention);
  for (const CorpusFile& file : files) {
    std::string text = read_file(file.path);
    if (text.empty()) continue;
    corpus_hash.add_field(file.name).add_field(text);
    c.text_bytes += text.size();
    c.names.push_back(file.name);
    texts.push_back(std::move(text));
  }
  if (texts.empty()) {
    throw CorpusError(files.empty()
                          ? std::string("the corpus has no files")
                          : "the corpus has no text: its " + std::to_string(files.size()) +
                                (files.size() == 1 ? " file (" : " files (") +
                                files.front().path.string() +
                                (files.size() == 1 ? ") is" : ", ...) are all") +
                                " empty; expected at least one file with text");
  }
  c.corpus_hash = corpus_hash.hex();
  c.tokenizer_hash = tokenizer_identity(tokenizer);

  if (!options.cache_file.empty()) {
    std::optional<TokenizedCorpus> cached =
        read_cache(options.cache_file, c.tokenizer_hash, c.corpus_hash, rep.cache_note);
    if (cached && cached->names == c.names) {
      rep.from_cache = true;
      rep.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
      return std::move(*cached);
    }
    if (cached) rep.cache_note = "corrupt: its document names differ";
  } else {
    rep.cache_note = "no cache file";
  }

  std::vector<std::vector<int32_t>> encoded(texts.size());
  EncodeOptions encode;
  encode.parse_special = false;
  encode.add_bos = false;
  ThreadPool pool(options.threads);
  pool.parallel_for(static_cast<int64_t>(texts.size()), 1, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) {
      const auto k = static_cast<size_t>(i);
      encoded[k] = tokenizer.encode(texts[k], encode);
    }
  });
  c.offsets.reserve(texts.size() + 1);
  c.offsets.push_back(0);
  size_t total = 0;
  for (const std::vector<int32_t>& ids : encoded) total += ids.size();
  c.tokens.reserve(total);
  for (std::vector<int32_t>& ids : encoded) {
    c.tokens.insert(c.tokens.end(), ids.begin(), ids.end());
    c.offsets.push_back(c.tokens.size());
    std::vector<int32_t>().swap(ids);
  }
  if (!options.cache_file.empty()) write_cache(options.cache_file, c);
  rep.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  return c;
}

fs::path default_token_cache(const CorpusOptions& options, const Tokenizer& tokenizer) {
  fs::path cache;
  if (const char* env = std::getenv("TESSERA_CACHE"); env != nullptr && *env != '\0') {
    cache = env;
  } else {
    const char* home = std::getenv("HOME");
    cache = fs::path(home != nullptr && *home != '\0' ? home : ".") / ".cache" / "tessera";
  }
  std::error_code ec;
  fs::path absolute = fs::absolute(options.path, ec);
  if (ec) absolute = options.path;
  absolute = absolute.lexically_normal();
  Sha256 key;
  key.add_field(absolute.generic_string());
  for (const std::string& pattern : options.include) key.add_field(pattern);
  key.add_field(tokenizer_identity(tokenizer));
  std::string stem = absolute.filename().string();
  if (stem.empty()) stem = absolute.parent_path().filename().string();
  if (stem.empty()) stem = "corpus";
  return cache / "tokens" / (stem + "-" + key.hex().substr(0, 16) + ".tokens");
}

}  // namespace tessera
