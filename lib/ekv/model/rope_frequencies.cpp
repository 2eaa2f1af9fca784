#include "ekv/model/rope_frequencies.hpp"

#include <cmath>
#include <numbers>

#include "ekv/core/error.hpp"

namespace ekv {

std::vector<double> rope_frequencies(const ModelConfig& config) {
  const int chunks = config.chunks();
  std::vector<double> omega(static_cast<std::size_t>(chunks));
  for (int c = 0; c < chunks; ++c) omega[std::size_t(c)] = std::pow(config.rope_theta, -2.0 * c / config.head_dim);
  const RopeScaling& s = config.rope_scaling;
  if (s.kind == "linear") {
    for (auto& w : omega) w /= s.factor;
  } else if (s.kind == "factors") {
    EKV_CHECK(s.factors.size() == omega.size(), "RoPE frequency factors: ", s.factors.size(), " for ", chunks,
              " chunks");
    for (std::size_t c = 0; c < omega.size(); ++c) omega[c] /= s.factors[c];
  } else if (s.kind == "llama3") {
    // Long wavelengths are slowed by `factor`, short ones kept, the band between interpolated.
    const double low_wavelength = double(s.original_max_position) / s.low_freq_factor;
    const double high_wavelength = double(s.original_max_position) / s.high_freq_factor;
    for (auto& w : omega) {
      const double wavelength = 2 * std::numbers::pi / w;
      if (wavelength < high_wavelength) continue;
      if (wavelength > low_wavelength) {
        w /= s.factor;
      } else {
        const double smooth = (double(s.original_max_position) / wavelength - s.low_freq_factor) /
                              (s.high_freq_factor - s.low_freq_factor);
        w = (1 - smooth) * w / s.factor + smooth * w;
      }
    }
  } else {
    EKV_CHECK(s.kind == "none", "RoPE scaling ", s.kind, " is not supported");
  }
  return omega;
}

RopeTable::RopeTable(const std::vector<double>& frequencies, std::int64_t positions)
    : chunks_(int(frequencies.size())), positions_(positions) {
  cos_.resize(std::size_t(positions) * frequencies.size());
  sin_.resize(cos_.size());
  for (std::int64_t m = 0; m < positions; ++m)
    for (int c = 0; c < chunks_; ++c) {
      const double angle = double(m) * frequencies[std::size_t(c)];
      cos_[std::size_t(m * chunks_ + c)] = float(std::cos(angle));
      sin_[std::size_t(m * chunks_ + c)] = float(std::sin(angle));
    }
}

void rotate_half_inplace(float* head, int chunks, const float* cos, const float* sin) {
  for (int c = 0; c < chunks; ++c) {
    const float a = head[c], b = head[c + chunks];
    head[c] = a * cos[c] - b * sin[c];
    head[c + chunks] = b * cos[c] + a * sin[c];
  }
}

}  // namespace ekv
