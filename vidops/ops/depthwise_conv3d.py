"""`vidops.depthwise_conv3d`: channel-wise (depthwise) 3-D convolution (operators.md §2).

    y[n,c,to,ho,wo] = bias[c] + sum_{a<kt, b<kh, e<kw} w[c,a,b,e] * x[n,c, to*st+a-pt, ho*sh+b-ph, wo*sw+e-pw]

cross-correlation (not flipped), zeros outside x, output size Lo = floor((L + 2p - k) / s) + 1 per
axis (as nn.Conv3d). RNL's region conv F_theta (3x7x7 in res3, 3x3x3 in res4), CPA's
single-channel pyramid and X3D's channel-wise 3x3x3 (stride (1, 2, 2) in each stage's first block)
and 5x1x1 stem. Backends: cpu (C++/OpenMP, vectorised along W, or along C for channels_last_3d),
cuda (CUDA C++, shared-memory tiles), triton, reference (F.conv3d(groups=C)).
"""
from __future__ import annotations

import inspect
from typing import Optional

import torch

from .. import _checks, _dispatch, _op
from ..reference.depthwise_conv3d import depthwise_conv3d as reference_forward
from ..reference.depthwise_conv3d import depthwise_conv3d_backward as reference_backward

OP_NAME = "depthwise_conv3d"


def _as_weight(weight):
    """Accept nn.Conv3d's depthwise weight (C, 1, kt, kh, kw) as a view of (C, kt, kh, kw)."""
    if isinstance(weight, torch.Tensor) and weight.dim() == 5 and weight.shape[1] == 1:
        return weight.squeeze(1)
    return weight


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def resolve_stride(stride, op=OP_NAME) -> list:
    """An int or (st, sh, sw), every entry >= 1 -> [st, sh, sw]."""
    s = [stride] * 3 if _is_int(stride) else stride
    if not isinstance(s, (tuple, list)) or len(s) != 3 or not all(_is_int(v) and v >= 1 for v in s):
        raise ValueError(f"vidops.{op}: stride must be a positive int or 3 positive ints (st, sh, sw), "
                         f"got {stride!r}")
    return list(s)


