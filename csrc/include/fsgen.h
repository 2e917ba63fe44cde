// Shared declarations for the fsgen_engine native extension.
//
// Tensors cross the Python/C++ boundary as raw device or host pointers (uintptr_t) plus sizes and
// strides; the Python wrappers in fsgen_engine/ops validate shapes, dtypes, devices and strides
// before calling in, so the kernels here trust their arguments.
#pragma once

#include <pybind11/pybind11.h>

#include <cstdint>
#include <cstring>
#include <functional>
#include <vector>

namespace fsgen {

namespace py = pybind11;

// dtype codes used by every entry point (see fsgen_engine/ops/_native.py: DTYPE_CODES).
enum DType : int { kFloat32 = 0, kFloat16 = 1, kBFloat16 = 2 };

// Each source file registers its functions through a static Registrar, so adding an op never
// means editing a central binding list.
using RegisterFn = std::function<void(py::module_&)>;
std::vector<RegisterFn>& registry();
struct Registrar {
  explicit Registrar(RegisterFn fn) { registry().push_back(std::move(fn)); }
};

// FSGEN_DEF(fn, doc, py::arg("a"), ...): bind `fn` under its own name, keyword arguments only (the
// names come from op_args.h), so a caller can never shift one of the many integer arguments.
#define FSGEN_DEF(fn, doc, ...)                                                                      \
  ::fsgen::Registrar fsgen_registrar_##fn([](::fsgen::py::module_& m) {                              \
    m.def(#fn, &fn, doc, ::fsgen::py::kw_only(), __VA_ARGS__);                                       \
  })

template <typename T>
inline T* ptr(std::uintptr_t p) {
  return reinterpret_cast<T*>(p);
}

// ---- host-side half / bfloat16 conversion (CPU kernels) ----
inline float bits_to_float(uint32_t bits) {
  float f;
  std::memcpy(&f, &bits, sizeof(f));
  return f;
}

inline uint32_t float_to_bits(float f) {
  uint32_t bits;
  std::memcpy(&bits, &f, sizeof(bits));
  return bits;
}

inline float bf16_to_float(uint16_t h) { return bits_to_float(static_cast<uint32_t>(h) << 16); }

inline uint16_t float_to_bf16(float f) {
  uint32_t bits = float_to_bits(f);
  if ((bits & 0x7fffffffu) > 0x7f800000u) return static_cast<uint16_t>((bits >> 16) | 0x40u);  // quiet NaN
  bits += 0x7fffu + ((bits >> 16) & 1u);  // round to nearest even
  return static_cast<uint16_t>(bits >> 16);
}

inline float fp16_to_float(uint16_t h) {
  const uint32_t sign = (static_cast<uint32_t>(h) & 0x8000u) << 16;
  uint32_t exp = (h >> 10) & 0x1fu;
  uint32_t mant = h & 0x3ffu;
  uint32_t bits;
  if (exp == 0x1fu) {
    bits = sign | 0x7f800000u | (mant << 13);  // inf / nan
  } else if (exp == 0) {
    if (mant == 0) {
      bits = sign;
    } else {  // subnormal: renormalise
      int e = -1;
      do {
        ++e;
        mant <<= 1;
      } while ((mant & 0x400u) == 0);
      bits = sign | static_cast<uint32_t>(127 - 15 - e) << 23 | (mant & 0x3ffu) << 13;
    }
  } else {
    bits = sign | (exp + 112u) << 23 | mant << 13;
  }
  return bits_to_float(bits);
}

inline uint16_t float_to_fp16(float f) {
  const uint32_t bits = float_to_bits(f);
  const uint16_t sign = static_cast<uint16_t>((bits >> 16) & 0x8000u);
  const uint32_t abs = bits & 0x7fffffffu;
  if (abs > 0x7f800000u) return sign | 0x7e00u;          // NaN
  if (abs >= 0x477ff000u) return sign | 0x7c00u;         // overflow -> inf
  if (abs < 0x33000001u) return sign;                    // underflow -> 0
  int exp = static_cast<int>(abs >> 23) - 127 + 15;
  uint32_t mant = (abs & 0x7fffffu) | 0x800000u;
  if (exp <= 0) {  // subnormal half
    const int shift = 14 - exp;
    uint32_t half = mant >> shift;
    const uint32_t rem = mant & ((1u << shift) - 1);
    const uint32_t mid = 1u << (shift - 1);
    if (rem > mid || (rem == mid && (half & 1u))) ++half;
    return sign | static_cast<uint16_t>(half);
  }
  uint32_t half = static_cast<uint32_t>(exp) << 10 | ((mant >> 13) & 0x3ffu);
  const uint32_t rem = mant & 0x1fffu;
  if (rem > 0x1000u || (rem == 0x1000u && (half & 1u))) ++half;
  return sign | static_cast<uint16_t>(half);
}

// Load element i of a row of the given dtype as float.
inline float load_as_float(const void* base, int dtype, int64_t i) {
  switch (dtype) {
    case kFloat16:
      return fp16_to_float(static_cast<const uint16_t*>(base)[i]);
    case kBFloat16:
      return bf16_to_float(static_cast<const uint16_t*>(base)[i]);
    default:
      return static_cast<const float*>(base)[i];
  }
}

inline int64_t dtype_size(int dtype) { return dtype == kFloat32 ? 4 : 2; }

}  // namespace fsgen
