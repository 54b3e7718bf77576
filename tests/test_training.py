"""MGDA weight (thesis eq. 3.18), the scale scheduler (eq. 3.19) and one joint training step."""
import math

import pytest
import torch

import vidops


@pytest.mark.parametrize("g1,g2,want", [
    ([1.0, 0.0], [0.0, 1.0], 0.5),     # orthogonal, equal norms: the midpoint
    ([2.0, 0.0], [0.0, 1.0], 0.2),     # ((g2-g1).g2) / |g1-g2|^2 = 1 / 5
    ([1.0, 1.0], [2.0, 2.0], 1.0),     # g1 shorter and parallel: all weight on g1 (clipped 2 -> 1)
    ([2.0, 2.0], [1.0, 1.0], 0.0),     # g2 shorter: all weight on g2 (clipped -1 -> 0)
    ([1.0, -1.0], [-1.0, 1.0], 0.5),   # opposite: the combination vanishes at 1/2
    ([0.3, 0.4], [0.3, 0.4], 0.5),     # equal: any alpha, 0.5 without NaN
    ([0.0, 0.0], [0.0, 0.0], 0.5),
])
def test_mgda_alpha_known_values(g1, g2, want):
    a = vidops.mgda_alpha(torch.tensor(g1), torch.tensor(g2))
    assert a.dim() == 0 and math.isclose(a.item(), want, abs_tol=1e-6)


def test_mgda_alpha_minimises_the_combined_norm():
    g1 = [torch.randn(3, 4), None, torch.randn(5)]
    g2 = [torch.randn(3, 4), torch.randn(2), torch.randn(5)]
    a = vidops.mgda_alpha(g1, g2).item()
    f1 = torch.cat([g1[0].flatten(), torch.zeros(2), g1[2]])
    f2 = torch.cat([g2[0].flatten(), g2[1], g2[2]])
    norm = lambda t: (t * f1 + (1 - t) * f2).norm().item()  # noqa: E731
    grid = torch.linspace(0, 1, 1001)
    best = grid[torch.tensor([norm(t) for t in grid]).argmin()].item()
    assert abs(a - best) <= 1e-3
    with pytest.raises(ValueError, match="vidops.mgda_alpha"):
        vidops.mgda_alpha(torch.zeros(3), torch.zeros(4))


@pytest.mark.parametrize("gamma,lam", [(0.1, 0.1), (0.2, 0.3), (0.5, 0.3)])
def test_scale_schedule(gamma, lam):
    M = 1000
    a = [vidops.scale_schedule(m, M, gamma, lam) for m in range(M)]
    assert a[0] == pytest.approx(1.0)
    s = int(gamma * M) - 1                                       # iteration m = s + 1 = gamma M
    assert a[s] == pytest.approx(lam)                            # both phases meet at lam
    assert a[s - 1] == pytest.approx(lam, abs=0.01)
    assert a[-1] == pytest.approx(0.0, abs=1e-6)
    assert all(x >= y - 1e-12 for x, y in zip(a, a[1:]))         # non-increasing
    assert all(0.0 <= x <= 1.0 for x in a)


def test_joint_training_step():
    torch.manual_seed(0)
    pwtp = vidops.nn.PixelWiseTemporalProjection(in_channels=3, T=4, D=1, conv_channels=4)
    classifier = torch.nn.Sequential(torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(3, 5))
    opt = torch.optim.SGD(list(pwtp.parameters()) + list(classifier.parameters()), lr=0.1)
    clip = torch.randn(2, 3, 8, 16, 16)            # 2 segments of 4 frames
    target = torch.tensor([1, 3])
    before = [p.detach().clone() for p in pwtp.parameters()]
    out = vidops.joint_training_step(pwtp, classifier, opt, clip, target, num_segments=2)
    assert set(out) == {"alpha", "l1", "l2"} and 0.0 <= out["alpha"] <= 1.0
    assert any(not torch.equal(a, p) for a, p in zip(before, pwtp.parameters()))
    out2 = vidops.joint_training_step(pwtp, classifier, opt, clip, target, num_segments=2, alpha=0.25)
    assert out2["alpha"] == 0.25


def test_mgda_alpha_sparse_gradients():
    """Sparse gradients (an nn.Embedding(sparse=True)) give the alpha of their dense values, as a
    tensor pair and inside a per-parameter sequence next to a None."""
    emb = torch.nn.Embedding(10, 3, sparse=True)
    emb(torch.tensor([1, 4, 4])).sum().backward()
    g1 = emb.weight.grad.coalesce()
    g2 = torch.randn(10, 3)
    want = vidops.mgda_alpha(g1.to_dense(), g2)
    torch.testing.assert_close(vidops.mgda_alpha(g1, g2), want)
    torch.testing.assert_close(vidops.mgda_alpha(g2.to_sparse(), g1), vidops.mgda_alpha(g2, g1.to_dense()))
    torch.testing.assert_close(vidops.mgda_alpha([g1, None], [g2, torch.ones(2)]),
                               vidops.mgda_alpha([g1.to_dense(), torch.zeros(2)], [g2, torch.ones(2)]))
    torch.testing.assert_close(vidops.mgda_alpha(g2.to_sparse_csr(), g1), vidops.mgda_alpha(g2, g1.to_dense()))
