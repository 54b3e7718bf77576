"""The skeleton every vidops op is built on: one declaration gives the torch.library custom ops
(forward and backward, each with a fake), the autograd formula, the backend choice and the
argument checks.

Declaring an op (vidops/ops/<op>.py)::

    from .. import _op

    def check_args(f): ...                        # raises "vidops.<op>: <arg> must ..., got ..."

    OP = _op.Op(
        "temporal_relation",
        "(Tensor f) -> Tensor u",                 # the forward schema, without `backend`
        check=check_args,                         # run ONCE per call, before the backend choice
        fake=lambda f: f.new_empty(...),          # the outputs' shapes and dtypes
        backends={
            "reference": _op.Impl(reference_forward, reference_backward),
            "cpu": _op.cpp("_temporal_relation"),      # torch.ops.vidops._temporal_relation_fwd/_bwd
            "cuda": _op.cpp("_temporal_relation"),
            "triton": _op.triton("temporal_relation"),  # vidops.triton_kernels.temporal_relation
        },
        autocast=_op.keep_dtypes,                 # what the op takes under torch.autocast
    )

    def temporal_relation(f, *, backend=None):
        \"\"\"The public function: its docstring gives the formula.\"\"\"
        return OP(f, backend=backend)

That is all. From the declaration the skeleton builds:

- `vidops::<op>` (the schema plus `str? backend`) and `vidops::<op>_backward`, real custom ops
  with fakes, so torch.library.opcheck passes and torch.compile(fullgraph=True) does not break.
  The backward schema is derived: one `grad_<output>` per differentiable output, then the forward
  arguments; it returns one gradient per Tensor input (an empty (0,) tensor for an input passed as
  None). `backward=`, `save=` and `grads_of=` replace the derived one where an op needs more (the
  attention's saved output and statistics); `needs_input_grad=True` appends one `bool need_<arg>`
  per gradient so a backend can skip the ones nobody asked for.
- `OP(*args, backend=None)`: the argument types are checked from the schema (a float, list or
  None where a Tensor belongs, a bool where a number belongs, a sparse tensor: a clear error naming
  op and argument), the autocast rule applies, `check` runs once, the backend is chosen from the
  inputs (vidops._dispatch: backend=, use_backend/set_backend, VIDOPS_BACKEND*, then the op's
  preference), and the forward custom op runs with the chosen backend's name.
- The chosen name is an input of the forward op and is recorded in the autograd context, so the
  backward runs on the backend that ran the forward, wherever `.backward()` is called.
- Inputs with no elements whose outputs have no elements return those empty outputs (and zero
  gradients) before any backend runs, so every backend agrees on empty batches and zero-size dims.
- Outputs are fresh tensors, contiguous unless `output_format=` keeps an input's layout (a backend's view of an input is copied), gradients come
  back in their inputs' dtypes; a None output gradient reaches the backends as zeros.
- Backends run with autocast off: under torch.autocast the op's own rule (`autocast=`, run in
  the public call while autocast is on for the inputs' device) decides the dtypes, not the
  autocast of the PyTorch ops inside a backend.

`eager={"cpu": _op.cpp_autograd("_<op>")}` gives a backend an eager call path: a C++ op with its
autograd formula in C++ (`torch.ops.vidops._<op>_autograd`) that computes what the backend's
forward and backward compute. `OP(...)` takes it, after the argument checks and the backend
choice, for plain eager calls only (see `_plain_eager`: no torch.compile, tracing, torch function
or dispatch mode, functorch transform, autocast or tensor subclass); everything else, and every
direct call of `vidops::<op>`, goes through the custom op.

Checks that read tensor data (e.g. "basis must be finite") belong in the backends' forward
(inside the custom op), not in `check`: torch.compile traces `check`, and reading data there
breaks the graph. `post=(outputs, *args) -> outputs` converts every backend's result (a dtype
rule the backends do not all follow).

A backend is an `Impl(forward, backward)`: forward takes the forward op's arguments, backward
the backward op's. Its availability has two parts: the device-level rule (by backend name:
"reference" always, "cpu"/"cuda" when the device matches and, for `cpp(...)`, the extension
registered the kernel, "triton" when Triton runs on the device; `available=` replaces it) and the
input rule `supports(*inputs) -> None or the reason`, e.g. a dtype or head-dim limit. The
automatic choice skips a backend whose rule gives a reason (logged at DEBUG on
"vidops.dispatch"); an explicit choice raises vidops.BackendUnavailableError with the reason.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional, Sequence

import torch

from . import _checks, _dispatch

OPS: dict = {}  # name -> Op, every op declared on the skeleton (vidops.export walks it)

CPP_FIRST = {"cpu": ("cpu", "reference"), "cuda": ("cuda", "triton", "reference")}
HALF_DTYPES = (torch.float16, torch.bfloat16)


def acc_dtype(dtype: torch.dtype) -> torch.dtype:
    """The accumulation dtype of every vidops kernel: float64 stays float64, the rest float32."""
    return torch.float64 if dtype == torch.float64 else torch.float32


# ---- backends -----------------------------------------------------------------------------------

@dataclass
class Impl:
    """One backend of an op: forward(*forward args) and backward(*backward args) (None: the op is
    not differentiable on this backend). `available(device)` replaces the device-level rule of the
    backend's name; `supports(*inputs)` is the input rule (None, or why these inputs cannot run)."""
    forward: Callable
    backward: Optional[Callable] = None
    supports: Optional[Callable[..., Optional[str]]] = None
    available: Optional[Callable[[torch.device], Optional[str]]] = None
    kernel: Optional[str] = None   # the C++ op prefix, for the cpu/cuda device rule
    module: Optional[str] = None   # the Triton module, for the triton device rule


