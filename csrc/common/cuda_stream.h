// The current CUDA stream and device guard without libtorch_cuda or the c10/cuda headers: both come
// from c10's device-generic guard interface (libc10), so the extension links against CPU torch too.
#pragma once
#ifdef VIDOPS_WITH_CUDA
#include <c10/core/DeviceGuard.h>
#include <c10/core/impl/DeviceGuardImplInterface.h>
#include <ATen/core/Tensor.h>

namespace vidops {

inline void* current_cuda_stream(const at::Tensor& t) {
  const auto* impl = c10::impl::getDeviceGuardImpl(c10::DeviceType::CUDA);
  return impl->getStream(t.device()).native_handle();
}

}  // namespace vidops
#endif
