#include "ekv/io/dtype.hpp"

#include <Eigen/Core>
#include <algorithm>
#include <array>
#include <cmath>
#include <cstring>
#include <vector>

#include "ekv/core/error.hpp"

namespace ekv {

namespace {


// GGML's names of its type ids (ggml.h, enum ggml_type), index = id: what an error names for an
// id ekv does not read (IQ2_XS, TQ1_0, ...). The ids ekv reads are in kTraits.
constexpr std::array<std::string_view, 40> kGgmlNames = {
    "F32",   "F16",  "Q4_0", "Q4_1",  "Q4_2", "Q4_3",    "Q5_0",    "Q5_1",    "Q8_0",   "Q8_1",
    "Q2_K",  "Q3_K", "Q4_K", "Q5_K",  "Q6_K", "Q8_K",    "IQ2_XXS", "IQ2_XS",  "IQ3_XXS", "IQ1_S",
    "IQ4_NL", "IQ3_S", "IQ2_S", "IQ4_XS", "I8", "I16",    "I32",     "I64",     "F64",    "IQ1_M",
    "BF16",  "Q4_0_4_4", "Q4_0_4_8", "Q4_0_8_8", "TQ1_0", "TQ2_0", "IQ4_NL_4_4", "IQ4_NL_4_8",
    "IQ4_NL_8_8", "MXFP4"};

float half_to_float(const std::byte* p) {
  std::uint16_t bits;
  std::memcpy(&bits, p, 2);
  return static_cast<float>(Eigen::numext::bit_cast<Eigen::half>(bits));
}

float bf16_to_float(const std::byte* p) {
  std::uint16_t bits;
  std::memcpy(&bits, p, 2);
  std::uint32_t wide = std::uint32_t(bits) << 16;
  float value;
  std::memcpy(&value, &wide, 4);
  return value;
}

std::uint8_t byte_at(const std::byte* p, std::size_t i) { return std::to_integer<std::uint8_t>(p[i]); }

// Q4_0: d (f16), 16 bytes of nibbles; element j is low nibble of byte j, element j+16 the high.
void dequant_q4_0(const std::byte* block, float* out) {
  const float d = half_to_float(block);
  const std::byte* qs = block + 2;
  for (int j = 0; j < 16; ++j) {
    out[j] = float(int(byte_at(qs, j) & 0x0F) - 8) * d;
    out[j + 16] = float(int(byte_at(qs, j) >> 4) - 8) * d;
  }
}

// Q4_1: d, m (f16), 16 bytes of nibbles; value = q * d + m.
void dequant_q4_1(const std::byte* block, float* out) {
  const float d = half_to_float(block);
  const float m = half_to_float(block + 2);
  const std::byte* qs = block + 4;
  for (int j = 0; j < 16; ++j) {
    out[j] = float(byte_at(qs, j) & 0x0F) * d + m;
    out[j + 16] = float(byte_at(qs, j) >> 4) * d + m;
  }
}

// The fifth bit of element j of a Q5_0/Q5_1 block: bit j of the 32-bit little-endian qh.
int fifth_bit(const std::byte* qh, int j) { return (byte_at(qh, std::size_t(j / 8)) >> (j % 8)) & 1; }

// Q5_0: d (f16), qh (32 fifth bits), 16 bytes of nibbles laid out as in Q4_0; value = (q - 16) * d.
void dequant_q5_0(const std::byte* block, float* out) {
  const float d = half_to_float(block);
  const std::byte* qh = block + 2;
  const std::byte* qs = block + 6;
  for (int j = 0; j < 16; ++j) {
    out[j] = float(int((byte_at(qs, j) & 0x0F) | fifth_bit(qh, j) << 4) - 16) * d;
    out[j + 16] = float(int((byte_at(qs, j) >> 4) | fifth_bit(qh, j + 16) << 4) - 16) * d;
  }
}

// Q5_1: d, m (f16), qh, 16 bytes of nibbles; value = q * d + m.
void dequant_q5_1(const std::byte* block, float* out) {
  const float d = half_to_float(block);
  const float m = half_to_float(block + 2);
  const std::byte* qh = block + 4;
  const std::byte* qs = block + 8;
  for (int j = 0; j < 16; ++j) {
    out[j] = float((byte_at(qs, j) & 0x0F) | fifth_bit(qh, j) << 4) * d + m;
    out[j + 16] = float((byte_at(qs, j) >> 4) | fifth_bit(qh, j + 16) << 4) * d + m;
  }
}

// IQ4_NL: d (f16), 16 bytes of nibbles (Q4_0 layout) indexing a fixed non-linear codebook.
void dequant_iq4_nl(const std::byte* block, float* out) {
  static constexpr std::array<std::int8_t, 16> kCodebook = {-127, -104, -83, -65, -49, -35, -22, -10,
                                                            1,    13,   25,  38,  53,  69,  89,  113};
  const float d = half_to_float(block);
  const std::byte* qs = block + 2;
  for (int j = 0; j < 16; ++j) {
    out[j] = d * float(kCodebook[byte_at(qs, j) & 0x0F]);
    out[j + 16] = d * float(kCodebook[byte_at(qs, j) >> 4]);
  }
}

// Q8_0: d (f16), 32 signed bytes.
void dequant_q8_0(const std::byte* block, float* out) {
  const float d = half_to_float(block);
  for (int j = 0; j < 32; ++j) out[j] = float(static_cast<std::int8_t>(byte_at(block + 2, j))) * d;
}

// Q4_K: d, dmin (f16), 12 bytes packing eight 6-bit (scale, min) pairs, 128 bytes of nibbles.
// Each 64-element group uses two pairs: one for the low nibbles, one for the high.
void scale_min_k4(int j, const std::byte* scales, std::uint8_t& scale, std::uint8_t& min) {
  if (j < 4) {
    scale = byte_at(scales, j) & 63;
    min = byte_at(scales, j + 4) & 63;
  } else {
    scale = (byte_at(scales, j + 4) & 0x0F) | ((byte_at(scales, j - 4) >> 6) << 4);
    min = (byte_at(scales, j + 4) >> 4) | ((byte_at(scales, j) >> 6) << 4);
  }
}

void dequant_q4_k(const std::byte* block, float* out) {
  const float d = half_to_float(block);
  const float dmin = half_to_float(block + 2);
  const std::byte* scales = block + 4;
  const std::byte* qs = block + 16;
  for (int group = 0; group < 4; ++group) {
    std::uint8_t scale, min;
    scale_min_k4(2 * group, scales, scale, min);
    const float d1 = d * scale, m1 = dmin * min;
    scale_min_k4(2 * group + 1, scales, scale, min);
    const float d2 = d * scale, m2 = dmin * min;
    for (int l = 0; l < 32; ++l) out[l] = d1 * float(byte_at(qs, l) & 0x0F) - m1;
    for (int l = 0; l < 32; ++l) out[32 + l] = d2 * float(byte_at(qs, l) >> 4) - m2;
    out += 64;
    qs += 32;
  }
}

// Q5_K: d, dmin (f16), 12 scale bytes as in Q4_K, 32 bytes of fifth bits, 128 bytes of nibbles.
// Group g (64 elements) takes its fifth bits from bits 2g (low nibbles) and 2g + 1 (high) of qh.
void dequant_q5_k(const std::byte* block, float* out) {
  const float d = half_to_float(block);
  const float dmin = half_to_float(block + 2);
  const std::byte* scales = block + 4;
  const std::byte* qh = block + 16;
  const std::byte* qs = block + 48;
  for (int group = 0; group < 4; ++group) {
    std::uint8_t scale, min;
    scale_min_k4(2 * group, scales, scale, min);
    const float d1 = d * scale, m1 = dmin * min;
    scale_min_k4(2 * group + 1, scales, scale, min);
    const float d2 = d * scale, m2 = dmin * min;
    const int low_bit = 1 << (2 * group), high_bit = 2 << (2 * group);
    for (int l = 0; l < 32; ++l)
      out[l] = d1 * float((byte_at(qs, l) & 0x0F) + ((byte_at(qh, l) & low_bit) ? 16 : 0)) - m1;
    for (int l = 0; l < 32; ++l)
      out[32 + l] = d2 * float((byte_at(qs, l) >> 4) + ((byte_at(qh, l) & high_bit) ? 16 : 0)) - m2;
    out += 64;
    qs += 32;
  }
}

// Q2_K: 16 scale bytes (low nibble scale, high nibble min), 64 bytes of 2-bit values, d, dmin
// (f16). Each half (128 elements) reads 32 bytes four times at shifts 0, 2, 4, 6; each read
// covers two 16-element sub-blocks with their own scale byte.
void dequant_q2_k(const std::byte* block, float* out) {
  const std::byte* scales = block;
  const std::byte* qs = block + 16;
  const float d = half_to_float(block + 80);
  const float dmin = half_to_float(block + 82);
  int sub = 0;
  for (int half = 0; half < 2; ++half) {
    for (int shift = 0; shift < 8; shift += 2)
      for (int part = 0; part < 2; ++part) {
        const std::uint8_t sc = byte_at(scales, std::size_t(sub++));
        const float dl = d * float(sc & 0x0F), ml = dmin * float(sc >> 4);
        for (int l = 0; l < 16; ++l) *out++ = dl * float((byte_at(qs, std::size_t(16 * part + l)) >> shift) & 3) - ml;
      }
    qs += 32;
  }
}

// Q3_K: 32 bytes of high-bit masks, 64 bytes of 2-bit values, 12 bytes packing sixteen 6-bit
// scales (offset by 32), d (f16). Same walk as Q2_K; an unset mask bit subtracts 4.
void dequant_q3_k(const std::byte* block, float* out) {
  const std::byte* hmask = block;
  const std::byte* qs = block + 32;
  const std::byte* packed = block + 96;
  const float d = half_to_float(block + 108);
  std::array<int, 16> scale{};
  for (int i = 0; i < 16; ++i) {
    const int low = i < 8 ? (byte_at(packed, std::size_t(i)) & 0x0F) : (byte_at(packed, std::size_t(i - 8)) >> 4);
    const int high = (byte_at(packed, std::size_t(8 + i % 4)) >> (2 * (i / 4))) & 3;
    scale[std::size_t(i)] = (low | high << 4) - 32;
  }
  int sub = 0, mask = 1;
  for (int half = 0; half < 2; ++half) {
    for (int shift = 0; shift < 8; shift += 2, mask <<= 1)
      for (int part = 0; part < 2; ++part) {
        const float dl = d * float(scale[std::size_t(sub++)]);
        for (int l = 0; l < 16; ++l) {
          const std::size_t i = std::size_t(16 * part + l);
          const int q = int((byte_at(qs, i) >> shift) & 3) - ((byte_at(hmask, i) & mask) ? 0 : 4);
          *out++ = dl * float(q);
        }
      }
    qs += 32;
  }
}

// Q6_K: 128 bytes of low nibbles, 64 bytes of 2-bit highs, 16 int8 scales, d (f16).
void dequant_q6_k(const std::byte* block, float* out) {
  const std::byte* ql = block;
  const std::byte* qh = block + 128;
  const std::byte* sc = block + 192;
  const float d = half_to_float(block + 208);
  auto scale = [&](int i) { return float(static_cast<std::int8_t>(byte_at(sc, i))); };
  for (int half = 0; half < 2; ++half) {
    for (int l = 0; l < 32; ++l) {
      const int is = l / 16;
      const int h = byte_at(qh, l);
      const int q1 = int((byte_at(ql, l) & 0x0F) | ((h >> 0) & 3) << 4) - 32;
      const int q2 = int((byte_at(ql, l + 32) & 0x0F) | ((h >> 2) & 3) << 4) - 32;
      const int q3 = int((byte_at(ql, l) >> 4) | ((h >> 4) & 3) << 4) - 32;
      const int q4 = int((byte_at(ql, l + 32) >> 4) | ((h >> 6) & 3) << 4) - 32;
      out[l] = d * scale(is + 0) * float(q1);
      out[l + 32] = d * scale(is + 2) * float(q2);
      out[l + 64] = d * scale(is + 4) * float(q3);
      out[l + 96] = d * scale(is + 6) * float(q4);
    }
    out += 128;
    ql += 64;
    qh += 32;
    sc += 8;
  }
}

void decode_f16(const std::byte* p, float* out) { *out = half_to_float(p); }
void decode_bf16(const std::byte* p, float* out) { *out = bf16_to_float(p); }

// `blocks` blocks of a type through its one-block decoder (a template argument, so it inlines).
template <void (*Block)(const std::byte*, float*), std::size_t Elements, std::size_t Bytes>
void decode_blocks(const std::byte* src, float* dst, std::size_t blocks) {
  for (std::size_t b = 0; b < blocks; ++b) Block(src + b * Bytes, dst + b * Elements);
}

void decode_f32(const std::byte* src, float* dst, std::size_t blocks) { std::memcpy(dst, src, blocks * 4); }

#define EKV_BLOCKS(decoder, elements, bytes) elements, bytes, decode_blocks<decoder, elements, bytes>

// Every element type ekv knows, once: name, block shape, GGML id, decoder. The lists of
// supported types, the id maps and the size rules all derive from it.
constexpr DTypeInfo kTraits[] = {
    {DType::f32, "F32", 1, 4, decode_f32, 0},
    {DType::f16, "F16", EKV_BLOCKS(decode_f16, 1, 2), 1},
    {DType::bf16, "BF16", EKV_BLOCKS(decode_bf16, 1, 2), 30},
    {DType::q4_0, "Q4_0", EKV_BLOCKS(dequant_q4_0, 32, 18), 2},
    {DType::q4_1, "Q4_1", EKV_BLOCKS(dequant_q4_1, 32, 20), 3},
    {DType::q5_0, "Q5_0", EKV_BLOCKS(dequant_q5_0, 32, 22), 6},
    {DType::q5_1, "Q5_1", EKV_BLOCKS(dequant_q5_1, 32, 24), 7},
    {DType::q8_0, "Q8_0", EKV_BLOCKS(dequant_q8_0, 32, 34), 8},
    {DType::iq4_nl, "IQ4_NL", EKV_BLOCKS(dequant_iq4_nl, 32, 18), 20},
    {DType::q2_k, "Q2_K", EKV_BLOCKS(dequant_q2_k, 256, 84), 10},
    {DType::q3_k, "Q3_K", EKV_BLOCKS(dequant_q3_k, 256, 110), 11},
    {DType::q4_k, "Q4_K", EKV_BLOCKS(dequant_q4_k, 256, 144), 12},
    {DType::q5_k, "Q5_K", EKV_BLOCKS(dequant_q5_k, 256, 176), 13},
    {DType::q6_k, "Q6_K", EKV_BLOCKS(dequant_q6_k, 256, 210), 14},
    {DType::i8, "I8", 1, 1, nullptr, 24},
    {DType::i16, "I16", 1, 2, nullptr, 25},
    {DType::i32, "I32", 1, 4, nullptr, 26},
    {DType::i64, "I64", 1, 8, nullptr, 27},
    {DType::u8, "U8", 1, 1, nullptr, -1},
    {DType::f64, "F64", 1, 8, nullptr, 28},
};
#undef EKV_BLOCKS

}  // namespace

const DTypeInfo& dtype_info(DType dtype) {
  for (const auto& info : kTraits)
    if (info.dtype == dtype) return info;
  fail("internal: unknown dtype");
}

std::string supported_ggml_types() {
  std::string names;
  for (const auto& info : kTraits)
    if (info.ggml_id >= 0 && info.decode) names += (names.empty() ? "" : ", ") + std::string(info.name);
  return names;
}

std::string_view dtype_name(DType dtype) { return dtype_info(dtype).name; }

std::optional<DType> dtype_from_ggml(std::uint32_t id) {
  for (const auto& info : kTraits)
    if (info.ggml_id >= 0 && std::uint32_t(info.ggml_id) == id) return info.dtype;
  return std::nullopt;
}

std::string_view ggml_type_name(std::uint32_t id) { return id < kGgmlNames.size() ? kGgmlNames[id] : "unknown"; }

std::uint32_t ggml_id(DType dtype) {
  const DTypeInfo& info = dtype_info(dtype);
  EKV_CHECK(info.ggml_id >= 0, "dtype ", info.name, " has no GGML id");
  return std::uint32_t(info.ggml_id);
}

std::optional<DType> dtype_from_safetensors(std::string_view name) {
  for (const auto& info : kTraits)
    if (info.block_elements == 1 && info.name == name) return info.dtype;
  return std::nullopt;
}

std::string_view safetensors_name(DType dtype) {
  const DTypeInfo& info = dtype_info(dtype);
  EKV_CHECK(info.block_elements == 1, "dtype ", info.name, " cannot be stored in safetensors");
  return info.name;
}

std::size_t storage_bytes(DType dtype, std::uint64_t elements) {
  const DTypeInfo& info = dtype_info(dtype);
  EKV_CHECK(elements % info.block_elements == 0, elements, " elements are not a whole number of ", info.name,
            " blocks of ", info.block_elements);
  std::uint64_t bytes = 0;
  EKV_CHECK(!__builtin_mul_overflow(elements / info.block_elements, info.block_bytes, &bytes),
            "tensor size overflows: ", elements, " elements of ", info.name);
  return std::size_t(bytes);
}

void dequantize(DType dtype, std::span<const std::byte> src, std::span<float> dst) {
  const DTypeInfo& info = dtype_info(dtype);
  EKV_CHECK(info.decode, "dtype ", info.name, " cannot be read as weights");
  EKV_CHECK(src.size() == storage_bytes(dtype, dst.size()), "dequantize ", info.name, ": ", src.size(),
            " bytes do not hold ", dst.size(), " elements");
  if (dst.empty()) return;  // an empty tensor's spans may hold null pointers, which memcpy must not see
  info.decode(src.data(), dst.data(), dst.size() / info.block_elements);
}

void encode_in_slices(DType dtype, std::span<const float> values,
                      const std::function<void(std::span<const std::byte>)>& sink) {
  constexpr std::size_t kSlice = std::size_t(1) << 20;
  std::vector<std::byte> encoded;
  for (std::size_t first = 0; first < values.size(); first += kSlice) {
    const std::span<const float> slice = values.subspan(first, std::min(kSlice, values.size() - first));
    encoded.resize(storage_bytes(dtype, slice.size()));
    encode_float(dtype, slice, encoded);
    sink(encoded);
  }
}

void encode_float(DType dtype, std::span<const float> src, std::span<std::byte> dst) {
  EKV_CHECK(dst.size() == storage_bytes(dtype, src.size()), "encode: size mismatch");
  if (src.empty()) return;  // null pointers of an empty tensor must not reach memcpy
  switch (dtype) {
    case DType::f32: std::memcpy(dst.data(), src.data(), src.size() * 4); return;
    case DType::f16:
      for (std::size_t i = 0; i < src.size(); ++i) {
        const std::uint16_t bits = Eigen::numext::bit_cast<std::uint16_t>(Eigen::half(src[i]));
        std::memcpy(dst.data() + 2 * i, &bits, 2);
      }
      return;
    case DType::bf16:
      for (std::size_t i = 0; i < src.size(); ++i) {
        const std::uint16_t bits = Eigen::numext::bit_cast<std::uint16_t>(Eigen::bfloat16(src[i]));
        std::memcpy(dst.data() + 2 * i, &bits, 2);
      }
      return;
    case DType::q8_0:
      // Blocks of 32: an f16 scale d = max|x| / 127 and 32 int8 round(x / d), rounded half away
      // from zero as llama.cpp's reference quantizer does (x times 1/d, with 1/d from the f32 d).
      for (std::size_t block = 0; block < src.size() / 32; ++block) {
        const float* x = src.data() + 32 * block;
        float amax = 0;
        for (int i = 0; i < 32; ++i) amax = std::max(amax, std::abs(x[i]));
        const float d = amax / 127.0f, id = d != 0.0f ? 1.0f / d : 0.0f;
        std::byte* out = dst.data() + 34 * block;
        const std::uint16_t bits = Eigen::numext::bit_cast<std::uint16_t>(Eigen::half(d));
        std::memcpy(out, &bits, 2);
        for (int i = 0; i < 32; ++i) out[2 + i] = std::byte(std::int8_t(std::round(x[i] * id)));
      }
      return;
    default: fail(cat("cannot encode into ", dtype_name(dtype)));
  }
}

void round_to_dtype(DType dtype, std::span<float> values) {
  if (dtype == DType::f32 || values.empty()) return;
  std::vector<std::byte> stored(storage_bytes(dtype, values.size()));
  encode_float(dtype, values, stored);
  dequantize(dtype, stored, values);
}

}  // namespace ekv
