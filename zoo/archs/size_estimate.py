"""Parameter count, layer count and activation size of an architecture spec, by integer arithmetic alone.

:func:`check_architecture` is what every build passes through (:func:`zoo.archs.build_architecture`, a model
folder's ``config.json``, an nnU-Net plan). It reads the spec key by key (types first: a count must be an
``int``, not a ``bool`` nor a ``float``; then the per-key limits of :mod:`zoo.archs.limits`), mirrors the
constructors of :mod:`zoo.archs` layer by layer, counting instead of allocating, and refuses the spec when the
whole network is above a limit. No tensor is allocated, no module is constructed, nothing named in the spec is
imported (class names go through the table of :mod:`zoo.archs.ops`).

The parameter count equals ``sum(p.numel() for p in model.parameters())`` of the network the builder makes;
``layers`` counts conv, transposed-conv and linear layers; with a patch size (nnU-Net U-Nets) ``activations`` is
the number of elements those layers output in one forward pass at batch size 1 (the layers that run: with
``deep_supervision`` off only the last segmentation head). The test suite checks all three against real
networks (every registry entry, several nnU-Net plans), so the limits are trustworthy.

The check also refuses what the builders would refuse (unknown arguments, per-stage lists of the wrong length,
a ``head`` that does not fit ``num_classes``, ...), so a spec that passes it builds.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, NamedTuple, Sequence

from torch import nn

from . import ops
from .limits import (
    MAX_ACTIVATIONS,
    MAX_CHANNELS,
    MAX_CLASSES,
    MAX_KERNEL,
    MAX_LAYERS,
    MAX_PARAMETERS,
    MAX_PER_STAGE,
    MAX_STAGES,
    ArchitectureSpecError,
)
from .ops import shown

#: how a key of the spec is shown in messages (``'features_per_stage[2]'`` -> where it sits in the file)
Namer = Callable[[str], str]

_MISSING: Any = object()

#: builder arguments that sit outside ``arch_kwargs`` (in a config.json: top-level keys)
BUILDER_ARGS = ("in_channels", "num_classes", "deep_supervision")

_UNET_OPS = {"conv_op", "conv_bias", "norm_op", "norm_op_kwargs", "dropout_op", "dropout_op_kwargs", "nonlin",
             "nonlin_kwargs"}
_ENCODER = {"n_stages", "features_per_stage", "kernel_sizes", "strides"} | _UNET_OPS
_PLAIN_ENCODER = _ENCODER | {"n_conv_per_stage", "nonlin_first"}
_RESIDUAL_ENCODER = _ENCODER | {"n_blocks_per_stage", "block", "bottleneck_channels", "stem_channels"}
_HEADED = {"in_channels", "num_classes", "deep_supervision", "n_conv_per_stage_decoder"}
#: arch_kwargs ``nnunet_encoder`` accepts and ignores (a whole plan's arch_kwargs may be given)
_DECODER_ONLY = {"n_conv_per_stage_decoder", "deep_supervision", "nonlin_first_decoder"}

#: architecture -> every argument its builder accepts (the test suite compares these with the signatures)
ARGUMENTS: dict[str, frozenset[str]] = {
    "genesis_unet3d": frozenset({"in_channels", "num_classes", "upstream_bn", "out_activation", "act"}),
    "med3d_resnet": frozenset({"depth", "in_channels", "num_classes", "head", "shortcut_type", "features_only",
                               "out_indices", "dilated"}),
    "plain_conv_unet": frozenset(_PLAIN_ENCODER | _HEADED),
    "residual_encoder_unet": frozenset(_RESIDUAL_ENCODER | _HEADED),
    "nested_unet": frozenset(_PLAIN_ENCODER | _HEADED | {"branch", "deep_supervision_mode"}),
    "ssl3d_unet_encoder": frozenset({"in_channels", "num_classes", "features_per_stage", "dropout", "norm_op_kwargs",
                                     "features_only"}),
    "nnunet_encoder": frozenset({"in_channels", "num_classes", "unet", "features_only"} | _DECODER_ONLY
                                | _PLAIN_ENCODER | _RESIDUAL_ENCODER),
    "stunet": frozenset({"in_channels", "num_classes", "deep_supervision", "n_stages", "features_per_stage",
                         "conv_op", "kernel_sizes", "strides", "n_blocks_per_stage"}),
}
ARGUMENTS["monai_segresnet"] = frozenset({"in_channels", "num_classes", "blocks_down", "blocks_up", "init_filters",
                                         "dropout_prob", "norm_groups", "deep_supervision"})
ARGUMENTS["monai_swinunetr"] = frozenset({"in_channels", "num_classes", "feature_size", "depths", "num_heads",
                                         "norm_name", "drop_rate", "attn_drop_rate", "dropout_path_rate", "normalize",
                                         "use_v2", "downsample", "deep_supervision"})
#: ``nnunet_encoder``: arguments of the encoder each ``unet`` builds
_ENCODER_ARGUMENTS = {"plain_conv_unet": _PLAIN_ENCODER, "residual_encoder_unet": _RESIDUAL_ENCODER}


def builder_key(key: str) -> str:
    """How a key is named in messages of :func:`zoo.archs.build_architecture`: ``arch_kwargs.<key>``, except
    the builder's own ``in_channels`` / ``num_classes`` / ``deep_supervision``."""
    root = key.split("[", 1)[0].split(".", 1)[0]
    return key if root in BUILDER_ARGS else f"arch_kwargs.{key}"


@dataclass(frozen=True)
class SizeEstimate:
    """What a spec builds: ``parameters`` (exact), ``layers`` (conv, transposed-conv and linear layers) and
    ``activations`` (their output elements in one forward at batch 1; ``None`` without a patch size)."""

    parameters: int
    layers: int
    activations: int | None = None


