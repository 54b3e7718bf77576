"""What makes the standard ONNX exporter take vidops ops by itself.

`torch.onnx.export(model, args, dynamo=True)` runs torch.export, then decomposes every node that
has no ONNX translation with the decompositions in `torch._decomp.decomposition_table` (torch
2.13: torch/onnx/_internal/exporter/_decomp.py). `register_all()` enters each vidops op there,
decomposed into its reference implementation in plain PyTorch (grouped convolutions and reflect
pads for the band-pass filter, slices and concatenation for the temporal shift, Conv with
group = C for the depthwise conv, matrix products and softmax for the attention), which the
exporter lowers to standard ONNX operators. Nothing else changes:

- torch.export.export runs no decomposition: each vidops op stays one node and the exported
  program runs the fused kernels;
- torch.compile's Inductor decomposes with its own table, which does not read this one;
- the one other reader is fake-tensor propagation with symbolic shapes (torch.export or
  torch.compile with dynamic shapes), which then infers the output shapes from the reference
  instead of the op's fake: the same shapes.

`import vidops` registers every op declared by then; `register_all()` is idempotent.
"""
from __future__ import annotations

import torch

from . import _op

_REGISTERED: dict = {}  # op name -> the OpOverload registered


def _decomposition(op: "_op.Op"):
    def decompose(*args, **kwargs):
        out = op.reference_forward(*args, **kwargs)
        inputs = [a for a in args if isinstance(a, torch.Tensor)]
        # a custom op's outputs never alias its inputs: keep that true of the decomposition
        outs = out if isinstance(out, tuple) else (out,)
        outs = tuple(o.clone() if any(o is a for a in inputs) or o._is_view() else o for o in outs)
        return outs if isinstance(out, tuple) else outs[0]

    decompose.__name__ = f"vidops_{op.name}_reference"
    decompose.__qualname__ = decompose.__name__
    return decompose


def overload(name: str) -> "torch._ops.OpOverload":
    """torch.ops.vidops.<name>.default."""
    return getattr(torch.ops.vidops, name).default


def register_all() -> dict:
    """Register the reference decomposition of every declared vidops op not registered yet.
    Returns {op name: OpOverload} of all registered ops."""
    from torch._decomp import decomposition_table, register_decomposition

    for name, op in _op.OPS.items():
        target = overload(name)
        if target not in decomposition_table:
            register_decomposition(target)(_decomposition(op))
        _REGISTERED[name] = target
    return dict(_REGISTERED)


def registered() -> dict:
    """{op name: OpOverload} of the ops whose decomposition is registered."""
    return dict(_REGISTERED)
