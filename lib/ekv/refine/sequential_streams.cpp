#include "ekv/refine/sequential_streams.hpp"

#include "ekv/core/error.hpp"
#include "ekv/model/forward.hpp"
#include "ekv/model/tensor_names.hpp"

namespace ekv {

namespace {
std::vector<float> normed(const Matrix& h, const Vector& weight, double eps) {
  Matrix out;
  rms_norm(h, weight, eps, out);
  return flat_values(out);
}
}  // namespace

SequentialStreams::SequentialStreams(const ModelSource& model, const CalibData& header)
    : config_(model.config()), sequences_(int(header.kept.size())), seq_len_(header.seq_len) {
  EKV_CHECK(sequences_ > 0, "sequential calibration needs stored sequences (calib.h5 made with --keep-seqs > 0)");
  EKV_CHECK(header.layer_begin == 0, "sequential calibration starts from the embedding: calib.h5 must begin at layer 0 (it begins at ",
            header.layer_begin, ")");
  const Matrix embedding = model.matrix(kEmbeddingName);
  h_original_.resize(Eigen::Index(sequences_) * seq_len_, config_.hidden);
  for (int s = 0; s < sequences_; ++s) {
    const std::int64_t row = header.kept[std::size_t(s)];
    EKV_CHECK(row >= 0 && std::size_t(row + 1) * std::size_t(seq_len_) <= header.tokens.size(),
              "calib.h5: /kept_sequences names sequence ", row, ", outside /tokens");
    for (int t = 0; t < seq_len_; ++t) {
      const std::int32_t token = header.tokens[std::size_t(row) * std::size_t(seq_len_) + std::size_t(t)];
      EKV_CHECK(token >= 0 && token < config_.vocab, "calib.h5: /tokens holds id ", token, ", outside the vocabulary");
      h_original_.row(Eigen::Index(s) * seq_len_ + t) = embedding.row(token);
    }
  }
  h_compressed_ = h_original_;
}

int SequentialStreams::enter(const LayerWeights& w) {
  ++layer_;
  x_original_ = normed(h_original_, w.attn_norm, config_.norm_eps);
  x_compressed_ = normed(h_compressed_, w.attn_norm, config_.norm_eps);
  return layer_;
}

std::vector<Matrix> SequentialStreams::gap() const {
  std::vector<Matrix> out;
  for (int s = 0; s < sequences_; ++s)
    out.push_back(h_original_.middleRows(Eigen::Index(s) * seq_len_, seq_len_) -
                  h_compressed_.middleRows(Eigen::Index(s) * seq_len_, seq_len_));
  return out;
}

void SequentialStreams::leave(const LayerWeights& w, const Matrix& original_block, const Matrix& compressed_block) {
  EKV_CHECK(original_block.rows() == h_original_.rows() && compressed_block.rows() == h_compressed_.rows(),
            "sequential calibration: block outputs of ", original_block.rows(), " rows for ", h_original_.rows());
  Matrix normed_input, mlp;
  for (Matrix* h : {&h_original_, &h_compressed_}) {
    *h += h == &h_original_ ? original_block : compressed_block;
    rms_norm(*h, w.ffn_norm, config_.norm_eps, normed_input);
    feed_forward(w, normed_input, mlp);
    *h += mlp;
  }
}

}  // namespace ekv
