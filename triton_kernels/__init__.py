"""Triton kernels of vidops, installed as `vidops.triton_kernels` (never as a top-level
`triton_kernels`: the Triton project ships a package of that name).

One module per op, named as the op; each exposes plain launcher functions (forward/backward) on
tensors. Autograd, fakes and backend choice live in vidops/ops/<op>.py. Importing this package
does not import triton; importing an op's module does.
"""
