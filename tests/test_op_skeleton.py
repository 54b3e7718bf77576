"""The op skeleton (vidops._op): the backward runs on the forward's backend, availability rules
that see the inputs, the explicit-choice errors, opcheck and torch.compile(fullgraph=True) for
every op."""
import logging
import sys

import pytest
import torch

import vidops
from vidops import _dispatch

from conftest import backends_for

F64 = torch.float64


def _inputs(op: str, dtype=F64):
    """Small inputs of every op, in its public call's order (k=None: the RNL case)."""
    g = torch.Generator().manual_seed(1)

    def r(*shape):
        return torch.randn(*shape, generator=g, dtype=dtype)

    if op == "motion_band_pass":
        return (r(2, 3, 5, 6, 7), r(3, 3, 3), r(3, 3), 1, "reflect", "replicate")
    if op == "busy_quiet":
        return (r(1, 2, 6, 6, 7), r(2, 3, 3), r(2, 3), "mean_minus_busy", 0.5)
    if op == "depthwise_conv3d":
        return (r(2, 3, 4, 5, 6), r(3, 3, 3, 3), r(3), [1, 2, 1], [1, 0, 2])
    if op == "temporal_relation":
        return (r(2, 3, 4, 3, 5),)
    if op == "pixelwise_temporal_projection":
        return (r(2, 3, 4, 5, 6), r(2, 8, 3, 3), 1e-6)
    if op == "temporal_squeeze":
        return (r(2, 3, 5, 4, 4), r(2, 5, 2), 1e-6)
    if op == "region_attention":
        return (r(2, 8, 21), r(2, 5, 21), None, "softmax")
    raise KeyError(op)


OPS = ["motion_band_pass", "busy_quiet", "depthwise_conv3d", "temporal_relation",
       "pixelwise_temporal_projection", "temporal_squeeze", "region_attention"]


def _skeleton(op: str):
    return sys.modules[f"vidops.ops.{op}"].OP


def _grad_inputs(args):
    return tuple(a.clone().requires_grad_(True) if isinstance(a, torch.Tensor) else a for a in args)


def _loss(out):
    outs = out if isinstance(out, tuple) else (out,)
    return sum((o.double() * (1 + torch.arange(o.numel(), dtype=F64).reshape(o.shape) % 3)).sum()
               for o in outs if o.is_floating_point() and o.requires_grad)


class _Spy:
    def __init__(self, fn):
        self.fn, self.calls = fn, 0

    def __call__(self, *args):
        self.calls += 1
        return self.fn(*args)


def _spy_backwards(monkeypatch, op):
    """Counters on the backward of every backend of `op` (busy_quiet: of motion_band_pass, which
    its backward runs)."""
    spies = {}
    target = "motion_band_pass" if op == "busy_quiet" else op
    for name, b in _dispatch.registered_ops()[target].backends.items():
        spy = _Spy(b.impl.backward)
        monkeypatch.setattr(b.impl, "backward", spy)
        spies[name] = spy
    return spies


# ---- the backward runs where the forward ran -----------------------------------------------------

@pytest.mark.parametrize("op", OPS)
def test_backward_uses_the_backend_of_the_forward(monkeypatch, op):
    spies = _spy_backwards(monkeypatch, op)
    args = _grad_inputs(_inputs(op))
    with vidops.use_backend("reference"):
        out = getattr(vidops, op)(*args)
    with vidops.use_backend("triton"):  # another backend is asked for when .backward() runs
        _loss(out).backward()
    assert spies["reference"].calls == 1
    assert all(s.calls == 0 for name, s in spies.items() if name != "reference")


def test_backward_uses_the_backend_of_the_forward_under_env(monkeypatch):
    spies = _spy_backwards(monkeypatch, "temporal_relation")
    f, = _grad_inputs(_inputs("temporal_relation"))
    monkeypatch.setenv("VIDOPS_BACKEND_TEMPORAL_RELATION", "reference")
    u = vidops.temporal_relation(f)
    monkeypatch.setenv("VIDOPS_BACKEND_TEMPORAL_RELATION", "triton")
    u.sum().backward()
    assert spies["reference"].calls == 1 and spies["triton"].calls == 0


def test_busy_quiet_backward_does_not_pass_its_request_to_the_band_pass():
    """busy_quiet(backend="reference") differentiates on the reference even where
    motion_band_pass alone is told to use another backend."""
    clip, sw, tw, quiet, scale = _grad_inputs(_inputs("busy_quiet"))
    busy, q = vidops.busy_quiet(clip, sw, tw, quiet, scale, backend="reference")
    with vidops.use_backend(motion_band_pass="cuda"):  # would raise if the backward asked for it
        (busy.sum() + q.sum()).backward()
    assert clip.grad is not None and torch.isfinite(clip.grad).all()


# ---- availability from the inputs --------------------------------------------------------------

def _dtype_rule(f):
    return "this backend takes no bfloat16 (test rule)" if f.dtype == torch.bfloat16 else None


@pytest.fixture
def cpu_backend_without_bf16(monkeypatch):
    """temporal_relation's cpu backend replaced by the reference implementation with a dtype rule."""
    backends = _dispatch.registered_ops()["temporal_relation"].backends
    ref = backends["reference"].impl
    monkeypatch.setitem(backends, "cpu", _dispatch.Backend("cpu", _dispatch.always, ref, _dtype_rule))


