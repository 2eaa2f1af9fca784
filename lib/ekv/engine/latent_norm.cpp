#include "ekv/engine/latent_norm.hpp"

#include <Eigen/Eigenvalues>
#include <cmath>

#include "ekv/core/error.hpp"

namespace ekv {

LatentNorm linear_latent_norm(const Matrix& a, const Vector& attn_norm, int kv_lora_rank, double eps,
                              double tolerance) {
  EKV_CHECK(a.rows() >= 1 && a.rows() <= kv_lora_rank && a.cols() == attn_norm.size() && eps > 0 && tolerance > 0,
            "latent norm: A is ", a.rows(), "×", a.cols(), " for a norm of ", attn_norm.size(), " and rank ",
            kv_lora_rank);
  // σ_max(A)² is the largest eigenvalue of A Aᵀ (d_kv × d_kv), in fp64.
  const Eigen::MatrixXd a64 = a.cast<double>();
  const Eigen::MatrixXd gram = a64 * a64.transpose();
  const double sigma2 = Eigen::SelfAdjointEigenSolver<Eigen::MatrixXd>(gram, Eigen::EigenvaluesOnly).eigenvalues().maxCoeff();
  const double w2 = attn_norm.cast<double>().array().square().maxCoeff();
  return linear_rms_norm(std::max(sigma2, 0.0) * double(a.cols()) * w2 / double(kv_lora_rank), eps, tolerance);
}

LatentNorm linear_rms_norm(double bound, double eps, double tolerance) {
  EKV_CHECK(bound >= 0 && std::isfinite(bound) && eps > 0 && tolerance > 0, "linear norm: bound ", bound, ", eps ", eps);
  LatentNorm norm;
  norm.bound = bound;
  // The largest power of two with s² · bound ≤ tolerance · eps.
  norm.scale = bound > 0 ? std::exp2(std::floor(0.5 * std::log2(tolerance * eps / bound))) : 1.0;
  norm.weight = std::exp2(std::round(std::log2(std::sqrt(eps) / norm.scale)));
  norm.up_scale = std::sqrt(eps) / (norm.scale * norm.weight);
  norm.max_relative_error = bound * norm.scale * norm.scale / (2 * eps);
  return norm;
}

double input_with_one_bound(const Vector& attn_norm) {
  const double d = double(attn_norm.size());
  return (d * attn_norm.cast<double>().array().square().maxCoeff() + 1.0) / (d + 1.0);
}

}  // namespace ekv
