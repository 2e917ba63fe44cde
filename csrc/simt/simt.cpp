// SIMT emulator scheduler (see simt.h): the threads of one block are fibers (ucontext) on the calling
// OS thread; a fiber runs until it reaches a barrier or returns, then the next one runs. When no fiber
// can run, the scheduler releases a warp group or the block barrier whose live threads have all
// arrived, computing the warp operations' results; if there is none, the launch deadlocked.
#include <sys/mman.h>
#include <ucontext.h>
#include <unistd.h>

#include <cuda_runtime.h>

#include <exception>
#include <mutex>
#include <sstream>
#include <vector>

#include "fsgen.h"
#include "simt.h"

uint3 threadIdx{0, 0, 0}, blockIdx{0, 0, 0};
dim3 blockDim, gridDim;

const char* cudaGetErrorString(cudaError_t err) {
  switch (err) {
    case cudaSuccess: return "no error";
    case cudaErrorInvalidValue: return "invalid argument";
    case cudaErrorMemoryAllocation: return "out of memory";
    case cudaErrorInvalidConfiguration: return "invalid configuration argument";
    case cudaErrorInvalidDevice: return "invalid device ordinal";
    default: return "unknown error";
  }
}

namespace {
int g_device = 0;
int g_sm_count = 132;
}  // namespace

cudaError_t cudaGetDevice(int* device) {
  *device = g_device;
  return cudaSuccess;
}
cudaError_t cudaSetDevice(int device) {
  if (device < 0) return cudaErrorInvalidDevice;
  g_device = device;  // any index: the tests' tensors are on the CPU, the index only travels along
  return cudaSuccess;
}
cudaError_t cudaDeviceGetAttribute(int* value, cudaDeviceAttr attr, int) {
  switch (attr) {  // an H100 / H200 (sm_90), except the settable SM count
    case cudaDevAttrMultiProcessorCount: *value = g_sm_count; break;
    case cudaDevAttrMaxThreadsPerBlock: *value = 1024; break;
    case cudaDevAttrMaxBlockDimX: case cudaDevAttrMaxBlockDimY: *value = 1024; break;
    case cudaDevAttrMaxBlockDimZ: *value = 64; break;
    case cudaDevAttrMaxGridDimX: *value = 2147483647; break;
    case cudaDevAttrMaxGridDimY: case cudaDevAttrMaxGridDimZ: *value = 65535; break;
    case cudaDevAttrMaxSharedMemoryPerBlock: *value = 48 * 1024; break;
    case cudaDevAttrMaxSharedMemoryPerBlockOptin: *value = 227 * 1024; break;
    case cudaDevAttrMaxSharedMemoryPerMultiprocessor: *value = 228 * 1024; break;
    case cudaDevAttrWarpSize: *value = 32; break;
    case cudaDevAttrL2CacheSize: *value = 50 * 1024 * 1024; break;
    case cudaDevAttrMaxThreadsPerMultiProcessor: *value = 2048; break;
    case cudaDevAttrComputeCapabilityMajor: *value = 9; break;
    case cudaDevAttrComputeCapabilityMinor: *value = 0; break;
    default: return cudaErrorInvalidValue;
  }
  return cudaSuccess;
}