class _Lazy:
    """A callable found on first use (torch.ops.vidops.*, a Triton module's function), then kept."""

    def __init__(self, find: Callable[[], Callable]):
        self._find, self._fn = find, None

    def __call__(self, *args):
        if self._fn is None:
            self._fn = self._find()
        return self._fn(*args)


def cpp(kernel: str, supports=None) -> Impl:
    """The C++ kernels `torch.ops.vidops.<kernel>_fwd` / `<kernel>_bwd`, called with the op's own
    arguments (the dispatch key picks the CPU or the CUDA kernel: use it for "cpu" and "cuda")."""
    return Impl(_Lazy(lambda: getattr(torch.ops.vidops, f"{kernel}_fwd")),
                _Lazy(lambda: getattr(torch.ops.vidops, f"{kernel}_bwd")), supports=supports, kernel=kernel)


def triton(module: str, supports=None) -> Impl:
    """`vidops.triton_kernels.<module>.forward` / `.backward`, imported on first use (importing
    triton costs seconds), called with the op's own arguments."""

    def find(name):
        def get():
            from ._triton import kernels
            return getattr(kernels(module), name)
        return get

    return Impl(_Lazy(find("forward")), _Lazy(find("backward")), supports=supports, module=module)


def cpp_autograd(kernel: str) -> Callable:
    """The eager call path `torch.ops.vidops.<kernel>_autograd` (forward and autograd in C++),
    called with the op's own arguments; found on first use."""
    return _Lazy(lambda: getattr(torch.ops.vidops, f"{kernel}_autograd").default)


_PLAIN_TENSOR_TYPES = (torch.Tensor, torch.nn.Parameter)


def _plain_eager(args, device_type: str) -> bool:
    """Whether this call can take an op's eager C++ path: plain tensors with data, run eagerly, with
    nothing that has to see the op as `vidops::<op>` (torch.compile and torch.export trace with
    fake or functional tensors, the TorchScript tracer records ops, FlopCounterMode and other
    dispatch modes read op names, functorch transforms and autocast need the custom op's rules)."""
    for t in args:
        if isinstance(t, torch.Tensor) and (type(t) not in _PLAIN_TENSOR_TYPES or t.numel() == 0):
            return False
    return not (_autocast_on(device_type) or torch.compiler.is_compiling() or torch.jit.is_tracing()
                or torch._C._is_torch_function_mode_enabled() or torch._C._len_torch_dispatch_stack()
                or torch._C._functorch.peek_interpreter_stack() is not None)


def _device_rule(op: str, name: str, impl: Impl):
    if impl.available is not None:
        return impl.available
    if name == "reference":
        return _dispatch.always
    if name == "triton":
        return _dispatch.triton_kernel(impl.module or op)
    if impl.kernel is not None:
        kernel = f"{impl.kernel}_fwd"
        return _dispatch.cpu_kernel(kernel) if name == "cpu" else _dispatch.cuda_kernel(kernel)
    return _dispatch.on_device(name)


# ---- autocast rules -------------------------------------------------------------------------------

def keep_dtypes(args: tuple, device_type: str, dtype: torch.dtype) -> tuple:
    """Under autocast the op takes its inputs as they come (a half tensor is read as is and
    accumulated in float32) and returns the dtype it returns outside autocast."""
    return args


