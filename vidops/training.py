"""Joint training of a PWTP module and a classifier (thesis 3.5.4, operators.md §3.4).

The Dynamic Appearance Net minimises alpha * L1 + (1 - alpha) * L2 over the PWTP parameters
Theta1 (L1 = ENoPR, L2 = the classification loss), and L2 over the classifier's Theta2. alpha is
fixed, scheduled (`scale_schedule`, eq. 3.19) or chosen per step by MGDA (`mgda_alpha`, eq. 3.18);
`joint_training_step` runs one step of the thesis's Algorithm 1.
"""
from __future__ import annotations

import math
import numbers
from collections import abc
from typing import Callable, Optional, Sequence, Union

import torch
import torch.nn.functional as F

GradLike = Union[torch.Tensor, Sequence[Optional[torch.Tensor]]]


def _check_grad(name: str, t) -> None:
    if not isinstance(t, torch.Tensor):
        raise TypeError(f"vidops.mgda_alpha: {name} must be a tensor (None for zero in a sequence), "
                        f"got {type(t).__name__}")
    if t.is_complex() or not t.is_floating_point():
        raise TypeError(f"vidops.mgda_alpha: {name} must be a real floating-point tensor, got {t.dtype}")


def _dense(t: torch.Tensor) -> torch.Tensor:
    """Sparse gradients (nn.Embedding(sparse=True), COO/CSR/...) as their dense values."""
    return t if t.layout == torch.strided else t.to_dense()


def _pairs(g1: GradLike, g2: GradLike) -> list:
    """[(a, b)] of the flattened per-parameter gradients (a zero tensor for None), checked:
    both tensors of one shape, or equally long sequences of tensors of pairwise equal shapes."""
    if isinstance(g1, torch.Tensor) or isinstance(g2, torch.Tensor):
        _check_grad("g1", g1)
        _check_grad("g2", g2)
        if g1.shape != g2.shape:
            raise ValueError(f"vidops.mgda_alpha: g1 and g2 must have the same shape, got "
                             f"{tuple(g1.shape)} and {tuple(g2.shape)}")
        return [(_dense(g1).reshape(-1), _dense(g2).reshape(-1))]
    for name, g in (("g1", g1), ("g2", g2)):
        if isinstance(g, (str, bytes)) or not isinstance(g, abc.Sequence):
            raise TypeError(f"vidops.mgda_alpha: {name} must be a tensor or a sequence of per-parameter "
                            f"tensors, got {type(g).__name__}")
    if len(g1) != len(g2):
        raise ValueError(f"vidops.mgda_alpha: g1 and g2 must hold one gradient per shared parameter each, "
                         f"got {len(g1)} and {len(g2)} tensors")
    pairs = []
    for i, (a, b) in enumerate(zip(g1, g2)):
        if a is None and b is None:
            continue
        for name, t in ((f"g1[{i}]", a), (f"g2[{i}]", b)):
            if t is not None:
                _check_grad(name, t)
        a = torch.zeros_like(_dense(b)) if a is None else _dense(a)
        b = torch.zeros_like(a) if b is None else _dense(b)
        if a.shape != b.shape:
            raise ValueError(f"vidops.mgda_alpha: g1[{i}] and g2[{i}] must have the same shape, got "
                             f"{tuple(a.shape)} and {tuple(b.shape)}")
        pairs.append((a.reshape(-1), b.reshape(-1)))
    return pairs