class _W(NamedTuple):
    """A channel count, the key that sets it (``None`` for the fixed widths of an architecture) and that key's
    value (a concatenation of skips has twice the channels its key sets)."""

    value: int
    key: str | None = None
    setting: int | None = None

    def times(self, factor: int) -> "_W":
        return _W(factor * self.value, self.key, self.shown)

    @property
    def shown(self) -> int:
        return self.value if self.setting is None else self.setting


class _Reader:
    """Typed, bounded reading of one spec; every message names the key through ``name_of``."""

    def __init__(self, kwargs: Mapping[str, Any], name_of: Namer) -> None:
        self.kwargs = kwargs
        self.name_of = name_of

    def fail(self, key: str, text: str) -> ArchitectureSpecError:
        where = self.name_of(key)
        return ArchitectureSpecError(where, f"{where} {text}")

    def only(self, allowed: frozenset[str] | set[str], what: str) -> None:
        unknown = sorted((k for k in self.kwargs if k not in allowed), key=str)
        if unknown:
            key = unknown[0] if isinstance(unknown[0], str) else shown(unknown[0])
            raise self.fail(key, f"is not an argument of {what} (unknown: {shown(unknown)}; its arguments: "
                                 f"{', '.join(sorted(allowed))})")

    def get(self, key: str, default: Any = _MISSING) -> Any:
        if key in self.kwargs:
            return self.kwargs[key]
        if default is _MISSING:
            raise self.fail(key, "is missing")
        return default

    def integer(self, key: str, value: Any, low: int, high: int, what: str) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.fail(key, f"must be an integer ({what}), got {shown(value)}")
        if value < low:
            raise self.fail(key, f"must be an integer >= {low} ({what}), got {value}")
        if value > high:
            raise self.fail(key, f"= {value} is above the limit {high:,} for {what} (zoo.archs.limits)")
        return value

    def width(self, key: str, value: Any) -> _W:
        return _W(self.integer(key, value, 1, MAX_CHANNELS, "channels"), key)

    def flag(self, key: str, default: Any = _MISSING) -> bool:
        value = self.get(key, default)
        if not isinstance(value, bool):
            raise self.fail(key, f"must be true or false, got {shown(value)}")
        return value

    def choice(self, key: str, choices: Sequence[Any], default: Any = _MISSING) -> Any:
        value = self.get(key, default)
        if not any(type(value) is type(c) and value == c for c in choices):
            raise self.fail(key, f"must be one of {', '.join(repr(c) for c in choices)}; got {shown(value)}")
        return value

    def number(self, key: str, default: Any, low: float, high: float, high_open: bool) -> float:
        value = self.get(key, default)
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        if ok:
            try:
                number = float(value)
            except OverflowError:
                ok = False
            else:
                ok = math.isfinite(number) and low <= number and (number < high if high_open else number <= high)
        if not ok:
            raise self.fail(key, f"must be a number in [{low:g}, {high:g}{')' if high_open else ']'}, "
                                 f"got {shown(value)}")
        return value

    def per_stage(self, key: str, n: int, value: Any = _MISSING) -> list[tuple[str, Any]]:
        """(key of the entry, entry) for each stage: a list of ``n`` entries, or one value for every stage."""
        value = self.get(key) if value is _MISSING else value
        if isinstance(value, (list, tuple)):
            if len(value) != n:
                raise self.fail(key, f"must have {n} entries (one per stage), got {len(value)}: {shown(value)}")
            return [(f"{key}[{i}]", v) for i, v in enumerate(value)]
        return [(key, value)] * n

    def axes(self, key: str, value: Any, dims: int, what: str) -> list[int]:
        """One value per spatial axis, each 1..MAX_KERNEL (one integer means the same on every axis)."""
        if isinstance(value, (list, tuple)):
            if len(value) != dims:
                raise self.fail(key, f"must be {dims} integers (one per spatial axis) or one integer, "
                                     f"got {shown(value)}")
            return [self.integer(f"{key}[{a}]", v, 1, MAX_KERNEL, what) for a, v in enumerate(value)]
        return [self.integer(key, value, 1, MAX_KERNEL, what)] * dims


