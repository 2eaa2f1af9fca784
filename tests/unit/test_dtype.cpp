// Dequantization of hand-built blocks with planted values, one test per block format.
#include <gtest/gtest.h>

#include <Eigen/Core>
#include <cstring>

#include "ekv/io/dtype.hpp"
#include "expect_error.hpp"

namespace ekv {
namespace {

using Bytes = std::vector<std::byte>;

void put_half(Bytes& b, std::size_t at, float value) {
  const auto bits = Eigen::numext::bit_cast<std::uint16_t>(Eigen::half(value));
  std::memcpy(b.data() + at, &bits, 2);
}

std::vector<float> decode(DType dtype, const Bytes& bytes, std::size_t n) {
  std::vector<float> out(n);
  dequantize(dtype, bytes, out);
  return out;
}

TEST(Dtype, Q4_0) {
  Bytes b(18);
  put_half(b, 0, 0.5f);
  for (int j = 0; j < 16; ++j) b[2 + j] = std::byte((j & 0xF) | ((15 - j) << 4));
  const auto out = decode(DType::q4_0, b, 32);
  for (int j = 0; j < 16; ++j) {
    EXPECT_EQ(out[j], (j - 8) * 0.5f);
    EXPECT_EQ(out[j + 16], (15 - j - 8) * 0.5f);
  }
}

// The fifth bit comes from qh: bit j for element j, bit j + 16 for element j + 16.
TEST(Dtype, Q5_0) {
  Bytes b(22);
  put_half(b, 0, 0.5f);
  const std::uint32_t qh = 0x00010001u | (1u << 31);  // elements 0, 16 and 31
  std::memcpy(b.data() + 2, &qh, 4);
  for (int j = 0; j < 16; ++j) b[6 + j] = std::byte((j & 0xF) | ((15 - j) << 4));
  const auto out = decode(DType::q5_0, b, 32);
  for (int j = 0; j < 16; ++j) {
    EXPECT_EQ(out[j], (j + (j == 0 ? 16 : 0) - 16) * 0.5f) << j;
    EXPECT_EQ(out[j + 16], (15 - j + (j == 0 || j == 15 ? 16 : 0) - 16) * 0.5f) << j;
  }
}

TEST(Dtype, Q5_1) {
  Bytes b(24);
  put_half(b, 0, 0.25f);
  put_half(b, 2, -2.0f);
  const std::uint32_t qh = 1u << 3;  // element 3 only
  std::memcpy(b.data() + 4, &qh, 4);
  for (int j = 0; j < 16; ++j) b[8 + j] = std::byte(j | (j << 4));
  const auto out = decode(DType::q5_1, b, 32);
  for (int j = 0; j < 16; ++j) {
    EXPECT_EQ(out[j], (j + (j == 3 ? 16 : 0)) * 0.25f - 2.0f) << j;
    EXPECT_EQ(out[j + 16], j * 0.25f - 2.0f) << j;
  }
}

TEST(Dtype, IQ4_NL) {
  Bytes b(18);
  put_half(b, 0, 2.0f);
  b[2] = std::byte(0x0F);  // element 0: code 15 (113); element 16: code 0 (-127)
  b[3] = std::byte(0x78);  // element 1: code 8 (1); element 17: code 7 (-10)
  const auto out = decode(DType::iq4_nl, b, 32);
  EXPECT_EQ(out[0], 226.0f);
  EXPECT_EQ(out[16], -254.0f);
  EXPECT_EQ(out[1], 2.0f);
  EXPECT_EQ(out[17], -20.0f);
  EXPECT_EQ(out[2], -254.0f);  // zero bytes are code 0
}

TEST(Dtype, Q4_1) {
  Bytes b(20);
  put_half(b, 0, 0.25f);
  put_half(b, 2, -1.0f);
  for (int j = 0; j < 16; ++j) b[4 + j] = std::byte(j | (3 << 4));
  const auto out = decode(DType::q4_1, b, 32);
  for (int j = 0; j < 16; ++j) {
    EXPECT_EQ(out[j], j * 0.25f - 1.0f);
    EXPECT_EQ(out[j + 16], 3 * 0.25f - 1.0f);
  }
}

TEST(Dtype, Q8_0) {
  Bytes b(34);
  put_half(b, 0, 2.0f);
  for (int j = 0; j < 32; ++j) b[2 + j] = std::byte(std::uint8_t(std::int8_t(j - 16)));
  const auto out = decode(DType::q8_0, b, 32);
  for (int j = 0; j < 32; ++j) EXPECT_EQ(out[j], (j - 16) * 2.0f);
}

TEST(Dtype, Q4_K) {
  // Sub-block scales 1..8 and mins 0..7 (6-bit, packed as GGML does), d = 0.5, dmin = 0.25.
  Bytes b(144);
  put_half(b, 0, 0.5f);
  put_half(b, 2, 0.25f);
  std::uint8_t scales[8], mins[8];
  for (int j = 0; j < 8; ++j) scales[j] = std::uint8_t(j + 1 + (j >= 4 ? 40 : 0)), mins[j] = std::uint8_t(j + (j >= 4 ? 33 : 0));
  std::uint8_t packed[12] = {};
  for (int j = 0; j < 4; ++j) {
    packed[j] = std::uint8_t((scales[j] & 63) | ((scales[j + 4] >> 4) << 6));
    packed[j + 4] = std::uint8_t((mins[j] & 63) | ((mins[j + 4] >> 4) << 6));
    packed[j + 8] = std::uint8_t((scales[j + 4] & 0xF) | ((mins[j + 4] & 0xF) << 4));
  }
  std::memcpy(b.data() + 4, packed, 12);
  for (int i = 0; i < 128; ++i) b[16 + i] = std::byte((i % 16) | (((i + 5) % 16) << 4));
  const auto out = decode(DType::q4_k, b, 256);
  for (int group = 0; group < 4; ++group)
    for (int l = 0; l < 32; ++l) {
      const int i = 32 * group + l;
      const int lo = i % 16, hi = (i + 5) % 16;
      EXPECT_FLOAT_EQ(out[64 * group + l], 0.5f * scales[2 * group] * lo - 0.25f * mins[2 * group]);
      EXPECT_FLOAT_EQ(out[64 * group + 32 + l], 0.5f * scales[2 * group + 1] * hi - 0.25f * mins[2 * group + 1]);
    }
}

TEST(Dtype, Q6_K) {
  // Planted 6-bit values q(i) = i % 64 with scales s(k) = k - 8 and d = 0.125.
  Bytes b(210);
  auto q = [](int i) { return i % 64; };
  for (int half = 0; half < 2; ++half)
    for (int l = 0; l < 32; ++l) {
      const int base = 128 * half;
      const int q1 = q(base + l), q2 = q(base + l + 32), q3 = q(base + l + 64), q4 = q(base + l + 96);
      b[64 * half + l] = std::byte((q1 & 0xF) | ((q3 & 0xF) << 4));
      b[64 * half + l + 32] = std::byte((q2 & 0xF) | ((q4 & 0xF) << 4));
      b[128 + 32 * half + l] = std::byte((q1 >> 4) | ((q2 >> 4) << 2) | ((q3 >> 4) << 4) | ((q4 >> 4) << 6));
    }
  for (int k = 0; k < 16; ++k) b[192 + k] = std::byte(std::uint8_t(std::int8_t(k - 8)));
  put_half(b, 208, 0.125f);
  const auto out = decode(DType::q6_k, b, 256);
  for (int i = 0; i < 256; ++i) {
    const int scale_index = i / 16;  // 16 elements share a scale
    EXPECT_FLOAT_EQ(out[i], 0.125f * float(scale_index - 8) * float(q(i) - 32)) << i;
  }
}

TEST(Dtype, HalfAndBfloatRoundTrip) {
  const std::vector<float> values = {0.0f, 1.0f, -3.5f, 1e-3f, 300.0f};
  for (DType dtype : {DType::f16, DType::bf16, DType::f32}) {
    Bytes encoded(storage_bytes(dtype, values.size()));
    encode_float(dtype, values, encoded);
    const auto back = decode(dtype, encoded, values.size());
    for (std::size_t i = 0; i < values.size(); ++i)
      EXPECT_NEAR(back[i], values[i], std::abs(values[i]) * (dtype == DType::bf16 ? 8e-3 : 1e-3)) << dtype_name(dtype);
  }
}

// An empty tensor (a zero-rank latent) has null data pointers; memcpy(nullptr, nullptr, 0) is
// undefined behaviour that UBSan reported through ekv-export (issue 21).
TEST(Dtype, EmptyTensorsConvertWithoutTouchingPointers) {
  for (DType dtype : {DType::f32, DType::f16, DType::bf16, DType::q4_1}) {
    EXPECT_NO_THROW(dequantize(dtype, std::span<const std::byte>(), std::span<float>())) << dtype_name(dtype);
    if (dtype != DType::q4_1)
      EXPECT_NO_THROW(encode_float(dtype, std::span<const float>(), std::span<std::byte>())) << dtype_name(dtype);
  }
}

TEST(Dtype, SizeErrors) {
  EXPECT_EQ(storage_bytes(DType::q4_1, 64), 40u);
  EXPECT_EQ(storage_bytes(DType::q6_k, 512), 420u);
  EXPECT_EQ(storage_bytes(DType::q5_0, 64), 44u);
  EXPECT_EQ(storage_bytes(DType::q3_k, 256), 110u);
  EXPECT_EKV_ERROR(storage_bytes(DType::q4_k, 100), "not a whole number", "Q4_K");
  std::vector<float> out(32);
  EXPECT_EKV_ERROR(dequantize(DType::q8_0, Bytes(10), out), "Q8_0", "bytes do not hold");
  EXPECT_EKV_ERROR(dequantize(DType::i32, Bytes(128), out), "I32", "cannot be read as weights");
}

TEST(Dtype, GgmlIds) {
  EXPECT_EQ(dtype_from_ggml(3), DType::q4_1);
  EXPECT_EQ(dtype_from_ggml(30), DType::bf16);
  EXPECT_EQ(dtype_from_ggml(13), DType::q5_k);
  EXPECT_EQ(dtype_from_ggml(6), DType::q5_0);
  EXPECT_FALSE(dtype_from_ggml(16).has_value());
  EXPECT_EQ(ggml_type_name(16), "IQ2_XXS");
  EXPECT_EQ(ggml_id(DType::q6_k), 14u);
}

// Issue 30: one traits table. Its GGML ids agree with GGML's own names of the ids, map back to
// the same type, and the list an error prints is the types that have both an id and a decoder.
TEST(Dtype, TheTraitsTableIsOneConsistentSource) {
  const DType all[] = {DType::f32,  DType::f16,  DType::bf16, DType::q4_0, DType::q4_1, DType::q5_0, DType::q5_1,
                       DType::q8_0, DType::iq4_nl, DType::q2_k, DType::q3_k, DType::q4_k, DType::q5_k, DType::q6_k,
                       DType::i8,   DType::i16,  DType::i32,  DType::i64,  DType::u8,   DType::f64};
  std::string readable;
  for (DType d : all) {
    const DTypeInfo& info = dtype_info(d);
    EXPECT_EQ(info.dtype, d);
    if (info.ggml_id >= 0) {
      EXPECT_EQ(ggml_type_name(std::uint32_t(info.ggml_id)), info.name);
      EXPECT_EQ(dtype_from_ggml(std::uint32_t(info.ggml_id)), d);
      EXPECT_EQ(ggml_id(d), std::uint32_t(info.ggml_id));
      if (info.decode) readable += (readable.empty() ? "" : ", ") + std::string(info.name);
    } else {
      EXPECT_EKV_ERROR(ggml_id(d), "has no GGML id");
    }
    EXPECT_EQ(storage_bytes(d, info.block_elements * 3), info.block_bytes * 3);
  }
  EXPECT_EQ(supported_ggml_types(), readable);
  EXPECT_EQ(supported_ggml_types(), "F32, F16, BF16, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, IQ4_NL, Q2_K, Q3_K, Q4_K, Q5_K, Q6_K");
  EXPECT_FALSE(dtype_from_ggml(17).has_value());  // IQ2_XS: named, not read
  EXPECT_EQ(ggml_type_name(17), "IQ2_XS");
}

}  // namespace
}  // namespace ekv
