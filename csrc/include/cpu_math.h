// Vectorisable float helpers shared by the CPU kernels: 16-bit -> float row conversion and an exp
// for non-positive arguments written with plain float/int ops (no -ffast-math needed to vectorise).
#pragma once

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <limits>

#include "fsgen.h"

#if defined(__F16C__)
#include <immintrin.h>
#endif

// Runtime dispatch for the hot per-row CPU functions. The default build is portable (baseline x86-64,
// SSE2 only), so GCC compiles each function marked FSGEN_SIMD_CLONES three times (AVX-512, AVX2+FMA,
// baseline) and the dynamic loader picks the best one the CPU has (an ifunc): a portable wheel keeps
// most of -march=native's speed (bench/native_arch.py, docs/build.md). The inline helpers they call
// are inlined into each clone. A -march=native build (FSGEN_NATIVE_ARCH=1) needs no clones.
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__) && __GNUC__ >= 12 && defined(__linux__) && \
    !defined(FSGEN_NATIVE_ARCH)
#define FSGEN_SIMD_CLONES __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#else
#define FSGEN_SIMD_CLONES
#endif

namespace fsgen {

constexpr int64_t kChunk = 2048;  // row chunk that stays in L1 while it is re-read
constexpr int kLanes = 16;        // independent accumulators: the compiler maps them to SIMD lanes
constexpr float kNegInf = -std::numeric_limits<float>::infinity();

// exp(d) for d <= 0 (d is clamped to [-88, 0]; values below ~-87.3 give exactly 0). Cody-Waite
// range reduction + degree-6 polynomial, ~1 ulp.
inline float exp_nonpos(float d) {
  d = d > -88.0f ? d : -88.0f;
  const float fn = (d * 1.44269504088896341f + 12582912.0f) - 12582912.0f;  // round to nearest
  const float r = (d - fn * 0.693359375f) + fn * 2.12194440e-4f;
  float p = 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  p = p * r * r + r + 1.0f;
  const int32_t n = static_cast<int32_t>(fn);
  const int32_t bits = (n + 127) << 23;  // n = -127 -> 0.0f
  float scale;
  std::memcpy(&scale, &bits, sizeof(scale));
  return p * scale;
}

// Convert n elements of a 16-bit (fp16 / bf16) row to float.
inline void to_float(const void* src, int dtype, int64_t n, float* dst) {
  const uint16_t* s = static_cast<const uint16_t*>(src);
  if (dtype == kBFloat16) {
    for (int64_t i = 0; i < n; ++i) {
      const uint32_t bits = static_cast<uint32_t>(s[i]) << 16;
      std::memcpy(dst + i, &bits, sizeof(float));
    }
    return;
  }
  int64_t i = 0;
#if defined(__F16C__)
  for (; i + 8 <= n; i += 8)
    _mm256_storeu_ps(dst + i, _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(s + i))));
#endif
  for (; i < n; ++i) dst[i] = fp16_to_float(s[i]);
}

// Pointer to n floats of a row starting at element c0: the row itself for fp32, else converted into dst.
inline const float* chunk_as_float(const void* row, int dtype, int64_t c0, int64_t n, float* dst) {
  if (dtype == kFloat32) return static_cast<const float*>(row) + c0;
  to_float(static_cast<const uint16_t*>(row) + c0, dtype, n, dst);
  return dst;
}

}  // namespace fsgen