def mgda_alpha(g1: GradLike, g2: GradLike) -> torch.Tensor:
    """MGDA's weight of the first task (thesis eq. 3.18), the minimiser over [0, 1] of
    ||alpha g1 + (1 - alpha) g2||^2:

        alpha = clip(((g2 - g1) . g2) / ||g1 - g2||^2, 0, 1)

    g1, g2: the gradients of L1 and L2 w.r.t. the shared parameters, as tensors of one shape or as
    equally long sequences of per-parameter tensors of pairwise equal shapes (None means zero);
    real floating point, dense or sparse (sparse ones are densified). When g1 == g2 every alpha gives the same combined gradient; 0.5 is
    returned (never NaN). alpha does not change when both gradients are scaled by the same factor,
    so they are divided by max(|g1|, |g2|) first: float32 gradients of any finite magnitude (1e30
    or 1e-30) give the same alpha, no overflow or underflow of the squares. Returns a 0-d float
    tensor (float64 for float64 gradients, else float32) on the gradients' device, without a host
    sync.
    """
    pairs = _pairs(g1, g2)
    devices = {t.device for pair in pairs for t in pair}
    if len(devices) > 1:
        raise ValueError(f"vidops.mgda_alpha: all gradients must be on one device, got {sorted(map(str, devices))}")
    dt = torch.float64 if any(t.dtype == torch.float64 for pair in pairs for t in pair) else torch.float32
    device = devices.pop() if devices else torch.device("cpu")
    a = torch.cat([p[0].to(dt) for p in pairs]) if pairs else torch.zeros(0, dtype=dt, device=device)
    b = torch.cat([p[1].to(dt) for p in pairs]) if pairs else torch.zeros(0, dtype=dt, device=device)
    if a.numel() == 0:
        return torch.full((), 0.5, dtype=dt, device=device)
    scale = torch.maximum(a.abs().amax(), b.abs().amax())
    scale = torch.where(scale > 0, scale, torch.ones_like(scale))
    a, b = a / scale, b / scale
    diff = a - b
    den = diff.dot(diff)
    num = -diff.dot(b)
    safe = torch.where(den > 0, den, torch.ones_like(den))
    return torch.where(den > 0, num / safe, torch.full_like(den, 0.5)).clamp(0.0, 1.0)


def _real(name: str, value) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value):
        raise ValueError(f"vidops.scale_schedule: {name} must be a finite real number, got {value!r}")
    return float(value)


def scale_schedule(step: int, total_steps: int, gamma: float = 0.2, lam: float = 0.3) -> float:
    """The scale scheduler of thesis eq. 3.19: alpha for iteration `step` (0-based) of `total_steps`.

    Read from the thesis with m = step + 1 (1-based iteration) and M = total_steps:

        m <  gamma M:  alpha = 1/2 (1 + cos(pi log_b m)),   b = (gamma M)^(pi / arccos(2 lam - 1))
                             = 1/2 (1 + cos(arccos(2 lam - 1) ln m / ln(gamma M)))
        m >= gamma M:  alpha = lam/2 (1 + cos(pi min(1, log_{(1 - gamma) M} k))),
                       k = m - m0 + 1 the iteration count within the second phase (m0 its first m)

    so alpha falls from 1 at m = 1 along a log-scaled cosine to lam at m = gamma M (continuous),
    then from lam to 0 at m = M. The typeset equation in the available thesis text is garbled (its
    log bases are flattened and the second branch reads log_{(1-gamma)M} m, which is not lam at
    m = gamma M); this is the reading that meets the stated boundary values. gamma in (0, 1) (the
    text says "gamma >= 1" but the experiments use 0.1 to 0.5), lam in (0, 1]; table 3.9 uses
    (gamma, lam) = (0.1, 0.1), (0.2, 0.3), (0.5, 0.3). step and total_steps are ints (steps
    outside [0, total_steps) are clamped to it).
    """
    if isinstance(total_steps, bool) or not isinstance(total_steps, numbers.Integral) or total_steps < 1:
        raise ValueError(f"vidops.scale_schedule: total_steps must be a positive int, got {total_steps!r}")
    if isinstance(step, bool) or not isinstance(step, numbers.Integral):
        raise ValueError(f"vidops.scale_schedule: step must be an int, got {step!r}")
    total_steps, step = int(total_steps), int(step)
    gamma, lam = _real("gamma", gamma), _real("lam", lam)
    if not 0.0 < gamma < 1.0:
        raise ValueError(f"vidops.scale_schedule: gamma must be in (0, 1), got {gamma}")
    if not 0.0 < lam <= 1.0:
        raise ValueError(f"vidops.scale_schedule: lam must be in (0, 1], got {lam}")
    m = min(max(step, 0), total_steps - 1) + 1
    switch = gamma * total_steps
    if m < switch:
        # switch > m >= 1; ln(switch) > 0 unless switch == 1, which m < switch excludes
        return 0.5 * (1.0 + math.cos(math.acos(2.0 * lam - 1.0) * math.log(m) / math.log(switch)))
    m0 = max(1, math.ceil(switch))
    k = m - m0 + 1
    base = (1.0 - gamma) * total_steps
    frac = 1.0 if base <= 1.0 and k > 1 else (0.0 if base <= 1.0 else min(1.0, math.log(k) / math.log(base)))
    return 0.5 * lam * (1.0 + math.cos(math.pi * frac))


