// What the hand-written SVG plots share (the loss plot, the Puzzle report's plots): axis ticks
// at round numbers and numbers written as SVG text.
#pragma once

#include <string>
#include <vector>

namespace tessera {

// Ticks at multiples of 1, 2 or 5 times a power of ten, about `target` of them, covering
// [lo, hi]; empty unless hi > lo.
std::vector<double> linear_ticks(double lo, double hi, double target = 5.0);

// A tick's text: up to 6 significant digits, never "-0".
std::string tick_text(double v);

// A coordinate or length with one decimal.
std::string svg_number(double v);

}  // namespace tessera
