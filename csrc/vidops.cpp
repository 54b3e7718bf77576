// vidops._C: the one C++ extension. Every op file registers its own schema with
// TORCH_LIBRARY_FRAGMENT(vidops, m) and its kernels with TORCH_LIBRARY_IMPL(vidops, CPU|CUDA, m)
// (torchvision's csrc/ops pattern); this file only makes the .so importable as a Python module.
#include <Python.h>

extern "C" {
// `import vidops._C` needs a module init function; the ops register themselves at load time.
PyObject* PyInit__C(void) {
  static struct PyModuleDef module_def = {PyModuleDef_HEAD_INIT, "_C", nullptr, -1, nullptr};
  return PyModule_Create(&module_def);
}
}