namespace fsgen {
namespace simt {
namespace {

// Fiber switch. On x86-64 a few instructions that save the callee-saved registers and the FP control
// words (glibc's swapcontext also saves the signal mask with a system call on every switch, which made
// it most of the emulator's run time); elsewhere ucontext.
#if defined(__x86_64__) && !defined(FSGEN_SIMT_UCONTEXT)
extern "C" void fsgen_simt_switch(void** save_sp, void* load_sp);
asm(R"(
  .text
  .p2align 4
  .globl fsgen_simt_switch
  .hidden fsgen_simt_switch
  .type fsgen_simt_switch,@function
fsgen_simt_switch:
  pushq %rbp
  pushq %rbx
  pushq %r12
  pushq %r13
  pushq %r14
  pushq %r15
  subq $8, %rsp
  stmxcsr (%rsp)
  fnstcw 4(%rsp)
  movq %rsp, (%rdi)
  movq %rsi, %rsp
  ldmxcsr (%rsp)
  fldcw 4(%rsp)
  addq $8, %rsp
  popq %r15
  popq %r14
  popq %r13
  popq %r12
  popq %rbx
  popq %rbp
  ret
  .size fsgen_simt_switch, .-fsgen_simt_switch
)");
struct Context {
  void* sp = nullptr;
};
inline void switch_context(Context& from, Context& to) { fsgen_simt_switch(&from.sp, to.sp); }
// A fresh context that enters entry() (which never returns) on the stack [base, base + size).
inline void make_context(Context& c, char* base, size_t size, void (*entry)()) {
  uintptr_t top = (reinterpret_cast<uintptr_t>(base) + size) & ~static_cast<uintptr_t>(15);
  auto* sp = reinterpret_cast<uint64_t*>(top - 8);  // entry sees rsp = 8 (mod 16), as after a call
  *sp = 0;                                          // its (never used) return address
  *--sp = reinterpret_cast<uint64_t>(entry);        // popped by the switch's ret
  for (int i = 0; i < 6; ++i) *--sp = 0;            // rbp rbx r12..r15
  uint32_t mxcsr;
  uint16_t fpucw;
  asm volatile("stmxcsr %0" : "=m"(mxcsr));
  asm volatile("fnstcw %0" : "=m"(fpucw));
  --sp;
  std::memcpy(reinterpret_cast<char*>(sp), &mxcsr, 4);
  std::memcpy(reinterpret_cast<char*>(sp) + 4, &fpucw, 2);
  c.sp = sp;
}
#else
struct Context {
  ucontext_t uc;
};
inline void switch_context(Context& from, Context& to) { swapcontext(&from.uc, &to.uc); }
inline void make_context(Context& c, char* base, size_t size, void (*entry)()) {
  getcontext(&c.uc);
  c.uc.uc_stack.ss_sp = base;
  c.uc.uc_stack.ss_size = size;
  c.uc.uc_link = nullptr;
  makecontext(&c.uc, entry, 0);
}
#endif

constexpr size_t kStackBytes = 64 * 1024;
constexpr long kMaxIdleYields = 1L << 20;  // yields without any barrier or return: a livelock

enum State : int { kReady, kAtBlock, kAtWarp, kDone };

struct Fiber {
  Context ctx;
  char* stack = nullptr;
  State state = kReady;
  uint3 tid{0, 0, 0};
  // the barrier the fiber waits at
  const char* what = nullptr;
  unsigned mask = 0;
  int op = 0;
  uint64_t value = 0;
  int src = -1;
  bool pred = false;
  uint64_t result = 0;
};

struct Scheduler {
  Context main_ctx;
  std::vector<Fiber> fibers;
  char* stacks = nullptr;
  size_t stacks_count = 0;
  int current = -1;
  int nthreads = 0;
  void (*fn)(void*) = nullptr;
  void* ctx = nullptr;
  std::exception_ptr error;
  long idle_yields = 0;
  long long ticks = 0;

