// See cpu_buffer_cache.h.
#include "common/cpu_buffer_cache.h"

#include <ATen/EmptyTensor.h>
#include <c10/core/CPUAllocator.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <string>
#include <vector>

#if defined(__linux__)
#include <sys/mman.h>
#endif

namespace vidops {
namespace cpu_buffers {
namespace {

constexpr size_t kHugePageBytes = size_t(16) << 20;  // fresh buffers advised onto 2 MB pages
constexpr size_t kCachedBytes = size_t(32) << 20;    // freed buffers kept for reuse
constexpr size_t kMaxBuffers = 4;
constexpr size_t kMaxBytes = size_t(512) << 20;
constexpr size_t kGranule = size_t(2) << 20;  // capacities rounded up to 2 MB

// Whether a MADV_HUGEPAGE hint is free of stalls: under the kernel's THP defrag policies "always",
// "madvise" and "defer+madvise" a page fault in an advised region compacts memory synchronously
// whenever no 2 MB page is free. Measured on this project's VM ("madvise"): a 43 MB grad_x took
// 6 ms with the hint when 2 MB pages were free and 30-60 ms when they were not (14 ms without
// the hint), and RNL's 26 MB forward swung between 8 and 37 ms from call to call. Under "defer"
// and "never" the fault takes a free 2 MB page or falls back to 4 KB pages at once.
bool huge_page_hint_is_safe() {
  static const bool safe = [] {
    std::FILE* f = std::fopen("/sys/kernel/mm/transparent_hugepage/defrag", "r");
    if (f == nullptr) return false;
    char buf[128] = {0};
    const size_t n = std::fread(buf, 1, sizeof(buf) - 1, f);
    std::fclose(f);
    const std::string policy(buf, n);
    return policy.find("[defer]") != std::string::npos || policy.find("[never]") != std::string::npos;
  }();
  return safe;
}

// Asks Linux to back a fresh buffer of kHugePageBytes and more with 2 MB pages before its first
// touch, where that cannot stall (above): with 4 KB pages the first touch of X3D's 43 MB stride-2
// grad_x took about 11-14 ms on this VM against about 3 ms of arithmetic.
void advise_huge_pages(void* data, size_t bytes) {
#if defined(__linux__) && defined(MADV_HUGEPAGE)
  if (bytes < kHugePageBytes || !huge_page_hint_is_safe()) return;
  const auto a = reinterpret_cast<uintptr_t>(data);
  const uintptr_t page = 4096, lo = (a + page - 1) & ~(page - 1), hi = (a + bytes) & ~(page - 1);
  if (hi > lo) madvise(reinterpret_cast<void*>(lo), hi - lo, MADV_HUGEPAGE);  // a hint: failure is fine
#else
  (void)data;
  (void)bytes;
#endif
}

bool cache_enabled() {
  static const bool on = [] {
    const char* v = std::getenv("VIDOPS_CPU_BUFFER_CACHE");
    return v == nullptr || std::strcmp(v, "0") != 0;
  }();
  return on;
}

struct Block {
  void* data;
  size_t capacity;
};

struct Cache {
  std::mutex mutex;
  std::vector<Block> free;
  size_t bytes = 0;
};

Cache& cache() {
  static Cache* c = new Cache();  // never destroyed: tensors may be freed during exit
  return *c;
}

// Keeps a released buffer, the oldest ones making room (freed) when the cache is full.
void release(Block b) {
  if (b.capacity > kMaxBytes) return std::free(b.data);
  std::vector<void*> evicted;
  {
    Cache& c = cache();
    std::lock_guard<std::mutex> lock(c.mutex);
    while (!c.free.empty() && (c.free.size() >= kMaxBuffers || c.bytes + b.capacity > kMaxBytes)) {
      evicted.push_back(c.free.front().data);
      c.bytes -= c.free.front().capacity;
      c.free.erase(c.free.begin());
    }
    c.free.push_back(b);
    c.bytes += b.capacity;
  }
  for (void* q : evicted) std::free(q);
}

void delete_block(void* ctx) {
  Block* b = static_cast<Block*>(ctx);
  release(*b);
  delete b;
}

// A cached buffer of at least `bytes` and at most 5/4 of it (the smallest such, the most recently
// released of equal ones), else a fresh one (data null when that fails).
Block acquire(size_t bytes) {
  {
    Cache& c = cache();
    std::lock_guard<std::mutex> lock(c.mutex);
    size_t best = c.free.size();
    for (size_t i = c.free.size(); i-- > 0;) {
      const size_t cap = c.free[i].capacity;
      if (cap >= bytes && cap <= bytes + bytes / 4 && (best == c.free.size() || cap < c.free[best].capacity))
        best = i;
    }
    if (best < c.free.size()) {
      const Block found = c.free[best];
      c.free.erase(c.free.begin() + static_cast<std::ptrdiff_t>(best));
      c.bytes -= found.capacity;
      return found;
    }
  }
  Block b{nullptr, (bytes + kGranule - 1) / kGranule * kGranule};
  if (posix_memalign(&b.data, 64, b.capacity) != 0) return {nullptr, 0};
  advise_huge_pages(b.data, b.capacity);
  return b;
}

// The storage allocator of the kernels' outputs: the cache from kCachedBytes, else the default
// CPU allocator (with the 2 MB page hint from kHugePageBytes).
class OutputAllocator final : public c10::Allocator {
 public:
  c10::DataPtr allocate(size_t n) override {
    if (n >= kCachedBytes && cache_enabled()) {
      const Block b = acquire(n);
      if (b.data != nullptr) return {b.data, new Block(b), &delete_block, c10::Device(c10::kCPU)};
    }
    c10::DataPtr d = c10::GetDefaultCPUAllocator()->allocate(n);
    advise_huge_pages(d.get(), n);
    return d;
  }
  void copy_data(void* dest, const void* src, std::size_t count) const override {
    default_copy_data(dest, src, count);
  }
};

}  // namespace

at::Tensor empty(at::IntArrayRef sizes, const at::TensorOptions& options, at::MemoryFormat format) {
  if (options.device().type() != at::kCPU) return at::empty(sizes, options.memory_format(format));
  static OutputAllocator* allocator = new OutputAllocator();  // outlives every storage using it
  return at::detail::empty_generic(sizes, allocator, c10::DispatchKeySet(c10::DispatchKey::CPU),
                                   c10::typeMetaToScalarType(options.dtype()), format);
}

}  // namespace cpu_buffers
}  // namespace vidops