def joint_training_step(pwtp: torch.nn.Module, classifier: torch.nn.Module, optimizer: torch.optim.Optimizer,
                        clip: torch.Tensor, target: torch.Tensor, *,
                        alpha: Union[str, float, torch.Tensor] = "mgda", num_segments: int = 1,
                        criterion: Optional[Callable] = None) -> dict:
    """One step of the thesis's Algorithm 1 (joint training of the Dynamic Appearance Net).

        segments: clip (N, C, S*T, H, W) -> S segments of T frames, folded into the batch
        pbar, enopr = pwtp(segments)                    dynamic appearance (N*S, C, H, W), ENoPR
        logits = mean over segments of classifier(pbar) (average consensus)
        L1 = enopr.mean(),  L2 = criterion(logits, target)  (cross-entropy by default)
        g1 = dL1/dTheta1, g2 = dL2/dTheta1 (Theta1: pwtp's parameters)
        alpha = mgda_alpha(g1, g2) (alpha="mgda"), or the given number (e.g. scale_schedule(...))
        Theta1.grad = alpha g1 + (1 - alpha) g2;  Theta2.grad = dL2/dTheta2;  optimizer.step()

    The optimizer must hold the parameters of both modules. Gradients already in .grad are
    replaced. Returns {"alpha", "l1", "l2"} as Python floats.
    """
    criterion = criterion or F.cross_entropy
    N, C, ST, H, W = clip.shape
    if ST % num_segments:
        raise ValueError(f"vidops.joint_training_step: clip has {ST} frames, not a multiple of "
                         f"num_segments={num_segments}")
    S, T = num_segments, ST // num_segments
    segments = clip.reshape(N, C, S, T, H, W).transpose(1, 2).reshape(N * S, C, T, H, W)
    pbar, enopr = pwtp(segments)
    logits = classifier(pbar)
    logits = logits.reshape(N, S, *logits.shape[1:]).mean(1)
    l1 = enopr.mean()
    l2 = criterion(logits, target)
    p1 = [p for p in pwtp.parameters() if p.requires_grad]
    p2 = [p for p in classifier.parameters() if p.requires_grad]
    g2 = torch.autograd.grad(l2, p1 + p2, retain_graph=True, allow_unused=True)
    g1 = torch.autograd.grad(l1, p1, allow_unused=True)
    g21, g22 = g2[:len(p1)], g2[len(p1):]
    if isinstance(alpha, str):
        if alpha != "mgda":
            raise ValueError(f"vidops.joint_training_step: alpha must be 'mgda' or a number, got {alpha!r}")
        a = mgda_alpha(g1, g21)
    else:
        a = torch.as_tensor(float(alpha))
    for p, ga, gb in zip(p1, g1, g21):
        ga = torch.zeros_like(p) if ga is None else ga
        gb = torch.zeros_like(p) if gb is None else gb
        p.grad = (a.to(p.dtype) * ga + (1 - a.to(p.dtype)) * gb).detach()
    for p, g in zip(p2, g22):
        p.grad = torch.zeros_like(p) if g is None else g.detach()
    optimizer.step()
    return {"alpha": float(a), "l1": float(l1.detach()), "l2": float(l2.detach())}
