// SIMT emulator stand-in for <cuda_bf16.h>: __nv_bfloat16 as 16 bits with IEEE round-to-nearest-even
// conversions (the host converters of csrc/include/fsgen.h).
#pragma once

#include <cstdint>

#include "cuda_fp16.h"
#include "fsgen.h"
#include "simt.h"

struct __nv_bfloat16_raw {
  unsigned short x;
};
struct __nv_bfloat16 {
  unsigned short __x;
  __nv_bfloat16() = default;
  __nv_bfloat16(__nv_bfloat16_raw r) : __x(r.x) {}
  __nv_bfloat16(float f) : __x(fsgen::float_to_bf16(f)) {}
  __nv_bfloat16(double f) : __x(fsgen::float_to_bf16(static_cast<float>(f))) {}
  operator float() const { return fsgen::bf16_to_float(__x); }
  operator __nv_bfloat16_raw() const { return __nv_bfloat16_raw{__x}; }
};
struct alignas(4) __nv_bfloat162 {
  __nv_bfloat16 x, y;
};
typedef __nv_bfloat16 nv_bfloat16;
typedef __nv_bfloat162 nv_bfloat162;
inline float __bfloat162float(__nv_bfloat16 h) { return fsgen::bf16_to_float(h.__x); }
inline __nv_bfloat16 __float2bfloat16(float f) { return __nv_bfloat16_raw{fsgen::float_to_bf16(f)}; }
inline __nv_bfloat16 __float2bfloat16_rn(float f) { return __float2bfloat16(f); }
inline __nv_bfloat16 __ushort_as_bfloat16(unsigned short u) { return __nv_bfloat16_raw{u}; }
inline unsigned short __bfloat16_as_ushort(__nv_bfloat16 h) { return h.__x; }