  // One stack per thread with a guard page below it (an overflow faults instead of corrupting the
  // neighbour), mapped once for the largest block seen and reused.
  void ensure_stacks(int n) {
    if (static_cast<size_t>(n) <= stacks_count) return;
    const size_t page = static_cast<size_t>(sysconf(_SC_PAGESIZE));
    const size_t per = kStackBytes + page;
    if (stacks) munmap(stacks, stacks_count * per);
    void* p = mmap(nullptr, per * n, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (p == MAP_FAILED) throw Error("simt: cannot map fiber stacks");
    stacks = static_cast<char*>(p);
    stacks_count = n;
    for (int i = 0; i < n; ++i) mprotect(stacks + i * per, page, PROT_NONE);
    fibers.resize(n);
    for (int i = 0; i < n; ++i) fibers[i].stack = stacks + i * per + page;
  }

  Fiber& me() { return fibers[current]; }

  void suspend() {  // back to the scheduler; resumes when released
    Fiber& f = me();
    switch_context(f.ctx, main_ctx);
  }
};

Scheduler g;
std::mutex g_launch_mutex;  // one launch at a time (the scheduler state is global)

void fiber_entry() {
  try {
    g.fn(g.ctx);
  } catch (...) {
    if (!g.error) g.error = std::current_exception();
  }
  g.me().state = kDone;
  g.idle_yields = 0;
  Context dead;  // this fiber is never resumed
  switch_context(dead, g.main_ctx);
}

std::string dim_str(uint3 v) {
  return "(" + std::to_string(v.x) + "," + std::to_string(v.y) + "," + std::to_string(v.z) + ")";
}

std::string hex(unsigned m) {
  std::ostringstream s;
  s << "0x" << std::hex << m;
  return s.str();
}

unsigned live_mask_of_warp(int warp) {
  unsigned m = 0;
  for (int l = 0; l < 32; ++l) {
    const int t = warp * 32 + l;
    if (t < g.nthreads && g.fibers[t].state != kDone) m |= 1u << l;
  }
  return m;
}

// Release one warp group whose live lanes have all arrived with the same mask and operation.
bool release_warp_group() {
  for (int t = 0; t < g.nthreads; ++t) {
    Fiber& f = g.fibers[t];
    if (f.state != kAtWarp) continue;
    const int warp = t / 32;
    const unsigned group = f.mask & live_mask_of_warp(warp);
    bool complete = true;
    for (int l = 0; l < 32 && complete; ++l) {
      if (!(group >> l & 1u)) continue;
      const Fiber& o = g.fibers[warp * 32 + l];
      complete = o.state == kAtWarp && o.mask == f.mask && o.op == f.op;
    }
    if (!complete) continue;
    uint64_t ballot = 0, sum = 0, mn = ~0ull, mx = 0;
    for (int l = 0; l < 32; ++l) {
      if (!(group >> l & 1u)) continue;
      const Fiber& o = g.fibers[warp * 32 + l];
      if (o.pred) ballot |= 1ull << l;
      sum += o.value;
      mn = o.value < mn ? o.value : mn;
      mx = o.value > mx ? o.value : mx;
    }
    for (int l = 0; l < 32; ++l) {
      if (!(group >> l & 1u)) continue;
      Fiber& o = g.fibers[warp * 32 + l];
      switch (o.op) {
        case kWarpShfl: {
          const bool ok = o.src >= 0 && (group >> o.src & 1u);
          o.result = ok ? g.fibers[warp * 32 + o.src].value : o.value;
          break;
        }
        case kWarpBallot: o.result = ballot; break;
        case kWarpAny: o.result = ballot != 0; break;
        case kWarpAll: o.result = ballot == group; break;
        case kWarpReduceAdd: o.result = static_cast<uint32_t>(sum); break;
        case kWarpReduceMin: o.result = mn; break;
        case kWarpReduceMax: o.result = mx; break;
        case kWarpMatchAny: {
          uint64_t m = 0;
          for (int k = 0; k < 32; ++k)
            if ((group >> k & 1u) && g.fibers[warp * 32 + k].value == o.value) m |= 1ull << k;
          o.result = m;
          break;
        }
        default: o.result = 0;
      }
      o.state = kReady;
    }
    return true;
  }
  return false;
}

bool release_block() {
  int count = 0, waiting = 0;
  for (int t = 0; t < g.nthreads; ++t) {
    const Fiber& f = g.fibers[t];
    if (f.state == kDone) continue;
    if (f.state != kAtBlock) return false;
    ++waiting;
    count += f.pred ? 1 : 0;
  }
  if (waiting == 0) return false;
  for (int t = 0; t < g.nthreads; ++t) {
    Fiber& f = g.fibers[t];
    if (f.state == kAtBlock) {
      f.result = static_cast<uint64_t>(count);
      f.state = kReady;
    }
  }
  return true;
}

[[noreturn]] void deadlock(const char* where, uint3 block) {
  std::ostringstream s;
  int at_block = 0, done = 0;
  for (int t = 0; t < g.nthreads; ++t) {
    at_block += g.fibers[t].state == kAtBlock;
    done += g.fibers[t].state == kDone;
  }
  s << "simt: deadlock in the launch of " << where << ", block " << dim_str(block) << " of " << g.nthreads
    << " threads: " << at_block << " wait at __syncthreads, " << done << " returned";
  int shown = 0;
  for (int t = 0; t < g.nthreads; ++t) {
    const Fiber& f = g.fibers[t];
    if (f.state != kAtWarp) continue;
    if (shown++ < 4)
      s << "; thread " << t << " (warp " << t / 32 << ", lane " << t % 32 << ") waits at " << f.what << " with mask "
        << hex(f.mask) << " (live lanes " << hex(live_mask_of_warp(t / 32)) << ")";
  }
  if (shown > 4) s << "; ... " << shown << " threads wait at warp operations in all";
  s << " (divergent __syncthreads, or warp lanes at different warp operations / masks)";
  throw Error(s.str());
}

}  // namespace

int lane_id() { return g.current % 32; }
unsigned live_lanes() { return live_mask_of_warp(g.current / 32); }
long long clock_ticks() { return ++g.ticks; }

uint64_t warp_op(const char* what, unsigned mask, int op, uint64_t value, int src_lane, bool pred) {
  if (g.current < 0) throw Error(std::string(what) + " called outside a kernel launch");
  const int lane = g.current % 32;
  if (!(mask >> lane & 1u))
    throw Error(std::string(what) + ": the mask " + hex(mask) + " does not contain the calling lane " +
                std::to_string(lane) + " (thread " + std::to_string(g.current) + ")");
  Fiber& f = g.me();
  f.state = kAtWarp;
  f.what = what;
  f.mask = mask;
  f.op = op;
  f.value = value;
  f.src = src_lane;
  f.pred = pred;
  g.idle_yields = 0;
  g.suspend();
  return g.fibers[g.current].result;
}

int block_sync(bool pred) {
  if (g.current < 0) throw Error("__syncthreads called outside a kernel launch");
  Fiber& f = g.me();
  f.state = kAtBlock;
  f.what = "__syncthreads";
  f.pred = pred;
  g.idle_yields = 0;
  g.suspend();
  return static_cast<int>(g.fibers[g.current].result);
}

void yield() {
  if (g.current < 0) return;
  if (++g.idle_yields > kMaxIdleYields)
    throw Error("simt: livelock: threads kept spinning (atomicCAS failures / __nanosleep) without any progress; "
                "a spin-wait on another block never ends in the emulator, whose blocks run one after another");
  g.me().state = kReady;
  g.suspend();
}

void set_sm_count(int n) {
  if (n <= 0) throw std::invalid_argument("set_sm_count: n must be positive, got " + std::to_string(n));
  g_sm_count = n;
}
int sm_count() { return g_sm_count; }

void run_grid(const char* where, dim3 grid, dim3 block, size_t smem, void (*fn)(void*), void* ctx) {
  std::lock_guard<std::mutex> lock(g_launch_mutex);
  const std::string w(where);
  const long long n = static_cast<long long>(block.x) * block.y * block.z;
  if (block.x == 0 || block.y == 0 || block.z == 0 || n > 1024 || n % 32 != 0)
    throw Error(w + ": block " + dim_str(block) + " has " + std::to_string(n) +
                " threads; the emulator needs a multiple of 32 in [32, 1024]");
  if (block.z > 64) throw Error(w + ": blockDim.z must be <= 64, got " + std::to_string(block.z));
  if (grid.y > 65535 || grid.z > 65535) throw Error(w + ": gridDim.y and gridDim.z must be <= 65535, got " + dim_str(grid));
  if (smem != 0)
    throw Error(w + ": dynamic shared memory (" + std::to_string(smem) +
                " bytes) is not supported by the SIMT emulator; use a static __shared__ array");
  g.ensure_stacks(static_cast<int>(n));
  g.nthreads = static_cast<int>(n);
  g.fn = fn;
  g.ctx = ctx;
  g.error = nullptr;
  gridDim = grid;
  blockDim = block;
  struct Reset {
    ~Reset() { g.current = -1; }
  } reset;
  for (unsigned bz = 0; bz < grid.z; ++bz)
    for (unsigned by = 0; by < grid.y; ++by)
      for (unsigned bx = 0; bx < grid.x; ++bx) {
        blockIdx = uint3{bx, by, bz};
        for (int t = 0; t < g.nthreads; ++t) {
          Fiber& f = g.fibers[t];
          f.state = kReady;
          f.tid = uint3{static_cast<unsigned>(t % block.x), static_cast<unsigned>(t / block.x % block.y),
                        static_cast<unsigned>(t / (block.x * block.y))};
          make_context(f.ctx, f.stack, kStackBytes, fiber_entry);
        }
        g.idle_yields = 0;
        for (;;) {
          bool ran = false;
          for (int t = 0; t < g.nthreads; ++t) {
            if (g.fibers[t].state != kReady) continue;
            g.current = t;
            threadIdx = g.fibers[t].tid;
            switch_context(g.main_ctx, g.fibers[t].ctx);
            g.current = -1;
            if (g.error) std::rethrow_exception(g.error);
            ran = true;
          }
          if (ran) continue;
          bool all_done = true;
          for (int t = 0; t < g.nthreads && all_done; ++t) all_done = g.fibers[t].state == kDone;
          if (all_done) break;
          if (release_warp_group()) continue;
          if (release_block()) continue;
          deadlock(where, blockIdx);
        }
      }
}

// Python: fsgen_engine-free helpers of the emulator module.
Registrar simt_registrar([](py::module_& m) {
  m.attr("is_simt_emulator") = true;
  m.def("set_sm_count", &set_sm_count, py::arg("n"),
        "SM count reported by cudaDeviceGetAttribute(cudaDevAttrMultiProcessorCount) (default 132)");
  m.def("sm_count", &sm_count, "SM count the emulated device reports");
  py::register_exception<Error>(m, "SimtError", PyExc_RuntimeError);
});

}  // namespace simt
}  // namespace fsgen
