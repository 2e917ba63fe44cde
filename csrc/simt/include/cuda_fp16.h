// SIMT emulator stand-in for <cuda_fp16.h>: __half as 16 bits with IEEE round-to-nearest-even
// conversions (the host converters of csrc/include/fsgen.h).
#pragma once

#include <cstdint>

#include "fsgen.h"
#include "simt.h"

struct __half_raw {
  unsigned short x;
};
struct __half {
  unsigned short __x;
  __half() = default;
  __half(__half_raw r) : __x(r.x) {}
  __half(float f) : __x(fsgen::float_to_fp16(f)) {}
  __half(double f) : __x(fsgen::float_to_fp16(static_cast<float>(f))) {}
  operator float() const { return fsgen::fp16_to_float(__x); }
  operator __half_raw() const { return __half_raw{__x}; }
};
struct alignas(4) __half2 {
  __half x, y;
};
inline float __half2float(__half h) { return fsgen::fp16_to_float(h.__x); }
inline __half __float2half(float f) { return __half_raw{fsgen::float_to_fp16(f)}; }
inline __half __float2half_rn(float f) { return __float2half(f); }
inline __half __ushort_as_half(unsigned short u) { return __half_raw{u}; }
inline unsigned short __half_as_ushort(__half h) { return h.__x; }
inline __half2 __floats2half2_rn(float a, float b) { return __half2{__float2half(a), __float2half(b)}; }
inline float __low2float(__half2 h) { return __half2float(h.x); }
inline float __high2float(__half2 h) { return __half2float(h.y); }
inline __half __shfl_sync(unsigned mask, __half v, int src, int width = warpSize) {
  return __ushort_as_half(__shfl_sync(mask, v.__x, src, width));
}
inline __half __shfl_xor_sync(unsigned mask, __half v, int m, int width = warpSize) {
  return __ushort_as_half(__shfl_xor_sync(mask, v.__x, m, width));
}
