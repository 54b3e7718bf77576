"""Exporting models that use vidops ops: torch.export and ONNX.

torch.export keeps every vidops op as one node (`torch.ops.vidops.<op>.default`, the backend
chosen at export time as a constant argument), so the exported program runs the fused kernels:

    ep = torch.export.export(model.eval(), (clip,))        # nothing vidops-specific needed
    ep.module()(clip)

ONNX has no such ops, and vidops adds no custom ONNX domain: `import vidops` registers each op's
reference implementation (plain PyTorch: grouped convolutions and pads for the band-pass filter,
slices and concatenation for the temporal shift, a Conv with group = C for the depthwise conv,
matrix products and an unrolled LDL^T solve with elementwise ops for the D <= 4 projections,
matmul + softmax for the attention) as the op's decomposition (vidops.onnx_support), which the
standard exporter applies by itself and lowers to standard ONNX operators:

    torch.onnx.export(model.eval(), (clip,), "model.onnx", dynamo=True)   # nothing vidops-specific
    onnx_program = vidops.export.export_onnx(model.eval(), (clip,), "model.onnx")  # the same call

`decompose(ep)` gives the decomposed program for other consumers (TensorRT, ExecuTorch).
"""
from __future__ import annotations

from typing import Optional

import torch

from . import _op, onnx_support
from . import ops as _ops  # noqa: F401  (declares every op)


def decomposition_table() -> dict:
    """{torch.ops.vidops.<op>.default: the op's reference forward} for every vidops op."""
    table = {}
    for name, op in _op.OPS.items():
        table[getattr(torch.ops.vidops, name).default] = op.reference_forward
    return table


def decompose(ep: "torch.export.ExportedProgram") -> "torch.export.ExportedProgram":
    """`ep` with every vidops op replaced by its reference implementation (PyTorch's default
    decompositions run as well), so that only ATen core ops remain."""
    table = torch.export.default_decompositions()
    for op, fn in decomposition_table().items():
        table[op] = fn
    return ep.run_decompositions(table)


def export_onnx(model: torch.nn.Module, args: tuple, f: Optional[str] = None, *,
                kwargs: Optional[dict] = None, **onnx_kwargs):
    """`torch.onnx.export(model, args, f, kwargs=kwargs, dynamo=True, **onnx_kwargs)`, after making
    sure every declared vidops op has its decomposition registered: standard ONNX operators only.
    Returns the ONNXProgram (saved to `f` when given). Needs the `onnx` and `onnxscript` packages.

    Export the model in eval mode for inference: BatchNorm's running statistics and dropout's
    identity are what the graph then holds.
    """
    try:
        import onnxscript  # noqa: F401
    except ImportError as e:
        raise ImportError("vidops.export.export_onnx: needs the onnx and onnxscript packages "
                          "(pip install onnx onnxscript)") from e
    onnx_support.register_all()
    return torch.onnx.export(model, tuple(args), f, kwargs=kwargs, dynamo=True, **onnx_kwargs)
