"""vidops.temporal_relation (operators.md §3.1, thesis eq. 3.9): every backend against the float64 reference,
the reference against the equation written as a loop, gradients, errors, opcheck and compile."""
import pytest
import torch

import vidops
from vidops.ops.temporal_relation import OP as TR_OP
from vidops.reference.temporal_relation import temporal_relation as ref
from vidops.reference.temporal_relation import temporal_relation_backward as ref_bwd

from conftest import device_backend_params
from tolerance import assert_close_to_reference

OP = "temporal_relation"
PARAMS = device_backend_params(OP)
SHAPES = [(2, 24, 8, 7, 9), (1, 1, 2, 3, 5), (1, 64, 16, 4, 3), (3, 5, 4, 17, 1)]


@pytest.mark.parametrize("device,backend", PARAMS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
def test_forward_backward_match_reference(device, backend, dtype, shape):
    f = torch.randn(*shape, dtype=dtype, device=device)
    fr = f.clone().requires_grad_()
    u = vidops.temporal_relation(fr, backend=backend)
    scale = f.double().square().amax(1).unsqueeze(1)   # the summed products f1 * f2
    r64 = ref(f.double())
    assert_close_to_reference(u, r64, ref(f), abs_scale=scale, name="u")
    gu = torch.randn_like(u)
    g, = torch.autograd.grad(u, fr, gu)
    g64 = ref_bwd(gu.double(), f.double())
    gscale = gu.abs().max() * f.abs().max() * shape[2]
    assert_close_to_reference(g, g64, ref_bwd(gu, f), abs_scale=gscale, name="grad_f")


def test_reference_is_the_equation():
    N, C, T, h, w = 2, 3, 5, 2, 3
    f = torch.randn(N, C, T, h, w, dtype=torch.float64)
    u = ref(f)
    k = 0
    for t1 in range(T):
        for t2 in range(t1 + 1, T):
            want = sum(f[:, c, t1] * f[:, c, t2] for c in range(C)) / C
            torch.testing.assert_close(u[:, k], want)
            k += 1
    assert u.shape == (N, T * (T - 1) // 2, h, w)


@pytest.mark.parametrize("device,backend", PARAMS)
def test_non_contiguous_and_empty(device, backend):
    f = torch.randn(2, 4, 6, 5, 7, dtype=torch.float64, device=device)
    want = vidops.temporal_relation(f, backend=backend)
    for fi in (f.to(memory_format=torch.channels_last_3d), f.transpose(3, 4).contiguous().transpose(3, 4),
               torch.stack([f, -f], 3).flatten(2, 3)[:, :, ::2]):
        torch.testing.assert_close(vidops.temporal_relation(fi, backend=backend), want, rtol=1e-13, atol=1e-13)
    e = torch.randn(0, 4, 6, 5, 7, device=device, requires_grad=True)
    u = vidops.temporal_relation(e, backend=backend)
    assert u.shape == (0, 15, 5, 7)
    u.sum().backward()
    assert e.grad.shape == e.shape


@pytest.mark.parametrize("device,backend", PARAMS)
def test_gradcheck(device, backend):
    f = torch.randn(2, 3, 4, 3, 5, dtype=torch.float64, device=device, requires_grad=True)
    assert torch.autograd.gradcheck(lambda a: vidops.temporal_relation(a, backend=backend), (f,), fast_mode=True)


@pytest.mark.parametrize("args,exc,msg", [
    ((torch.randn(2, 3, 4, 5),), ValueError, "f must be 5-D"),
    ((torch.randn(2, 3, 1, 5, 5),), ValueError, "T >= 2"),
    ((torch.randn(2, 0, 4, 5, 5),), ValueError, "C' >= 1"),
    ((torch.randn(2, 3, 4, 5, 5).long(),), TypeError, "floating"),
    (("f",), TypeError, "torch.Tensor"),
])
def test_bad_inputs(args, exc, msg):
    with pytest.raises(exc, match="vidops.temporal_relation: .*" + msg):
        vidops.temporal_relation(*args)


@pytest.mark.parametrize("device,backend", PARAMS)
def test_opcheck_and_compile(device, backend):
    f = torch.randn(2, 3, 5, 4, 3, device=device, requires_grad=True)
    torch.library.opcheck(TR_OP.forward_op, (f, backend))
    torch._dynamo.reset()
    fn = lambda a: vidops.temporal_relation(a, backend=backend).square().sum()  # noqa: E731
    want = fn(f)
    got = torch.compile(fn, fullgraph=True, backend="aot_eager")(f)
    torch.testing.assert_close(got, want)
    torch.testing.assert_close(torch.autograd.grad(got, f)[0], torch.autograd.grad(want, f)[0])
