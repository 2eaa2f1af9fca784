// Element types of tensors in model files (GGML block-quantized types and plain floats),
// their storage sizes, and dequantization to fp32.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <optional>
#include <span>
#include <string>
#include <string_view>

namespace ekv {

enum class DType {
  f32, f16, bf16,        // plain floats (GGUF and safetensors)
  q4_0, q4_1, q5_0, q5_1, q8_0, iq4_nl,  // 32-element GGML blocks
  q2_k, q3_k, q4_k, q5_k, q6_k,          // 256-element GGML k-quant super-blocks
  i8, i16, i32, i64, u8,  // safetensors integers: readable for ekv-info, not as weights
  f64,
};

// One row of the traits table (dtype.cpp): everything ekv knows of an element type.
struct DTypeInfo {
  DType dtype;
  std::string_view name;       // "Q4_1", "F32" (safetensors uses the same names for plain types)
  std::size_t block_elements;  // elements per block (1 for plain types)
  std::size_t block_bytes;     // bytes per block
  void (*decode)(const std::byte* src, float* dst, std::size_t blocks);  // null: not readable as weights
  std::int32_t ggml_id;        // the id in GGUF tensor infos; -1: none
};

const DTypeInfo& dtype_info(DType dtype);
std::string_view dtype_name(DType dtype);
std::string supported_ggml_types();  // "F32, F16, BF16, Q4_0, ...": the GGML types ekv reads

// GGML type ids as stored in GGUF tensor infos. Known but unsupported ids (IQ2_XS, TQ1_0, ...)
// return nullopt and the caller reports the id and its GGML name.
std::optional<DType> dtype_from_ggml(std::uint32_t ggml_type);
std::string_view ggml_type_name(std::uint32_t ggml_type);  // "IQ2_XS", or "unknown"
std::uint32_t ggml_id(DType dtype);

// safetensors dtype strings ("F32", "BF16", ...).
std::optional<DType> dtype_from_safetensors(std::string_view name);
std::string_view safetensors_name(DType dtype);

// Bytes for `elements` values; fails when elements is not a whole number of blocks or the
// size overflows.
std::size_t storage_bytes(DType dtype, std::uint64_t elements);

// Decodes src (storage_bytes(dtype, dst.size()) bytes) into dst.
void dequantize(DType dtype, std::span<const std::byte> src, std::span<float> dst);

// Encodes `values` into `dtype` 2^20 values at a time (a whole number of blocks of every type),
// handing each slice's bytes to `sink`: a writer never holds a second copy of a large tensor (a
// 7B embedding is 500 MB in f32).
void encode_in_slices(DType dtype, std::span<const float> values,
                      const std::function<void(std::span<const std::byte>)>& sink);

// Encodes fp32 into a plain float type (f32, f16, bf16; round to nearest even) or Q8_0 (as
// llama.cpp's reference quantizer).
void encode_float(DType dtype, std::span<const float> src, std::span<std::byte> dst);

// Replaces each value by what `dtype` stores for it (bf16/f16: rounded; f32: unchanged), so a
// computation on `values` sees what a reader of the written file sees.
void round_to_dtype(DType dtype, std::span<float> values);

}  // namespace ekv