def resolve_padding(padding, kernel, op=OP_NAME) -> list:
    """"same" ((k-1)//2, odd kernels), an int or (pt, ph, pw), every entry >= 0 -> [pt, ph, pw]."""
    if isinstance(padding, str):
        if padding != "same":
            raise ValueError(f"vidops.{op}: padding must be 'same', an int or 3 ints (pt, ph, pw) >= 0, "
                             f"got {padding!r}")
        if any(k % 2 == 0 for k in kernel):
            raise ValueError(f"vidops.{op}: padding='same' needs odd kernel sizes (padding (k-1)/2), got "
                             f"kernel {tuple(kernel)}; pass the padding explicitly")
        return [(k - 1) // 2 for k in kernel]
    p = [padding] * 3 if _is_int(padding) else padding
    if not isinstance(p, (tuple, list)) or len(p) != 3 or not all(_is_int(v) and v >= 0 for v in p):
        raise ValueError(f"vidops.{op}: padding must be 'same', a non-negative int or 3 non-negative ints "
                         f"(pt, ph, pw), got {padding!r}")
    return list(p)


def output_size(size, kernel, stride, padding) -> tuple:
    """(To, Ho, Wo): floor((L + 2p - k) / s) + 1 per axis, as nn.Conv3d; an empty axis (L = 0)
    gives an empty output axis."""
    return tuple((L + 2 * p - k) // s + 1 if L > 0 else 0 for L, k, s, p in zip(size, kernel, stride, padding))


def memory_format(*args) -> torch.memory_format:
    """The layout of y and grad_x: x's (channels_last_3d for a channels_last_3d x that is not also
    contiguous, else contiguous). Called with the forward's arguments (x first) or the
    backward's (grad_y, x, ...)."""
    x = args[0] if len(args) == 5 else args[1]
    if x.is_contiguous(memory_format=torch.channels_last_3d) and not x.is_contiguous():
        return torch.channels_last_3d
    return torch.contiguous_format


def check_args(x, weight, bias, stride, padding, op=OP_NAME):
    _checks.tensor(op, "x", x, 5, "(N, C, T, H, W)")
    _checks.tensor(op, "weight", weight)
    _checks.same_device(op, "x", x, weight=weight)
    _checks.weight_dtype(op, x, weight=weight)
    C = x.shape[1]
    if weight.dim() != 4:
        raise ValueError(f"vidops.{op}: weight must be depthwise, (C, kt, kh, kw) or (C, 1, kt, kh, kw) "
                         f"with C={C}, got shape {tuple(weight.shape)}")
    if weight.shape[0] != C:
        raise ValueError(f"vidops.{op}: weight has {weight.shape[0]} channels but x has C={C} "
                         f"(a depthwise weight is (C, kt, kh, kw))")
    ks = tuple(weight.shape[1:])
    if any(k < 1 for k in ks):
        raise ValueError(f"vidops.{op}: kernel sizes (kt, kh, kw) must be >= 1, got {ks}")
    if bias is not None:
        _checks.tensor(op, "bias", bias)
        _checks.same_device(op, "x", x, bias=bias)
        _checks.weight_dtype(op, x, bias=bias)
        if tuple(bias.shape) != (C,):
            raise ValueError(f"vidops.{op}: bias must be (C,) with C={C}, got shape {tuple(bias.shape)}")
    resolve_stride(stride, op)
    resolve_padding(padding, ks, op)
    out = output_size(x.shape[2:], ks, stride, padding)
    if any(o < 1 and L > 0 for o, L in zip(out, x.shape[2:])):
        raise ValueError(f"vidops.{op}: padding {tuple(padding)} leaves no output: x's (T, H, W) = "
                         f"{tuple(x.shape[2:])} with kernel {ks} and stride {tuple(stride)} gives "
                         f"(To, Ho, Wo) = {out} (floor((L + 2p - k) / s) + 1 must be >= 1 on every axis)")


def _fake(x, weight, bias, stride, padding):
    shape = (x.shape[0], x.shape[1], *output_size(x.shape[2:], weight.shape[1:], stride, padding))
    return torch.empty(shape, dtype=x.dtype, device=x.device, memory_format=memory_format(x, weight, bias, stride,
                                                                                            padding))


def autocast_rule(args, device_type, dtype):
    """Under autocast on CUDA a float32 x is read in the autocast dtype (as torch's convolutions
    run there: the op is memory-bound, half the bytes), on the CPU x is taken as it comes; the
    weight and bias are float32 for half x, accumulation float32 (float64 for float64 x)."""
    x, weight, bias, stride, padding = args
    if device_type == "cuda" and x.dtype == torch.float32:
        x = x.to(dtype)
    wdt = torch.float32 if x.dtype in _op.HALF_DTYPES else x.dtype

    def cast(t):
        return t.to(wdt) if isinstance(t, torch.Tensor) and t.is_floating_point() else t

    return x, cast(weight), cast(bias), stride, padding


def _basic_only(x, weight, bias, stride, padding) -> Optional[str]:
    """The rule of a backend whose kernels take stride 1, 'same' padding and no bias only."""
    ks = tuple(weight.shape[1:])
    same = [(k - 1) // 2 for k in ks]
    if any(k % 2 == 0 for k in ks) or list(stride) != [1, 1, 1] or list(padding) != same or bias is not None:
        return ("its kernels take stride 1, 'same' padding of odd kernels and no bias only; got kernel "
                f"{ks}, stride {tuple(stride)}, padding {tuple(padding)}, bias {'given' if bias is not None else 'None'}")
    return None


_TRITON: dict = {}  # "module", "general": found on first use outside torch.compile's tracing


def _triton_info() -> dict:
    """The Triton module and whether its forward takes the op's full arguments (x, weight, bias,
    stride, padding); until it does, the op adapts to its (x, weight) form. Importing is not
    traced: under torch.compile before any eager use, nothing is known yet (the rule below is
    then the conservative one)."""
    if "general" not in _TRITON and not torch.compiler.is_compiling():
        from .._triton import kernels
        K = kernels("depthwise_conv3d")
        _TRITON.update(module=K, general=len(inspect.signature(K.forward).parameters) >= 5)
    return _TRITON


def _triton_forward(x, weight, bias, stride, padding):
    info = _triton_info()
    K = info["module"]
    return K.forward(x, weight, bias, stride, padding) if info["general"] else K.forward(x, weight)


def _triton_backward(grad_y, x, weight, bias, stride, padding, need_x, need_weight, need_bias):
    info = _triton_info()
    K = info["module"]
    if info["general"]:
        return K.backward(grad_y, x, weight, bias, stride, padding, need_x, need_weight, need_bias)
    gx, gw = K.backward(grad_y, x, weight, need_x, need_weight)
    return gx, gw, x.new_empty((0,))


def _triton_supports(x, weight, bias, stride, padding) -> Optional[str]:
    info = _triton_info()
    if info.get("general"):
        rule = getattr(info["module"], "supports", None)
        return rule(x, weight, bias, stride, padding) if rule is not None else None
    return _basic_only(x, weight, bias, stride, padding)


def _backward_fake(grad_y, x, weight, bias, stride, padding, need_x, need_weight, need_bias):
    gb = x.new_empty((0,)) if bias is None else torch.empty_like(bias, memory_format=torch.contiguous_format)
    return (torch.empty_like(x, memory_format=memory_format(grad_y, x)),
            torch.empty_like(weight, memory_format=torch.contiguous_format), gb)


OP = _op.Op(
    OP_NAME,
    "(Tensor x, Tensor weight, Tensor? bias, int[3] stride, int[3] padding) -> Tensor y",
    check=check_args,
    fake=_fake,
    backends={
        "reference": _op.Impl(reference_forward, reference_backward),
        "cpu": _op.cpp("_depthwise_conv3d"),
        "cuda": _op.cpp("_depthwise_conv3d"),
        "triton": _op.Impl(_triton_forward, _triton_backward, supports=_triton_supports,
                           module="depthwise_conv3d"),
    },
    needs_input_grad=True,   # backward(grad_y, x, weight, bias, stride, padding, need_x, need_weight, need_bias)
    backward_fake=_backward_fake,
    output_format=memory_format,
    autocast=autocast_rule,
    eager={"cpu": _op.cpp_autograd("_depthwise_conv3d")},
)


_FAST_DTYPES = (torch.float32, torch.float64)


def _cpu_eager_call(x, weight, bias, stride, padding):
    """The common eager CPU call, straight to the C++ eager path; None sends the call down the op's
    full path (argument coercion and checks, backend choice, the custom op). stride and padding
    come resolved, the weight as (C, kt, kh, kw) where it was nn.Conv3d's.

    Inside a network each public call's Python runs with cold caches (the layers' data evicted the
    interpreter): the full path cost 0.1-0.2 ms a call there, as much as the kernel at X3D's small
    frames. This takes only calls that the full path would accept and send to the same kernel:
    plain float32/float64 CPU tensors with data, a depthwise weight of x's dtype, a (C,) bias, a
    padding that leaves an output, no backend requested (argument, use_backend or environment),
    and nothing that must see the custom op (vidops._op's _plain_eager)."""
    plain = _op._PLAIN_TENSOR_TYPES
    if type(x) not in plain or type(weight) not in plain or (bias is not None and type(bias) not in plain):
        return None
    dt = x.dtype
    if (dt not in _FAST_DTYPES or weight.dtype is not dt or x.device.type != "cpu" or weight.device.type != "cpu"
            or x.layout is not torch.strided or weight.layout is not torch.strided or x.dim() != 5
            or weight.dim() != 4 or weight.shape[0] != x.shape[1]):
        return None
    if bias is not None and (bias.dtype is not dt or bias.device.type != "cpu" or bias.layout is not torch.strided
                             or bias.dim() != 1 or bias.shape[0] != x.shape[1]):
        return None
    if any(L + 2 * q < k for L, q, k in zip(x.shape[2:], padding, weight.shape[1:])):
        return None
    eager = OP.eager.get("cpu")
    if eager is None or not (_dispatch.default_is(OP_NAME, "cpu") and _op._plain_eager((x, weight, bias), "cpu")):
        return None
    return eager(x, weight, bias, stride, padding)


def depthwise_conv3d(x: torch.Tensor, weight: torch.Tensor, bias: Optional[torch.Tensor] = None, stride=1,
                     padding="same", *, backend: Optional[str] = None) -> torch.Tensor:
    """Channel-wise 3-D convolution of a clip (operators.md §2), nn.Conv3d(C, C, k, stride, padding,
    groups=C, bias=...) as one op:

        y[n,c,to,ho,wo] = bias[c] + sum_{a<kt, b<kh, e<kw} w[c,a,b,e] * x[n,c, to*st+a-pt, ho*sh+b-ph, wo*sw+e-pw]

    with zeros outside x and output size Lo = floor((L + 2p - k) / s) + 1 on every axis.

    Args:
        x: (N, C, T, H, W), any strides (channels_last_3d too); N may be 0.
        weight: (C, kt, kh, kw), any kernel sizes, or nn.Conv3d's depthwise (C, 1, kt, kh, kw).
            Same dtype as x, or float32 when x is float16/bfloat16.
        bias: None or (C,), the weight's dtype rule.
        stride: a positive int or (st, sh, sw).
        padding: "same" (zero padding (k-1)/2 per axis, odd kernels only: the output keeps x's
            size at stride 1), a non-negative int or (pt, ph, pw).
        backend: "cpu", "cuda", "triton" or "reference"; None picks the fastest available
            (see vidops.use_backend and VIDOPS_BACKEND).

    Half precision is read as is and accumulated in float32. Under torch.autocast a float32 x is
    read in the autocast dtype on CUDA and as is on the CPU. Differentiable in x, weight and bias
    (the weight and bias gradients are deterministic reductions on every backend).

    Returns: (N, C, To, Ho, Wo) in x's dtype, a fresh tensor in x's layout (channels_last_3d for a
    channels_last_3d x, else contiguous); grad_x has x's layout likewise.
    """
    weight = _as_weight(weight)
    stride = resolve_stride(stride)
    if isinstance(weight, torch.Tensor) and weight.dim() == 4:
        padding = resolve_padding(padding, tuple(weight.shape[1:]))
    elif not isinstance(padding, str):
        padding = resolve_padding(padding, (1, 1, 1))
    else:
        padding = [0, 0, 0]  # the weight's own error comes first
    if backend is None or backend == "cpu":
        y = _cpu_eager_call(x, weight, bias, stride, padding)
        if y is not None:
            return y
    return OP(x, weight, bias, stride, padding, backend=backend)