@dataclass
class _Tally:
    """Running totals; ``largest`` remembers the biggest layer and the key that sizes it, for messages."""

    track: bool
    parameters: int = 0
    layers: int = 0
    activations: int = 0
    largest: tuple[int, _W] = (0, _W(0))
    depth_keys: list[tuple[str, Any]] = field(default_factory=list)
    widest: tuple[int, _W] = (0, _W(0))

    def layer(self, params: int, outputs: int | None, sized_by: _W) -> None:
        self.parameters += params
        self.layers += 1
        if outputs is not None:
            self.activations += outputs
            if outputs > self.widest[0]:
                self.widest = (outputs, sized_by)
        if params > self.largest[0]:
            self.largest = (params, sized_by)

    def add(self, params: int) -> None:
        self.parameters += params

    def conv(self, cin: _W, cout: _W, kernel: list[int], stride: list[int], bias: bool, size: list[int] | None,
             runs: bool = True) -> list[int] | None:
        """A same-padded convolution (padding (k - 1) // 2); returns the output size."""
        out = None if size is None else [max(0, (n + 2 * ((k - 1) // 2) - k) // s + 1)
                                         for n, k, s in zip(size, kernel, stride)]
        params = cin.value * cout.value * math.prod(kernel) + (cout.value if bias else 0)
        self.layer(params, cout.value * math.prod(out) if out is not None and runs else None, _wider(cin, cout))
        return out

    def transposed(self, cin: _W, cout: _W, stride: list[int], bias: bool, size: list[int] | None) -> list[int] | None:
        """A transposed convolution with kernel = stride (nnU-Net's upsampling)."""
        out = None if size is None else [n * s for n, s in zip(size, stride)]
        params = cin.value * cout.value * math.prod(stride) + (cout.value if bias else 0)
        self.layer(params, cout.value * math.prod(out) if out is not None else None, _wider(cin, cout))
        return out

    def linear(self, cin: _W, cout: _W, runs: bool) -> None:
        self.layer(cin.value * cout.value + cout.value, cout.value if runs and self.track else None,
                   _wider(cin, cout))


def _wider(a: _W, b: _W) -> _W:
    return a if a.value > b.value or (a.value == b.value and a.key is not None) else b


# ------------------------------------------------------------------------------------------ nnU-Net U-Nets
@dataclass(frozen=True)
class _Ops:
    """The op classes of an nnU-Net spec (from the table of :mod:`zoo.archs.ops`) and their arguments."""

    conv: type
    dims: int
    bias: bool
    norm: type | None
    norm_kwargs: dict[str, Any]
    nonlin: type | None
    nonlin_kwargs: dict[str, Any]

    def norm_parameters(self, channels: int, r: _Reader) -> int:
        cls, kw = self.norm, self.norm_kwargs
        if cls is None:
            return 0

        def arg(name: str) -> Any:
            return kw[name] if name in kw else ops.kwarg_default(cls, "norm_op", name)

        if cls is nn.GroupNorm:  # the blocks pass the channels as num_groups
            num = kw["num_channels"]
            if num % channels:
                raise r.fail("norm_op_kwargs.num_channels", (
                    f"= {num} is not divisible by {channels}, the channels of a GroupNorm layer (nnU-Net's blocks "
                    "pass them as num_groups)"))
            return num * int(arg("affine")) * (1 + int(arg("bias")))
        affine = arg("elementwise_affine") if cls is nn.LayerNorm else arg("affine")
        return channels * int(affine) * (1 + int(arg("bias")))

    def nonlin_parameters(self) -> int:
        if self.nonlin is nn.PReLU:
            return self.nonlin_kwargs.get("num_parameters", 1)
        return 0


def _read_ops(r: _Reader) -> _Ops:
    conv = ops.resolve_op(r.get("conv_op"), "conv_op", r.name_of("conv_op"))
    found = {role: ops.resolve_op(r.get(role, None), role, r.name_of(role))
             for role in ("norm_op", "dropout_op", "nonlin")}
    kwargs = {role: ops.check_op_kwargs(cls, r.get(ops.KWARGS_KEY[role], None), role, r.name_of(ops.KWARGS_KEY[role]))
              for role, cls in found.items()}
    return _Ops(conv, ops.CONV_DIMS[conv], r.flag("conv_bias", False), found["norm_op"], kwargs["norm_op"],
                found["nonlin"], kwargs["nonlin"])


@dataclass(frozen=True)
class _Stages:
    n: int
    width: list[_W]
    kernel: list[list[int]]
    stride: list[list[int]]
    blocks: list[int]


def _read_stages(t: _Tally, r: _Reader, o: _Ops, count_key: str) -> _Stages:
    n = r.integer("n_stages", r.get("n_stages"), 1, MAX_STAGES, "stages")
    width = [r.width(k, v) for k, v in r.per_stage("features_per_stage", n)]
    kernel = [r.axes(k, v, o.dims, "a kernel size per axis") for k, v in r.per_stage("kernel_sizes", n)]
    stride = [r.axes(k, v, o.dims, "a stride per axis") for k, v in r.per_stage("strides", n)]
    blocks = [r.integer(k, v, 1, MAX_PER_STAGE, "convs or blocks per stage") for k, v in r.per_stage(count_key, n)]
    t.depth_keys += [("n_stages", n), (count_key, r.get(count_key))]
    return _Stages(n, width, kernel, stride, blocks)


def _read_patch(value: Any, dims: int, patch_key: str) -> list[int] | None:
    if value is None:
        return None
    if not (isinstance(value, (list, tuple)) and len(value) == dims
            and all(isinstance(v, int) and not isinstance(v, bool) and v >= 1 for v in value)):
        raise ArchitectureSpecError(patch_key, f"{patch_key} must be {dims} positive integers (one per spatial axis), "
                                               f"got {shown(value)}")
    return list(value)


def _unit(t: _Tally, o: _Ops, r: _Reader, cin: _W, cout: _W, kernel: list[int], stride: list[int],
          size: list[int] | None, *, bias: bool | None = None, nonlin: bool = True) -> list[int] | None:
    """ConvDropoutNormReLU: conv, (dropout), norm, (nonlin)."""
    out = t.conv(cin, cout, kernel, stride, o.bias if bias is None else bias, size)
    t.add(o.norm_parameters(cout.value, r))
    if nonlin:
        t.add(o.nonlin_parameters())
    return out


def _plain_encoder(t: _Tally, o: _Ops, r: _Reader, cin: _W, st: _Stages, size: list[int] | None,
                   run_stages: int) -> list[list[int] | None]:
    ones = [1] * o.dims
    sizes = []
    for s in range(st.n):
        size = size if s < run_stages else None
        for c in range(st.blocks[s]):
            size = _unit(t, o, r, cin if c == 0 else st.width[s], st.width[s], st.kernel[s],
                         st.stride[s] if c == 0 else ones, size)
        cin = st.width[s]
        sizes.append(size)
    return sizes


def _residual_block(t: _Tally, o: _Ops, r: _Reader, block: str, cin: _W, cout: _W, mid: _W | None,
                    kernel: list[int], stride: list[int], size: list[int] | None) -> list[int] | None:
    ones = [1] * o.dims
    if block == "BottleneckD":
        assert mid is not None
        out = _unit(t, o, r, cin, mid, ones, ones, size)
        out = _unit(t, o, r, mid, mid, kernel, stride, out)
        out = _unit(t, o, r, mid, cout, ones, ones, out, nonlin=False)
    else:
        out = _unit(t, o, r, cin, cout, kernel, stride, size)
        out = _unit(t, o, r, cout, cout, kernel, ones, out, nonlin=False)
    t.add(o.nonlin_parameters())  # the nonlinearity after the addition
    if cin.value != cout.value:  # shortcut: average pooling when strided, then a 1x1 conv + norm
        pooled = size if size is None or stride == ones else [n // s for n, s in zip(size, stride)]
        _unit(t, o, r, cin, cout, ones, ones, pooled, bias=False, nonlin=False)
    return out


def _residual_encoder(t: _Tally, o: _Ops, r: _Reader, cin: _W, st: _Stages,
                      size: list[int] | None) -> list[list[int] | None]:
    ones = [1] * o.dims
    block = ops.resolve_block_name(r.get("block", "BasicBlockD"), r.name_of("block"))
    raw = r.get("bottleneck_channels", None)
    mids = [None if v is None else r.width(k, v) for k, v in r.per_stage("bottleneck_channels", st.n, raw)]
    if block == "BottleneckD" and any(m is None for m in mids):
        raise r.fail("bottleneck_channels", "is required with block BottleneckD (one width per stage)")
    stem_raw = r.get("stem_channels", None)
    stem = st.width[0] if stem_raw is None else r.width("stem_channels", stem_raw)
    size = _unit(t, o, r, cin, stem, st.kernel[0], ones, size)
    cin = stem
    sizes = []
    for s in range(st.n):
        for b in range(st.blocks[s]):
            size = _residual_block(t, o, r, block, cin if b == 0 else st.width[s], st.width[s], mids[s], st.kernel[s],
                                   st.stride[s] if b == 0 else ones, size)
        cin = st.width[s]
        sizes.append(size)
    return sizes


def _unet_decoder(t: _Tally, o: _Ops, r: _Reader, st: _Stages, sizes: list[list[int] | None], classes: _W,
                  deep_supervision: bool) -> None:
    ones = [1] * o.dims
    n_convs = [r.integer(k, v, 1, MAX_PER_STAGE, "convs or blocks per stage")
               for k, v in r.per_stage("n_conv_per_stage_decoder", st.n - 1)]
    for s in range(1, st.n):
        skip = st.width[-(s + 1)]
        size = t.transposed(st.width[-s], skip, st.stride[-s], o.bias, sizes[-s])
        for c in range(n_convs[s - 1]):
            size = _unit(t, o, r, skip.times(2) if c == 0 else skip, skip, st.kernel[-(s + 1)], ones,
                         size)
        t.conv(skip, classes, ones, ones, True, size, runs=deep_supervision or s == st.n - 1)


def _nested_decoder(t: _Tally, o: _Ops, r: _Reader, st: _Stages, sizes: list[list[int] | None], classes: _W,
                    deep_supervision: bool, branch: int | None, mode: str) -> None:
    ones = [1] * o.dims
    depth = st.n - 1
    n_convs = [r.integer(k, v, 1, MAX_PER_STAGE, "convs or blocks per stage")
               for k, v in r.per_stage("n_conv_per_stage_decoder", depth)]
    active = depth if deep_supervision or branch is None else branch
    if not deep_supervision:
        heads = {(0, active)}
    elif mode == "top_row":
        heads = {(0, depth - k) for k in range(depth)}
    else:
        heads = {(k, depth - k) for k in range(depth)}
    for j in range(1, depth + 1):
        for i in range(depth - j + 1):
            runs = i + j <= active
            width = st.width[i]
            size = t.transposed(st.width[i + 1], width, st.stride[i + 1], o.bias, sizes[i + 1] if runs else None)
            for c in range(n_convs[depth - 1 - i]):
                size = _unit(t, o, r, width.times(j + 1) if c == 0 else width, width, st.kernel[i],
                             ones, size)
            if i == 0 or i + j == depth:
                t.conv(width, classes, ones, ones, True, size, runs=(i, j) in heads)


def _unet(kind: str) -> Callable[[_Tally, _Reader, Any, str], None]:
    def estimate(t: _Tally, r: _Reader, patch: Any, patch_key: str) -> None:
        r.only(ARGUMENTS[kind], kind)
        cin = r.width("in_channels", r.get("in_channels"))
        o = _read_ops(r)
        st = _read_stages(t, r, o, "n_blocks_per_stage" if kind == "residual_encoder_unet" else "n_conv_per_stage")
        classes = _W(r.integer("num_classes", r.get("num_classes"), 1, MAX_CLASSES,
                               "classes (the segmentation head size)"), "num_classes")
        deep_supervision = r.flag("deep_supervision", False)
        if kind != "residual_encoder_unet":
            r.flag("nonlin_first", False)
        size = _read_patch(patch, o.dims, patch_key)
        if kind == "nested_unet":
            if st.n < 2:
                raise r.fail("n_stages", "must be at least 2 for nested_unet (UNet++ needs a decoder), got 1")
            branch = r.get("branch", None)
            if branch is not None and not (type(branch) is int and 1 <= branch <= st.n - 1):
                raise r.fail("branch", f"must be null (the whole network) or an integer 1..{st.n - 1} (the UNet++ "
                                       f"sub-network), got {shown(branch)}")
            mode = r.choice("deep_supervision_mode", ("multiscale", "top_row"), "multiscale")
            run = st.n if deep_supervision or branch is None else branch + 1
            sizes = _plain_encoder(t, o, r, cin, st, size, run)
            _nested_decoder(t, o, r, st, sizes, classes, deep_supervision, branch, mode)
            return
        if kind == "residual_encoder_unet":
            sizes = _residual_encoder(t, o, r, cin, st, size)
        else:
            sizes = _plain_encoder(t, o, r, cin, st, size, st.n)
        _unet_decoder(t, o, r, st, sizes, classes, deep_supervision)

    return estimate


def _optional_classes(r: _Reader, default: Any) -> _W | None:
    value = r.get("num_classes", default)
    if value is None:
        return None
    return _W(r.integer("num_classes", value, 1, MAX_CLASSES, "classes"), "num_classes")


def _nnunet_encoder(t: _Tally, r: _Reader, patch: Any, patch_key: str) -> None:
    unet = r.choice("unet", tuple(_ENCODER_ARGUMENTS), "plain_conv_unet")
    r.only(frozenset({"in_channels", "num_classes", "unet", "features_only"} | _DECODER_ONLY
                     | _ENCODER_ARGUMENTS[unet]), f"nnunet_encoder with unet={unet!r}")
    cin = r.width("in_channels", r.get("in_channels", 1))
    classes = _optional_classes(r, None)
    features_only = r.flag("features_only", False)
    o = _read_ops(r)
    residual = unet == "residual_encoder_unet"
    st = _read_stages(t, r, o, "n_blocks_per_stage" if residual else "n_conv_per_stage")
    if not residual:
        r.flag("nonlin_first", False)
    size = _read_patch(patch, o.dims, patch_key)
    if residual:
        _residual_encoder(t, o, r, cin, st, size)
    else:
        _plain_encoder(t, o, r, cin, st, size, st.n)
    if classes is not None:
        t.linear(st.width[-1], classes, runs=not features_only)


def _stunet(t: _Tally, r: _Reader, patch: Any, patch_key: str) -> None:
    """STU-Net (:mod:`zoo.archs.stunet`): residual blocks with a 1x1 strided shortcut (bias, no norm) first in every
    stage, nearest-neighbour upsampling + 1x1 conv, a head after every decoder stage."""
    r.only(ARGUMENTS["stunet"], "stunet")
    cin = r.width("in_channels", r.get("in_channels"))
    conv = r.get("conv_op", nn.Conv3d)
    if ops.resolve_op(conv, "conv_op", r.name_of("conv_op")) is not nn.Conv3d:
        raise r.fail("conv_op", f"must be Conv3d (STU-Net is 3D only), got {shown(conv)}")
    o = _Ops(nn.Conv3d, 3, True, nn.InstanceNorm3d, {"affine": True}, nn.LeakyReLU, {})
    st = _read_stages(t, r, o, "n_blocks_per_stage")
    if st.n < 2:
        raise r.fail("n_stages", "must be at least 2 for stunet (a U-Net needs a decoder), got 1")
    if st.stride[0] != [1, 1, 1]:
        raise r.fail("strides", f"[0] must be [1, 1, 1] (STU-Net's first stage is not strided), got {st.stride[0]}")
    if any(k % 2 == 0 for kernel in st.kernel for k in kernel):
        raise r.fail("kernel_sizes", f"must be odd (padding k // 2), got {shown(r.get('kernel_sizes'))}")
    classes = _W(r.integer("num_classes", r.get("num_classes"), 1, MAX_CLASSES,
                           "classes (the segmentation head size)"), "num_classes")
    deep_supervision = r.flag("deep_supervision", False)
    size = _read_patch(patch, 3, patch_key)
    ones = [1, 1, 1]

    def block(a: _W, b: _W, kernel: list[int], stride: list[int], size: list[int] | None,
              shortcut: bool) -> list[int] | None:
        out = t.conv(a, b, kernel, stride, True, size)
        t.add(2 * b.value)
        out = t.conv(b, b, kernel, ones, True, out)
        t.add(2 * b.value)
        if shortcut:
            t.conv(a, b, ones, stride, True, size)
        return out

    sizes = []
    for s in range(st.n):
        for b in range(st.blocks[s]):
            size = block(cin if b == 0 else st.width[s], st.width[s], st.kernel[s], st.stride[s] if b == 0 else ones,
                         size, b == 0)
        cin = st.width[s]
        sizes.append(size)
    size = sizes[-1]
    for u in range(st.n - 1):
        below, skip = st.width[st.n - 1 - u], st.width[st.n - 2 - u]
        up = None if size is None else [n * k for n, k in zip(size, st.stride[st.n - 1 - u])]
        size = t.conv(below, skip, ones, ones, True, up)
        for b in range(st.blocks[st.n - 2 - u]):
            size = block(skip.times(2) if b == 0 else skip, skip, st.kernel[st.n - 2 - u], ones, size, b == 0)
        t.conv(skip, classes, ones, ones, True, size, runs=deep_supervision or u == st.n - 2)


# ------------------------------------------------------------------------------------ fixed architectures
def _genesis(t: _Tally, r: _Reader, patch: Any, patch_key: str) -> None:
    r.only(ARGUMENTS["genesis_unet3d"], "genesis_unet3d")
    cin = r.width("in_channels", r.get("in_channels", 1))
    classes = _optional_classes(r, 1)
    act = r.choice("act", ("relu", "prelu", "elu"), "relu")
    r.choice("out_activation", ("sigmoid", None), "sigmoid")
    r.flag("upstream_bn", False)
    k3, ones = [3, 3, 3], [1, 1, 1]

    def unit(a: _W, b: _W) -> None:  # Conv3d 3^3 with bias, batch norm, activation
        t.conv(a, b, k3, ones, True, None)
        t.add(2 * b.value + (b.value if act == "prelu" else 0))

    for a, mid in ((cin, 32), (_W(64), 64), (_W(128), 128), (_W(256), 256)):   # down_tr64 .. down_tr512
        unit(a, _W(mid))
        unit(_W(mid), _W(2 * mid))
    for below, skip, out in ((512, 256, 256), (256, 128, 128), (128, 64, 64)):  # up_tr256 .. up_tr64
        t.transposed(_W(below), _W(below), [2, 2, 2], True, None)
        unit(_W(below + skip), _W(out))
        unit(_W(out), _W(out))
    if classes is not None:
        t.conv(_W(64), classes, ones, ones, True, None)


def _med3d(t: _Tally, r: _Reader, patch: Any, patch_key: str) -> None:
    from .med3d_resnet import DEPTHS  # a fixed table of medzoo's own; nothing named by the spec

    r.only(ARGUMENTS["med3d_resnet"], "med3d_resnet")
    depth = r.choice("depth", tuple(DEPTHS))
    block, layers, default_shortcut = DEPTHS[depth]
    expansion = block.expansion  # type: ignore[attr-defined]
    shortcut = r.choice("shortcut_type", (None, "A", "B"), None) or default_shortcut
    dilated = r.flag("dilated", True)
    cin = r.width("in_channels", r.get("in_channels", 1))
    classes = _optional_classes(r, None)
    head = r.choice("head", (None, "none", "classification", "segmentation"), None)
    head = head or ("none" if classes is None else "classification")
    if (head == "none") != (classes is None):
        raise r.fail("head", f"= {head!r} needs num_classes {'null' if head == 'none' else '>= 1'}, "
                             f"got {None if classes is None else classes.value}")
    features_only = r.flag("features_only", False)
    if features_only and head != "none":
        raise r.fail("features_only", "is true: it returns feature maps only, so there must be no head / num_classes")
    indices = r.get("out_indices", (0, 1, 2, 3, 4))
    if not (isinstance(indices, (list, tuple)) and 1 <= len(indices) <= 5
            and all(type(i) is int and 0 <= i <= 4 for i in indices)):
        raise r.fail("out_indices", f"must list 1 to 5 of the feature indices 0..4, got {shown(indices)}")
    k3, ones = [3, 3, 3], [1, 1, 1]

    def conv_bn(a: _W, b: int, kernel: list[int]) -> None:  # bias-free Conv3d, then BatchNorm3d
        t.conv(a, _W(b), kernel, ones, False, None)
        t.add(2 * b)

    t.conv(cin, _W(64), [7, 7, 7], ones, False, None)
    t.add(2 * 64)
    in_planes = 64
    for planes, blocks, stride in ((64, layers[0], 1), (128, layers[1], 2), (256, layers[2], 1 if dilated else 2),
                                   (512, layers[3], 1 if dilated else 2)):
        out_planes = planes * expansion
        if (stride != 1 or in_planes != out_planes) and shortcut == "B":
            conv_bn(_W(in_planes), out_planes, ones)
        for b in range(blocks):
            first = in_planes if b == 0 else out_planes
            if expansion == 1:   # BasicBlock
                conv_bn(_W(first), planes, k3)
                conv_bn(_W(planes), planes, k3)
            else:                # Bottleneck
                conv_bn(_W(first), planes, ones)
                conv_bn(_W(planes), planes, k3)
                conv_bn(_W(planes), out_planes, ones)
        in_planes = out_planes
    features = _W(512 * expansion)
    if head == "classification" and classes is not None:
        t.linear(features, classes, runs=False)
    elif head == "segmentation" and classes is not None:
        t.transposed(features, _W(32), [2, 2, 2], True, None)
        t.add(2 * 32)
        conv_bn(_W(32), 32, k3)
        t.conv(_W(32), classes, ones, ones, False, None)


def _ssl3d(t: _Tally, r: _Reader, patch: Any, patch_key: str) -> None:
    from .ssl3d_encoder import KERAS_BN, TALEB_FEATURES  # fixed defaults of medzoo's own

    r.only(ARGUMENTS["ssl3d_unet_encoder"], "ssl3d_unet_encoder")
    cin = r.width("in_channels", r.get("in_channels", 1))
    classes = _optional_classes(r, None)
    features = r.get("features_per_stage", TALEB_FEATURES)
    if not isinstance(features, (list, tuple)) or not features:
        raise r.fail("features_per_stage", f"must be a non-empty list of widths, got {shown(features)}")
    if len(features) > MAX_STAGES:
        raise r.fail("features_per_stage", f"has {len(features)} stages, above the limit of {MAX_STAGES} "
                                           "(zoo.archs.limits)")
    widths = [r.width(f"features_per_stage[{i}]", f) for i, f in enumerate(features)]
    r.number("dropout", 0.5, 0.0, 1.0, high_open=True)
    raw = r.get("norm_op_kwargs", None)
    norm_kwargs = dict(KERAS_BN) if raw is None else ops.check_op_kwargs(
        nn.BatchNorm3d, raw, "norm_op", r.name_of("norm_op_kwargs"))
    norm = _Ops(nn.Conv3d, 3, True, nn.BatchNorm3d, norm_kwargs, nn.ReLU, {})
    features_only = r.flag("features_only", False)
    k3, ones = [3, 3, 3], [1, 1, 1]
    for width in widths:   # two units per block: Conv3d 3^3 with bias, ReLU, BatchNorm3d
        for a in (cin, width):
            t.conv(a, width, k3, ones, True, None)
            t.add(norm.norm_parameters(width.value, r))
        cin = width
    if classes is not None:
        t.linear(widths[-1], classes, runs=not features_only)


_ESTIMATORS: dict[str, Callable[[_Tally, _Reader, Any, str], None]] = {
    "genesis_unet3d": _genesis,
    "med3d_resnet": _med3d,
    "plain_conv_unet": _unet("plain_conv_unet"),
    "residual_encoder_unet": _unet("residual_encoder_unet"),
    "nested_unet": _unet("nested_unet"),
    "ssl3d_unet_encoder": _ssl3d,
    "nnunet_encoder": _nnunet_encoder,
    "stunet": _stunet,
}


# ------------------------------------------------------------------------ MONAI networks (zoo.archs.monai_nets)
def _int_list(r: _Reader, key: str, default: Any, low: int, high: int, n: int | None, what: str) -> list[int]:
    value = r.get(key, default)
    if not isinstance(value, (list, tuple)) or not value or (n is not None and len(value) != n) \
            or len(value) > MAX_STAGES:
        count = f"{n}" if n is not None else f"1 to {MAX_STAGES}"
        raise r.fail(key, f"must be a list of {count} integers ({what}), got {shown(value)}")
    return [r.integer(f"{key}[{i}]", v, low, high, what) for i, v in enumerate(value)]


def _monai_segresnet(t: _Tally, r: _Reader, patch: Any, patch_key: str) -> None:
    """MONAI SegResNet (3D): bias-free 3^3 convs, GroupNorm, pre-activation residual blocks, 1x1 + upsampling."""
    r.only(ARGUMENTS["monai_segresnet"], "monai_segresnet")
    cin = r.width("in_channels", r.get("in_channels", 1))
    classes = _optional_classes(r, None)
    down = _int_list(r, "blocks_down", (1, 2, 2, 4), 1, MAX_PER_STAGE, None, "residual blocks per level")
    if len(down) < 2:
        raise r.fail("blocks_down", f"needs at least 2 levels, got {shown(r.get('blocks_down'))}")
    up = _int_list(r, "blocks_up", (1, 1, 1), 1, MAX_PER_STAGE, len(down) - 1, "residual blocks per decoder level")
    f = r.width("init_filters", r.get("init_filters", 16))
    groups = r.integer("norm_groups", r.get("norm_groups", 8), 1, MAX_CHANNELS, "GroupNorm groups")
    widths = [_W(f.value * 2 ** i, "init_filters", f.value) for i in range(len(down))]
    if any(w.value % groups for w in widths) or widths[-1].value > MAX_CHANNELS:
        raise r.fail("init_filters", f"= {f.value} gives widths {[w.value for w in widths]}: each must be divisible "
                                     f"by norm_groups = {groups} and at most {MAX_CHANNELS:,}")
    if r.get("dropout_prob", None) is not None:
        r.number("dropout_prob", None, 0.0, 1.0, high_open=True)
    heads = r.flag("deep_supervision", False)
    k3, ones, twos = [3, 3, 3], [1, 1, 1], [2, 2, 2]

    def res_block(w: _W) -> None:  # GroupNorm, ReLU, conv, GroupNorm, ReLU, conv, + identity
        for _ in range(2):
            t.add(2 * w.value)
            t.conv(w, w, k3, ones, False, None)

    t.depth_keys += [("blocks_down", r.get("blocks_down", None)), ("blocks_up", r.get("blocks_up", None))]
    t.conv(cin, widths[0], k3, ones, False, None)   # convInit
    for i, n in enumerate(down):
        if i:
            t.conv(widths[i - 1], widths[i], k3, twos, False, None)
        for _ in range(n):
            res_block(widths[i])
    for i, n in enumerate(up):   # coarsest first: 1x1 conv halving the channels, upsampling, blocks
        level = len(down) - 2 - i
        t.conv(widths[level + 1], widths[level], ones, ones, False, None)
        for _ in range(n):
            res_block(widths[level])
    t.add(2 * f.value)   # conv_final: GroupNorm, ReLU, 1x1 conv with bias (absent head-less)
    if classes is not None:
        t.conv(widths[0], classes, ones, ones, True, None)
        for level in range(1, len(down) - 1 if heads else 1):   # deep-supervision heads decoder.seg_layers.*
            t.conv(widths[level], classes, ones, ones, True, None)


def _monai_swinunetr(t: _Tally, r: _Reader, patch: Any, patch_key: str) -> None:
    """MONAI SwinUNETR (3D, patch 2, window 7, MLP ratio 4; instance norms without affine parameters)."""
    r.only(ARGUMENTS["monai_swinunetr"], "monai_swinunetr")
    cin = r.width("in_channels", r.get("in_channels", 1))
    classes = _optional_classes(r, None)
    c = r.integer("feature_size", r.get("feature_size", 48), 12, MAX_CHANNELS // 16, "channels")
    if c % 12:
        raise r.fail("feature_size", f"must be divisible by 12 (MONAI SwinUNETR), got {c}")
    depths = _int_list(r, "depths", (2, 2, 2, 2), 1, MAX_PER_STAGE, 4, "Swin blocks per stage")
    heads = _int_list(r, "num_heads", (3, 6, 12, 24), 1, MAX_CHANNELS, 4, "attention heads per stage")
    for i, h in enumerate(heads):
        if (c * 2 ** i) % h:
            raise r.fail(f"num_heads[{i}]", f"= {h} does not divide the stage width {c * 2 ** i}")
    r.choice("norm_name", ("instance",), "instance")
    for key in ("drop_rate", "attn_drop_rate", "dropout_path_rate"):
        r.number(key, 0.0, 0.0, 1.0, high_open=True)
    r.flag("normalize", True)
    v2 = r.flag("use_v2", False)
    r.choice("downsample", ("merging", "mergingv2", "merging-suprem"), "merging")
    ds_heads = r.flag("deep_supervision", False)
    t.depth_keys += [("depths", r.get("depths", None))]
    k3, ones, twos = [3, 3, 3], [1, 1, 1], [2, 2, 2]
    w = [_W(c * 2 ** i, "feature_size", c) for i in range(5)]

    def res(a: _W, b: _W) -> None:  # UnetResBlock: two bias-free 3^3 convs, a 1x1 shortcut when a != b
        t.conv(a, b, k3, ones, False, None)
        t.conv(b, b, k3, ones, False, None)
        if a.value != b.value:
            t.conv(a, b, ones, ones, False, None)

    t.conv(cin, w[0], twos, twos, True, None)   # patch embedding
    for s in range(4):
        d = w[s]
        if v2:
            res(d, d)
        for _ in range(depths[s]):
            t.add(4 * d.value + 13 ** 3 * heads[s])   # two LayerNorms, the relative position bias table
            t.linear(d, d.times(3), runs=False)
            t.linear(d, d, runs=False)
            t.linear(d, d.times(4), runs=False)
            t.linear(d.times(4), d, runs=False)
        t.add(16 * d.value)   # patch merging: LayerNorm(8d), bias-free Linear(8d, 2d)
        t.layer(16 * d.value * d.value, None, d)
    res(cin, w[0])                                   # encoder1
    for a in (w[0], w[1], w[2], w[4]):               # encoder2, 3, 4, 10
        res(a, a)
    for hi, lo in ((w[4], w[3]), (w[3], w[2]), (w[2], w[1]), (w[1], w[0]), (w[0], w[0])):   # decoder5 .. 1
        t.transposed(hi, lo, twos, False, None)
        res(lo.times(2), lo)
    if classes is not None:
        t.conv(w[0], classes, ones, ones, True, None)   # out
        for level in range(4 if ds_heads else 0):       # deep-supervision heads decoder.seg_layers.*
            t.conv(w[level], classes, ones, ones, True, None)


_ESTIMATORS["monai_segresnet"] = _monai_segresnet
_ESTIMATORS["monai_swinunetr"] = _monai_swinunetr


# ---------------------------------------------------------------------------------------------- entry points
def _tally(name: Any, kwargs: Any, patch_size: Any, name_of: Namer, patch_key: str) -> _Tally:
    if not isinstance(name, str) or name not in _ESTIMATORS:
        raise ArchitectureSpecError("architecture", f"unknown architecture {shown(name)}; known: "
                                                    f"{sorted(_ESTIMATORS)}")
    if not isinstance(kwargs, Mapping):
        raise ArchitectureSpecError("arch_kwargs", f"the arguments of {name} must be an object, got "
                                                   f"{type(kwargs).__name__}")
    t = _Tally(track=patch_size is not None)
    _ESTIMATORS[name](t, _Reader(kwargs, name_of), patch_size, patch_key)
    return t


def estimate_architecture(name: str, kwargs: Mapping[str, Any], *, patch_size: Any = None,
                          name_of: Namer = builder_key, patch_key: str = "patch_size") -> SizeEstimate:
    """Parameters, layers and (with ``patch_size``, nnU-Net U-Nets only) activations of ``name`` built with
    ``kwargs``; refuses a malformed spec with :class:`ArchitectureSpecError` but applies no whole-network limit."""
    t = _tally(name, kwargs, patch_size, name_of, patch_key)
    return SizeEstimate(t.parameters, t.layers, t.activations if t.track else None)


def check_architecture(name: str, kwargs: Mapping[str, Any], *, patch_size: Any = None,
                       name_of: Namer = builder_key, patch_key: str = "patch_size") -> SizeEstimate:
    """:func:`estimate_architecture`, then the whole-network limits of :mod:`zoo.archs.limits`.

    Raises:
        ArchitectureSpecError: (a ``ValueError``) naming the key, its value and the limit.
    """
    t = _tally(name, kwargs, patch_size, name_of, patch_key)
    if t.parameters > MAX_PARAMETERS:
        size, by = t.largest
        key = name_of(by.key) if by.key else "architecture"
        raise ArchitectureSpecError(key, (
            f"{key} = {by.shown}: {name} would have {t.parameters:,} parameters, above the limit of "
            f"{MAX_PARAMETERS:,} (zoo.archs.limits); its largest layer alone has {size:,}"))
    if t.layers > MAX_LAYERS:
        keys = ", ".join(f"{name_of(k)} = {shown(v)}" for k, v in t.depth_keys) or name
        raise ArchitectureSpecError(name_of(t.depth_keys[0][0]) if t.depth_keys else "architecture", (
            f"{keys}: {name} would have {t.layers:,} conv/linear layers, above the limit of {MAX_LAYERS:,} "
            "(zoo.archs.limits)"))
    if t.track and t.activations > MAX_ACTIVATIONS:
        by = t.widest[1]
        widest = f"; the largest output comes from {name_of(by.key)} = {by.shown}" if by.key else ""
        raise ArchitectureSpecError(patch_key, (
            f"{patch_key} = {shown(patch_size)}: one forward pass at batch 1 would produce {t.activations:,} "
            f"activation elements (conv outputs), above the limit of {MAX_ACTIVATIONS:,} (zoo.archs.limits){widest}"))
    return SizeEstimate(t.parameters, t.layers, t.activations if t.track else None)
