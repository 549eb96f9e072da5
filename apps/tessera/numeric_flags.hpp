// CLI11 checks for numeric flags whose messages say what was wrong and what was expected
// ("'ten' is not an integer; expected an integer from 1 to 1048576"), where CLI11's own say
// "Value ten not in range" and print a double's bound with three hundred digits, and where an
// integer too long for its type would otherwise be clamped in silence.
#pragma once

#include <CLI/CLI.hpp>

#include <cstdint>
#include <string>

namespace tessera::cli {

// A whole number in [lo, hi] (no sign on an unsigned range, no fraction, no overflow).
CLI::Validator integer_in(int64_t lo, int64_t hi);
// A whole number in [0, 2^64 - 1] (a seed).
CLI::Validator unsigned_integer();
// A finite number in [lo, hi]; above lo only when lo_open.
CLI::Validator number_in(double lo, double hi, bool lo_open = false);

// "unknown command 'x'; the commands are: a, b, c" when argv's first word that is not an
// option names no subcommand of app; empty otherwise.
std::string unknown_command_message(const CLI::App& app, int argc, char** argv);

}  // namespace tessera::cli