def test_automatic_choice_skips_a_backend_by_dtype_with_a_logged_reason(cpu_backend_without_bf16, caplog):
    f = torch.randn(1, 2, 3, 2, 2)
    assert _dispatch.choose("temporal_relation", f.device, None, (f,)) == "cpu"
    with caplog.at_level(logging.DEBUG, logger="vidops.dispatch"):
        chosen = _dispatch.choose("temporal_relation", f.device, None, (f.bfloat16(),))
    assert chosen == "reference"
    assert "skipped cpu: this backend takes no bfloat16 (test rule)" in caplog.text
    u = vidops.temporal_relation(f.bfloat16())  # runs, on the reference
    assert u.dtype == torch.bfloat16


def test_explicit_choice_that_cannot_run_these_inputs_says_why(cpu_backend_without_bf16):
    f = torch.randn(1, 2, 3, 2, 2, dtype=torch.bfloat16)
    with pytest.raises(vidops.BackendUnavailableError) as info:
        vidops.temporal_relation(f, backend="cpu")
    text = str(info.value)
    assert "vidops.temporal_relation: backend 'cpu'" in text and "cannot run this call" in text
    assert "takes no bfloat16" in text and "  reference: available" in text
    with vidops.use_backend("cpu"), pytest.raises(vidops.BackendUnavailableError, match="use_backend"):
        vidops.temporal_relation(f)


def test_input_rules_are_reported_by_reasons(cpu_backend_without_bf16):
    f = torch.randn(1, 2, 3, 2, 2, dtype=torch.bfloat16)
    why = _dispatch.reasons("temporal_relation", f.device, (f,))
    assert why["cpu"] == "this backend takes no bfloat16 (test rule)" and why["reference"] is None
    assert _dispatch.reasons("temporal_relation", f.device)["cpu"] is None  # device rules only


def test_cuda_input_rules_of_the_band_pass():
    mbp = sys.modules["vidops.ops.motion_band_pass"]
    x, tw = torch.empty(1, 1, 3, 2, 2), torch.empty(1, 3)
    assert mbp.cuda_limits(x, torch.empty(1, 3, 3), tw, 1) is None
    assert "up to 1023" in mbp.cuda_limits(x, torch.empty(1, 1025, 1025), tw, 1)
    assert "2^30" in mbp.cuda_limits(x, torch.empty(1, 3, 3), tw, 1 << 31)


def test_explicit_backend_errors():
    args = _inputs("temporal_relation")
    with pytest.raises(vidops.BackendUnavailableError) as info:
        vidops.temporal_relation(*args, backend="cuda")
    assert "runs on CUDA tensors" in str(info.value) and "  cuda:" in str(info.value)
    with pytest.raises(vidops.BackendUnavailableError, match="unknown backend 'fast'"):
        vidops.temporal_relation(*args, backend="fast")
    with pytest.raises(TypeError, match=r"vidops.temporal_relation: backend must be a str .* got int 3"):
        vidops.temporal_relation(*args, backend=3)


def test_device_facts_are_asked_once(monkeypatch):
    """The dispatcher query behind a C++ backend's availability is cached."""
    from vidops import _ext

    vidops.temporal_relation(*_inputs("temporal_relation"))  # the first call may ask
    calls = []
    real = torch._C._dispatch_has_kernel_for_dispatch_key
    monkeypatch.setattr(torch._C, "_dispatch_has_kernel_for_dispatch_key",
                        lambda *a: calls.append(a) or real(*a))
    for _ in range(3):
        vidops.temporal_relation(*_inputs("temporal_relation"))
    _ext.has_kernel("_temporal_relation_fwd", "CPU")
    assert len(calls) == 0


# ---- torch.library integration -------------------------------------------------------------------

def _backward_args(op, args, outs):
    sk = _skeleton(op)
    outs = outs if isinstance(outs, tuple) else (outs,)
    grads = [torch.randn_like(outs[i]) for i in sk.grad_outputs]
    saved = list(sk._save(*args, outs)) if sk._save is not None else list(args)
    flags = [True] * len(sk.grads_of) if sk.needs_input_grad else []
    return (*grads, *saved, *flags)


@pytest.mark.parametrize("op", OPS)
def test_opcheck(op):
    sk = _skeleton(op)
    for backend in [b for b in ("reference", "cpu") if b in backends_for(op)]:
        args = _grad_inputs(_inputs(op))
        torch.library.opcheck(sk.forward_op, (*args, backend))
        plain = _inputs(op)
        outs = sk.forward_op(*plain, backend)
        torch.library.opcheck(sk.backward_op, (*_backward_args(op, plain, outs), backend))


@pytest.mark.parametrize("op", OPS)
def test_compile_fullgraph_forward_and_backward(op):
    torch._dynamo.reset()
    fn = getattr(vidops, op)

    def f(*args):
        return _loss(fn(*args, backend="reference"))

    compiled = torch.compile(f, fullgraph=True, backend="aot_eager")
    args = _grad_inputs(_inputs(op))
    eager_args = _grad_inputs(_inputs(op))
    got, want = compiled(*args), f(*eager_args)
    torch.testing.assert_close(got, want)
    got.backward()
    want.backward()
    for a, b in zip(args, eager_args):
        if isinstance(a, torch.Tensor):
            torch.testing.assert_close(a.grad, b.grad)


def test_compile_guards_on_the_backend_choice(monkeypatch):
    """A compiled call follows use_backend: the choice is guarded, not frozen at the first trace."""
    torch._dynamo.reset()
    spies = _spy_backwards(monkeypatch, "temporal_relation")
    compiled = torch.compile(lambda f: vidops.temporal_relation(f).sum(), fullgraph=True, backend="aot_eager")
    f, = _grad_inputs(_inputs("temporal_relation"))
    with vidops.use_backend("reference"):
        compiled(f).backward()
    assert spies["reference"].calls == 1
    if "triton" in backends_for("temporal_relation"):
        with vidops.use_backend("triton"):
            compiled(f).backward()
        assert spies["triton"].calls == 1 and spies["reference"].calls == 1