# ---- the schema -------------------------------------------------------------------------------------

@dataclass(frozen=True)
class _Arg:
    type: str
    name: str
    default: Optional[str] = None

    @property
    def is_tensor(self) -> bool:
        return self.type in ("Tensor", "Tensor?")

    def text(self) -> str:
        return f"{self.type} {self.name}" + ("" if self.default is None else f"={self.default}")


def _parse(schema: str):
    """"(Tensor x, int k=1) -> (Tensor a, Tensor b)" -> ([args], [output names])."""
    head, _, ret = schema.partition("->")
    inner = head.strip()[1:-1].strip()
    args = []
    for item in filter(None, (a.strip() for a in inner.split(","))):
        decl, _, default = item.partition("=")
        typ, name = decl.split()
        args.append(_Arg(typ, name, default.strip() or None))
    ret = ret.strip()
    outs = [r.strip() for r in (ret[1:-1] if ret.startswith("(") else ret).split(",")]
    names = [o.split()[1] if len(o.split()) > 1 else f"out{i}" for i, o in enumerate(outs)]
    return args, names


def _returns(names: Sequence[str]) -> str:
    return names and (f"Tensor {names[0]}" if len(names) == 1 else
                      "(" + ", ".join(f"Tensor {n}" for n in names) + ")")


_TYPE_WORDS = {"Tensor": "a torch.Tensor", "Tensor?": "a torch.Tensor or None", "int": "an int",
               "int?": "an int or None", "float": "a real number", "float?": "a real number or None",
               "str": "a str", "str?": "a str or None", "bool": "a bool"}


def _int_list_words(t: str) -> str:
    """"int[3]" -> "a list of 3 ints", "int[]" -> "a list of ints"."""
    n = t[len("int["):-1]
    return f"a list of {n} ints" if n else "a list of ints"


def _type_error(op: str, arg: _Arg, value) -> TypeError:
    shown = repr(value) if not isinstance(value, torch.Tensor) else f"a {value.layout} tensor"
    if len(shown) > 60:
        shown = shown[:57] + "..."
    words = _int_list_words(arg.type) if arg.type.startswith("int[") else _TYPE_WORDS.get(arg.type, arg.type)
    return TypeError(f"vidops.{op}: {arg.name} must be {words}, "
                     f"got {type(value).__name__} {shown}")


def _coerce(op: str, arg: _Arg, value):
    """value as the schema's type wants it, or a TypeError naming op and argument."""
    t = arg.type
    if t.endswith("?") and value is None:
        return None
    base = t.rstrip("?")
    if base == "Tensor":
        if not isinstance(value, torch.Tensor):
            raise _type_error(op, arg, value)
        if value.layout != torch.strided:
            raise TypeError(f"vidops.{op}: {arg.name} must be a dense (strided) tensor, got a "
                            f"{value.layout} tensor (call .to_dense() first)")
        return value
    if base == "bool":
        if not isinstance(value, bool):
            raise _type_error(op, arg, value)
        return value
    if base == "int":
        if isinstance(value, bool) or not isinstance(value, int):
            raise _type_error(op, arg, value)
        return value
    if base == "float":
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise _type_error(op, arg, value)
        return float(value)
    if base == "str":
        if not isinstance(value, str):
            raise _type_error(op, arg, value)
        return value
    if base.startswith("int["):
        n = base[len("int["):-1]
        if (not isinstance(value, (list, tuple)) or (n and len(value) != int(n))
                or any(isinstance(v, bool) or not isinstance(v, int) for v in value)):
            raise _type_error(op, arg, value)
        return list(value)
    return value


_FORMAT_DIM = {torch.channels_last: 4, torch.channels_last_3d: 5}


def _format_for(t: torch.Tensor, memory_format) -> torch.memory_format:
    """`memory_format` where it fits t's rank (channels_last: 4-D, channels_last_3d: 5-D), else
    contiguous: an op's layout rule applies to its results of that rank (a 5-D gradient follows
    a channels_last_3d input, the op's 1-D or 4-D weight gradient stays contiguous)."""
    need = _FORMAT_DIM.get(memory_format)
    return memory_format if need is None or t.dim() == need else torch.contiguous_format


