"""`import vidops` stays light (checked by what it loads, not by timing) and its subpackages are
reachable as attributes."""
import subprocess
import sys
import textwrap

import torch

# modules `import torch` does not load and vidops must not load at import: the first call that
# needs one loads it
HEAVY = ("torch._dynamo", "torch._inductor", "triton", "sympy", "onnx", "onnxscript", "onnxruntime",
         "vidops.models", "vidops.export", "vidops.bench", "av", "matplotlib")


def _run(code: str) -> str:
    out = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    return out.stdout


def test_import_vidops_loads_no_heavy_module():
    loaded = _run(f"""
        import sys
        import torch
        before = set(sys.modules)
        import vidops
        print(sorted(m for m in {HEAVY!r} if m in sys.modules and m not in before))
    """).strip()
    assert loaded == "[]", f"import vidops loaded {loaded}"


def test_subpackages_are_attributes_after_import_vidops():
    out = _run("""
        import vidops
        m = vidops.models.tsm_resnet50(3, num_segments=2)
        print(type(m).__name__, callable(vidops.export.export_onnx), callable(vidops.nn.TemporalShift),
              "models" in dir(vidops))
    """).split()
    assert out == ["TSMResNet50", "True", "True", "True"]


def test_unknown_attribute_is_an_attribute_error():
    import vidops

    try:
        vidops.no_such_thing
    except AttributeError as e:
        assert "no_such_thing" in str(e)
    else:
        raise AssertionError("vidops.no_such_thing did not raise AttributeError")


def test_the_constant_mark_is_the_public_decorators():
    """vidops._dispatch marks its device-level rule constant for torch.compile without importing
    torch._dynamo; the mark must be the one torch.compiler.assume_constant_result sets."""
    from vidops import _dispatch

    def f():
        return 0

    marked = torch.compiler.assume_constant_result(f)
    attrs = {k: v for k, v in vars(marked).items()}
    assert attrs == {"_dynamo_marked_constant": True}, attrs
    assert vars(_dispatch._device_reason).get("_dynamo_marked_constant") is True


def test_onnx_decompositions_are_registered_at_import():
    out = _run("""
        import vidops, torch
        from torch._decomp import decomposition_table
        from vidops import _op
        print(all(getattr(torch.ops.vidops, n).default in decomposition_table for n in _op.OPS), len(_op.OPS))
    """).split()
    assert out[0] == "True" and int(out[1]) >= 8
