#include "numeric_flags.hpp"

#include <charconv>
#include <cmath>
#include <cstdlib>
#include <limits>
#include <sstream>
#include <system_error>

namespace tessera::cli {
namespace {

std::string in_quotes(const std::string& s) {
  return "'" + s + "'";
}

// Shortest text that reads back as v (no 300-digit bounds).
std::string number_text(double v) {
  std::ostringstream out;
  out.precision(std::numeric_limits<double>::max_digits10);
  out << v;
  std::string shortest = out.str();
  for (int digits = 1; digits < std::numeric_limits<double>::max_digits10; ++digits) {
    std::ostringstream o;
    o.precision(digits);
    o << v;
    if (std::strtod(o.str().c_str(), nullptr) == v) return o.str();
  }
  return shortest;
}

template <class T>
std::string check_integer(const std::string& text, T lo, T hi) {
  const std::string expected =
      "expected an integer from " + std::to_string(lo) + " to " + std::to_string(hi);
  T value{};
  const char* end = text.data() + text.size();
  const auto [ptr, ec] = std::from_chars(text.data(), end, value);
  if (text.empty() || ptr != end) {
    // A whole number all the same: too long for the type, or negative for an unsigned one.
    int64_t as_signed = 0;
    const auto [signed_end, signed_ec] = std::from_chars(text.data(), end, as_signed);
    if (!text.empty() && signed_end == end)
      return in_quotes(text) + " is out of range; " + expected;
    return in_quotes(text) + " is not an integer; " + expected;
  }
  if (ec == std::errc::result_out_of_range || value < lo || value > hi)
    return in_quotes(text) + " is out of range; " + expected;
  return {};
}

}  // namespace

CLI::Validator integer_in(int64_t lo, int64_t hi) {
  return CLI::Validator(
      [lo, hi](std::string& text) { return check_integer<int64_t>(text, lo, hi); },
      "INT in [" + std::to_string(lo) + ", " + std::to_string(hi) + "]");
}

CLI::Validator unsigned_integer() {
  return CLI::Validator(
      [](std::string& text) {
        return check_integer<uint64_t>(text, 0, std::numeric_limits<uint64_t>::max());
      },
      "UINT64");
}

CLI::Validator number_in(double lo, double hi, bool lo_open) {
  std::string expected =
      "expected a number " + std::string(lo_open ? "above " : "of at least ") + number_text(lo);
  if (!std::isinf(hi)) expected += " and at most " + number_text(hi);
  return CLI::Validator(
      [=](std::string& text) -> std::string {
        char* end = nullptr;
        const double v = std::strtod(text.c_str(), &end);
        if (text.empty() || end != text.c_str() + text.size() || !std::isfinite(v))
          return in_quotes(text) + " is not a number; " + expected;
        if ((lo_open ? !(v > lo) : !(v >= lo)) || v > hi)
          return in_quotes(text) + " is out of range; " + expected;
        return {};
      },
      "NUMBER");
}

std::string unknown_command_message(const CLI::App& app, int argc, char** argv) {
  for (int i = 1; i < argc; ++i) {
    const std::string word = argv[i];
    if (word.empty() || word[0] == '-') continue;
    std::string names;
    for (const CLI::App* sub : app.get_subcommands({})) {
      if (sub->get_name() == word) return {};
      names += (names.empty() ? "" : ", ") + sub->get_name();
    }
    return "unknown command " + in_quotes(word) + "; the commands are: " + names;
  }
  return {};
}

}  // namespace tessera::cli