def _fresh(out: torch.Tensor, inputs, memory_format=torch.contiguous_format) -> torch.Tensor:
    """out as a tensor in `memory_format` (contiguous unless the op says otherwise; the format
    applies where it fits out's rank) sharing no memory with any of `inputs`."""
    memory_format = _format_for(out, memory_format)
    if out.numel():
        ptr = out.untyped_storage().data_ptr()
        for t in inputs:
            if isinstance(t, torch.Tensor) and t.numel() and t.untyped_storage().data_ptr() == ptr:
                return out.clone(memory_format=memory_format)
    return out.contiguous(memory_format=memory_format)


def _autocast_on(device_type: str) -> bool:
    """torch.is_autocast_enabled for the device type; False where autocast does not exist (meta)."""
    try:
        return torch.is_autocast_enabled(device_type)
    except RuntimeError:
        return False


def _no_autocast(device_type: str):
    return torch.autocast(device_type, enabled=False)


# ---- the op ----------------------------------------------------------------------------------------

class Op:
    """A vidops op: see the module docstring.

    Args:
        name: the op's name: `vidops::<name>` and `vidops::<name>_backward`.
        schema: the forward schema without `backend`, e.g. "(Tensor x, int k) -> Tensor y".
        check: (*args) -> None, raising ValueError/TypeError "vidops.<name>: <arg> must ...".
        fake: (*args) -> the outputs' empty tensors (shapes, dtypes; new_empty of an input).
        backends: backend name -> Impl; preference: device type -> backend names, fastest first.
        post: (outputs, *args) -> outputs, run on every backend's forward result (dtype rules).
        autocast: (args, device_type, autocast dtype) -> args, applied in the public call while
            autocast is on for the inputs' device (default keep_dtypes).
        nondifferentiable: names of outputs that get no gradient (e.g. saved statistics).
        differentiable: names of the Tensor inputs that get a gradient (default: all of them).
        needs_input_grad: pass `bool need_<arg>` per gradient to the backward.
        backward: the backward schema (without `backend`), when the derived one does not fit;
            then also save(*args, outputs) -> the backward arguments after the gradients, and
            grads_of: the forward input each backward output is the gradient of.
        backward_fake: (*backward args) -> gradients; default: empty_like of each input.
        output_format: (*forward or backward args) -> the memory format of the op's results
            (default contiguous), for ops whose output keeps its input's layout; it applies to
            the results of its rank (channels_last_3d: the 5-D ones), the others are contiguous;
            the fakes must give the same (the derived backward fake does).
        backward_autograd: (setup_context, backward) registered as the autograd formula of the
            backward op itself, for ops whose gradient is differentiable again (double backward).
        eager: backend name -> the eager call path of that backend (`cpp_autograd(...)`), taken by
            plain eager calls (see the module docstring).
    """

    def __init__(self, name: str, schema: str, *, check: Callable, fake: Callable, backends: dict,
                 preference: Optional[dict] = None, post: Optional[Callable] = None,
                 autocast: Callable = keep_dtypes, nondifferentiable: Sequence[str] = (),
                 differentiable: Optional[Sequence[str]] = None, needs_input_grad: bool = False,
                 backward: Optional[str] = None, save: Optional[Callable] = None,
                 grads_of: Optional[Sequence[str]] = None, backward_fake: Optional[Callable] = None,
                 output_format: Optional[Callable] = None, backward_autograd: Optional[tuple] = None,
                 eager: Optional[dict] = None):
        self.eager = dict(eager or {})
        self.name, self.check, self.fake, self.post, self.autocast = name, check, fake, post, autocast
        self.args, self.outputs = _parse(schema)
        self._index = {a.name: i for i, a in enumerate(self.args)}
        self._first_tensor = next(i for i, a in enumerate(self.args) if a.type == "Tensor")
        self.grad_outputs = [i for i, o in enumerate(self.outputs) if o not in nondifferentiable]
        diff = differentiable or [a.name for a in self.args if a.is_tensor]
        self.grads_of = list(grads_of or diff)
        self.needs_input_grad = needs_input_grad
        if backward is None:
            if save is not None or grads_of is not None:
                raise ValueError(f"vidops._op: {name}: save= and grads_of= need a backward= schema")
            grads = [_Arg("Tensor", f"grad_{self.outputs[i]}") for i in self.grad_outputs]
            flags = [_Arg("bool", f"need_{n}") for n in self.grads_of] if needs_input_grad else []
            bargs = grads + list(self.args) + flags
            backward = "(" + ", ".join(a.text() for a in bargs) + ") -> " + _returns(
                [f"grad_{n}" for n in self.grads_of])
        self.backward_args, _ = _parse(backward)
        self._bindex = {a.name: i for i, a in enumerate(self.backward_args)}
        self._save = save
        self._backward_fake = backward_fake
        self._output_format = output_format

        _dispatch.register_op(name, preference or CPP_FIRST)
        self.impls = dict(backends)
        for bname, impl in self.impls.items():
            _dispatch.register_backend(name, bname, _device_rule(name, bname, impl), impl, impl.supports)

        fwd_schema = "(" + ", ".join([a.text() for a in self.args] + ["str? backend=None"]) + ") -> " + \
            _returns(self.outputs)
        self.forward_op = torch.library.custom_op(f"vidops::{name}", self._forward_impl, mutates_args=(),
                                                  schema=fwd_schema)
        self.forward_op.register_fake(lambda *a, **kw: self.fake(*self._split(a, kw, self.args)[0]))
        bwd_schema = backward.replace(") ->", ", str? backend=None) ->", 1)
        self.backward_op = torch.library.custom_op(f"vidops::{name}_backward", self._backward_impl,
                                                   mutates_args=(), schema=bwd_schema)
        self.backward_op.register_fake(
            lambda *a, **kw: self._grads_fake(self._split(a, kw, self.backward_args)[0]))
        self.forward_op.register_autograd(self._backward, setup_context=self._setup_context)
        if backward_autograd is not None:
            setup, grad = backward_autograd
            self.backward_op.register_autograd(grad, setup_context=setup)
        OPS[name] = self

    # -- the public call ---------------------------------------------------------------------------

    def __call__(self, *args, backend: Optional[str] = None):
        if backend is not None and not isinstance(backend, str):
            raise TypeError(f"vidops.{self.name}: backend must be a str (one of "
                            f"{', '.join(_dispatch.BACKENDS)}) or None, got {type(backend).__name__} {backend!r}")
        if len(args) != len(self.args):
            raise TypeError(f"vidops.{self.name}: takes {len(self.args)} arguments "
                            f"({', '.join(a.name for a in self.args)}), got {len(args)}")
        args = tuple(_coerce(self.name, a, v) for a, v in zip(self.args, args))
        device = args[self._first_tensor].device
        if _autocast_on(device.type):
            args = tuple(self.autocast(args, device.type, torch.get_autocast_dtype(device.type)))
        self.check(*args)
        name = _dispatch.choose(self.name, device, backend, args)
        eager = self.eager.get(name)
        if eager is not None and _plain_eager(args, device.type):
            return eager(*args)
        return self.forward_op(*args, name)

    def backend(self, name: str):
        """The registered backend `name` (its .impl has forward/backward)."""
        return _dispatch.registered_ops()[self.name].backends[name]

    # -- the custom ops' kernels -------------------------------------------------------------------

    def _chosen(self, args, backend):
        return backend or _dispatch.choose(self.name, args[self._first_tensor].device, None, args)

    @staticmethod
    def _split(all_args, kw, schema_args):
        """(the op's arguments, backend) of a custom-op call, whether backend came by keyword."""
        n = len(schema_args)
        args = list(all_args[:n]) + [kw[a.name] for a in schema_args[len(all_args):n]]
        backend = all_args[n] if len(all_args) > n else kw.get("backend")
        return args, backend

    def _forward_impl(self, *all_args, **kw):
        args, backend = self._split(all_args, kw, self.args)
        name = self._chosen(args, backend)
        if any(isinstance(t, torch.Tensor) and t.numel() == 0 for t in args):
            empty = self.fake(*args)
            multi = isinstance(empty, tuple)
            if all(o.numel() == 0 for o in (empty if multi else (empty,))):
                return empty
        device_type = args[self._first_tensor].device.type
        impl = self.backend(name).impl
        if _autocast_on(device_type):
            with _no_autocast(device_type):
                out = impl.forward(*args)
        else:
            out = impl.forward(*args)
        if self.post is not None:
            out = self.post(out, *args)
        fmt = self._format(args)
        if isinstance(out, (tuple, list)):
            return tuple(_fresh(o, args, fmt) for o in out)
        return _fresh(out, args, fmt)

    def reference_forward(self, *all_args, **kw):
        """The forward op computed by the reference backend in plain PyTorch (the `post` dtype
        rule applied): what the op decomposes into where its custom op cannot go (ONNX). The
        data-dependent checks are skipped: a traced graph cannot raise."""
        args, _ = self._split(all_args, kw, self.args)
        with _checks.no_data_checks():
            out = self.backend("reference").impl.forward(*args)
        if self.post is not None:
            out = self.post(out, *args)
        return tuple(out) if isinstance(out, (tuple, list)) else out

    def _format(self, args):
        return torch.contiguous_format if self._output_format is None else self._output_format(*args)

    def _grads_fake(self, bargs):
        if self._backward_fake is not None:
            return self._backward_fake(*bargs)
        like = next(t for t in bargs if isinstance(t, torch.Tensor))
        fmt = self._format(bargs)
        out = []
        for n in self.grads_of:
            t = bargs[self._bindex[n]]
            out.append(like.new_empty((0,)) if t is None else
                       torch.empty_like(t, memory_format=_format_for(t, fmt)))
        return tuple(out) if len(out) > 1 else out[0]

    def _backward_impl(self, *all_args, **kw):
        bargs, backend = self._split(all_args, kw, self.backward_args)
        n = len(self.grad_outputs)
        if all(g.numel() == 0 for g in bargs[:n]):  # nothing flows back
            res = self._grads_fake(bargs)
            return tuple(g.zero_() for g in res) if isinstance(res, tuple) else res.zero_()
        like = next(t for t in bargs if isinstance(t, torch.Tensor))
        name = backend or _dispatch.choose(self.name, like.device)
        impl = self.backend(name).impl
        if impl.backward is None:
            raise RuntimeError(f"vidops.{self.name}: the {name} backend has no backward")
        if _autocast_on(like.device.type):
            with _no_autocast(like.device.type):
                res = impl.backward(*bargs)
        else:
            res = impl.backward(*bargs)
        res = tuple(res) if isinstance(res, (tuple, list)) else (res,)
        out = []
        for gname, g in zip(self.grads_of, res):
            # an input the backward does not take (a linear op's gradient needs only grad_y) has
            # the first tensor argument's shape, dtype and layout
            t = bargs[self._bindex[gname]] if gname in self._bindex else like
            if t is None:
                out.append(like.new_empty((0,)))
            elif g is None:
                out.append(torch.zeros_like(t, memory_format=_format_for(t, self._format(bargs))))
            else:
                out.append(_fresh(g.to(t.dtype), bargs, self._format(bargs)))
        return tuple(out) if len(out) > 1 else out[0]

    # -- autograd ----------------------------------------------------------------------------------

    def _setup_context(self, ctx, inputs, output):
        *args, backend = inputs
        outs = output if isinstance(output, tuple) else (output,)
        ctx.backend = self._chosen(args, backend)  # the backward runs where the forward ran
        for i, o in enumerate(outs):
            if i not in self.grad_outputs:
                ctx.mark_non_differentiable(o)
        ctx.grad_like = [(outs[i].shape, outs[i].dtype, outs[i].device) for i in self.grad_outputs]
        ctx.none_inputs = {a.name for a, v in zip(self.args, args) if a.is_tensor and v is None}
        saved = tuple(self._save(*args, outs)) if self._save is not None else tuple(args)
        kinds = self.backward_args[len(self.grad_outputs):]
        ctx.save_for_backward(*[v for a, v in zip(kinds, saved) if a.is_tensor])
        ctx.consts = [(i, v) for i, (a, v) in enumerate(zip(kinds, saved)) if not a.is_tensor]

    def _backward(self, ctx, *grads):
        tensors = iter(ctx.saved_tensors)
        consts = dict(ctx.consts)
        n_saved = len(self.backward_args) - len(self.grad_outputs) - (len(self.grads_of) if self.needs_input_grad else 0)
        saved = [consts[i] if i in consts else next(tensors) for i in range(n_saved)]
        gs = []
        for j, i in enumerate(self.grad_outputs):
            g = grads[i]
            if g is None:
                shape, dtype, device = ctx.grad_like[j]
                g = torch.zeros(shape, dtype=dtype, device=device)
            gs.append(g)
        needed = [ctx.needs_input_grad[self._index[n]] and n not in ctx.none_inputs for n in self.grads_of]
        result = [None] * (len(self.args) + 1)
        if not any(needed):
            return tuple(result)
        flags = needed if self.needs_input_grad else []
        res = self.backward_op(*gs, *saved, *flags, ctx.backend)
        res = res if isinstance(res, tuple) else (res,)
        for n, g, need in zip(self.grads_of, res, needed):
            if need:
                result[self._index[n]] = g
        return tuple(result)
