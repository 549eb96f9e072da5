#include <tessera/train/plot_axis.hpp>

#include <cmath>
#include <cstdio>

namespace tessera {

namespace {

// 1, 2 or 5 times a power of ten, about range / target.
double nice_step(double range, double target) {
  const double raw = range / target;
  const double magnitude = std::pow(10.0, std::floor(std::log10(raw)));
  const double norm = raw / magnitude;
  const double nice = norm < 1.5 ? 1.0 : norm < 3.0 ? 2.0 : norm < 7.0 ? 5.0 : 10.0;
  return nice * magnitude;
}

}  // namespace

std::vector<double> linear_ticks(double lo, double hi, double target) {
  std::vector<double> ticks;
  if (!(hi > lo)) return ticks;
  const double step = nice_step(hi - lo, target);
  for (double k = std::ceil(lo / step - 1e-9); k * step <= hi + step * 1e-9; k += 1.0) {
    ticks.push_back(k * step);
  }
  return ticks;
}

std::string tick_text(double v) {
  char buffer[32];
  std::snprintf(buffer, sizeof(buffer), "%.6g", v == 0.0 ? 0.0 : v);  // no "-0"
  return buffer;
}

std::string svg_number(double v) {
  char buffer[32];
  std::snprintf(buffer, sizeof(buffer), "%.1f", v);
  return buffer;
}

}  // namespace tessera
