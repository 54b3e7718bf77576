// See cpu_buffer_cache.h.
#include "common/cpu_buffer_cache.h"

#include <c10/core/MemoryFormat.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <vector>

namespace vidops {
namespace cpu_buffers {
namespace {

constexpr size_t kMinBytes = size_t(32) << 20;
constexpr size_t kMaxBuffers = 4;
constexpr size_t kMaxBytes = size_t(512) << 20;
constexpr size_t kGranule = size_t(2) << 20;  // capacities rounded up to 2 MB

struct Cache {
  std::mutex mutex;
  std::vector<std::pair<void*, size_t>> free;  // (buffer, capacity)
  size_t bytes = 0;
};

Cache& cache() {
  static Cache* c = new Cache();  // never destroyed: tensors may be freed during exit
  return *c;
}

bool enabled() {
  static const bool on = [] {
    const char* v = std::getenv("VIDOPS_CPU_BUFFER_CACHE");
    return v == nullptr || std::strcmp(v, "0") != 0;
  }();
  return on;
}

// Keeps a released buffer, the oldest ones making room (freed) when the cache is full.
void release(void* p, size_t capacity) {
  if (capacity > kMaxBytes) return std::free(p);
  std::vector<void*> evicted;
  {
    Cache& c = cache();
    std::lock_guard<std::mutex> lock(c.mutex);
    while (!c.free.empty() && (c.free.size() >= kMaxBuffers || c.bytes + capacity > kMaxBytes)) {
      evicted.push_back(c.free.front().first);
      c.bytes -= c.free.front().second;
      c.free.erase(c.free.begin());
    }
    c.free.emplace_back(p, capacity);
    c.bytes += capacity;
  }
  for (void* q : evicted) std::free(q);
}

// A cached buffer of at least `bytes` and at most 5/4 of it (the smallest such, the most recently
// released of equal ones), or a new one.
std::pair<void*, size_t> acquire(size_t bytes) {
  Cache& c = cache();
  {
    std::lock_guard<std::mutex> lock(c.mutex);
    size_t best = c.free.size();
    for (size_t i = c.free.size(); i-- > 0;) {
      const size_t cap = c.free[i].second;
      if (cap >= bytes && cap <= bytes + bytes / 4 && (best == c.free.size() || cap < c.free[best].second))
        best = i;
    }
    if (best < c.free.size()) {
      const auto found = c.free[best];
      c.free.erase(c.free.begin() + static_cast<std::ptrdiff_t>(best));
      c.bytes -= found.second;
      return found;
    }
  }
  const size_t capacity = (bytes + kGranule - 1) / kGranule * kGranule;
  void* p = nullptr;
  if (posix_memalign(&p, 64, capacity) != 0) return {nullptr, 0};
  return {p, capacity};
}

std::vector<int64_t> row_major_strides(at::IntArrayRef sizes) {
  std::vector<int64_t> strides(sizes.size(), 1);
  for (int64_t i = static_cast<int64_t>(sizes.size()) - 2; i >= 0; --i)
    strides[i] = strides[i + 1] * std::max<int64_t>(sizes[i + 1], 1);
  return strides;
}

}  // namespace

at::Tensor empty(at::IntArrayRef sizes, const at::TensorOptions& options, at::MemoryFormat format) {
  int64_t numel = 1;
  for (const int64_t s : sizes) numel *= s;
  const size_t bytes = static_cast<size_t>(numel) * options.dtype().itemsize();
  if (!enabled() || bytes < kMinBytes || options.device().type() != at::kCPU)
    return at::empty(sizes, options.memory_format(format));
  const auto [p, capacity] = acquire(bytes);
  if (p == nullptr) return at::empty(sizes, options.memory_format(format));
  std::vector<int64_t> strides;
  if (format == at::MemoryFormat::ChannelsLast3d && sizes.size() == 5)
    strides = c10::get_channels_last_strides_3d(sizes);
  else if (format == at::MemoryFormat::ChannelsLast && sizes.size() == 4)
    strides = c10::get_channels_last_strides_2d(sizes);
  else
    strides = row_major_strides(sizes);
  const size_t cap = capacity;
  return at::from_blob(p, sizes, strides, [cap](void* q) { release(q, cap); }, options);
}

}  // namespace cpu_buffers
}  // namespace vidops
