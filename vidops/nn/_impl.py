"""The `impl` switch of the vidops.nn layers.

Every layer the models use has an `impl` attribute, "vidops" (default: the fused custom ops) or
"reference" (plain PyTorch written as the authors' code runs the layer, calling
vidops.reference directly). Both read the same parameters, so a model gives the same outputs
from the same weights in either; the attribute can be changed after construction
(vidops.models.set_impl sets it on every submodule).
"""
from __future__ import annotations

IMPLS = ("vidops", "reference")


def uses_reference(module) -> bool:
    """True for impl "reference", False for "vidops"; any other value raises."""
    impl = getattr(module, "impl", "vidops")
    if impl == "reference":
        return True
    if impl == "vidops":
        return False
    raise ValueError(f"vidops.nn.{type(module).__name__}: impl must be one of {IMPLS}, got {impl!r}")
