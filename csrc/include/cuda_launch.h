// Launch boilerplate shared by the CUDA entry points: make the tensors' device current for the
// call (the extension does not link libtorch, so torch's device guard is not available: Python
// passes the device index), launch on the caller's stream, and turn a launch error into a Python
// exception that names the entry point.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>
#include <stdexcept>
#include <string>
#include <utility>

namespace fsgen {

inline void check_cuda(cudaError_t err, const char* where) {
  if (err != cudaSuccess) throw std::runtime_error(std::string(where) + ": " + cudaGetErrorString(err));
}

// RAII: sets the current CUDA device for this thread and restores the previous one on exit.
class DeviceGuard {
 public:
  DeviceGuard(int device, const char* where) : device_(device) {
    check_cuda(cudaGetDevice(&prev_), where);
    if (prev_ != device_) check_cuda(cudaSetDevice(device_), where);
  }
  ~DeviceGuard() {
    if (prev_ != device_) cudaSetDevice(prev_);  // best effort: a destructor must not throw
  }
  DeviceGuard(const DeviceGuard&) = delete;
  DeviceGuard& operator=(const DeviceGuard&) = delete;

 private:
  int device_;
  int prev_ = 0;
};

// Column splits of a row of V columns when `requested` are asked for: `cols` per split, a multiple of 4
// (every split keeps the row's 4-element vector alignment), and the `count` <= requested non-empty ones.
struct ColumnSplits {
  int64_t cols, count;
};

inline ColumnSplits column_splits(int64_t V, int64_t requested) {
  const int64_t cols = ((V + requested - 1) / requested + 3) / 4 * 4;
  return {cols, (V + cols - 1) / cols};
}

// The caller's workspace must hold `need` bytes (fsgen_engine/ops sizes it with <op>_cuda_workspace).
inline void check_workspace(const char* where, int64_t have, int64_t need) {
  if (have < need)
    throw std::invalid_argument(std::string(where) + ": workspace_bytes=" + std::to_string(have) + " but " +
                                std::to_string(need) + " are needed; size it with the op's _cuda_workspace function");
}

// Launch kernel<<<grid, block, smem, stream>>>(args...) on `device`; nothing when the grid is empty.
// In the SIMT emulator build (_C_simt, csrc/simt/simt.h) the kernel runs on the host instead, and a
// bad configuration or a deadlock is thrown as fsgen::simt::Error.
template <typename... Params, typename... Args>
void launch(const char* where, int device, std::uintptr_t stream, dim3 grid, dim3 block, size_t smem,
            void (*kernel)(Params...), Args&&... args) {
  if (grid.x == 0 || grid.y == 0 || grid.z == 0) return;
  DeviceGuard guard(device, where);
#ifdef FSGEN_SIMT
  (void)stream;
  simt::launch(where, grid, block, smem, kernel, std::forward<Args>(args)...);
#else
  kernel<<<grid, block, smem, reinterpret_cast<cudaStream_t>(stream)>>>(static_cast<Params>(args)...);
  check_cuda(cudaGetLastError(), where);
#endif
}

}  // namespace fsgen
