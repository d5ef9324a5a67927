"""Will the model fit on the fleet's GPUs? Arithmetic a reviewer can check by hand.

Per GPU, with tensor parallel size ``tp`` (and pipeline parallel size ``pp``):

    weights  = parameters x dtype bytes / (tp x pp)
    kv cache = layers / pp x ceil(kv_heads / tp) x head_dim x 2 (K and V) x kv dtype bytes
               x context length x max running requests
    overhead = GPU memory x (1 - mem_fraction_static)   (activations, CUDA graphs, context)

A model whose weights + kv cache + overhead exceed the GPU's memory cannot fit (a
plan error); above ``TIGHT`` of the GPU's memory it is a tight fit (a warning).
Figures come from the model block (``parameters``, ``dtype``, ``architecture``)
or, for a model whose source is a local directory, from its ``config.json``.
All sizes are GiB (2**30 bytes); GPU memory sizes are the vendors' GB figures,
which are GiB in practice (an H100 has 80 GiB).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from infraplan.util.units import human_count

GIB = 2**30
TIGHT = 0.90
DEFAULT_MEM_FRACTION = 0.88  # SGLang's static share on large GPUs; the rest is overhead

DTYPE_BYTES = {"float32": 4.0, "float16": 2.0, "bfloat16": 2.0, "fp8": 1.0, "int8": 1.0, "int4": 0.5}
KV_DTYPE_BYTES = {"fp8_e5m2": 1.0, "fp8_e4m3": 1.0, "fp8": 1.0, "float16": 2.0, "bfloat16": 2.0, "float32": 4.0}

# Memory per GPU (GiB) for GPUs named in SkyPilot's catalogs, used when a provider
# does not report it (the local provider records accelerators without allocating them).
GPU_MEMORY_GIB = {
    "H100": 80, "H100-MEGA": 80, "H100-SXM": 80, "H100-PCIE": 80, "H200": 141, "GH200": 96, "B200": 180,
    "A100": 40, "A100-80GB": 80, "A10G": 24, "A10": 24, "A6000": 48, "RTXA6000": 48, "L4": 24,
    "L40S": 48, "L40": 48, "V100": 16, "V100-32GB": 32, "T4": 16, "MI300X": 192,
}


@dataclass
class Architecture:
    """The figures KV-cache sizing needs."""

    num_layers: int | None = None
    num_kv_heads: int | None = None
    head_dim: int | None = None
    max_context: int | None = None
    dtype: str | None = None
    source: str = "model block"

    @property
    def complete(self) -> bool:
        return bool(self.num_layers and self.num_kv_heads and self.head_dim)


@dataclass
class FitResult:
    """The outcome of a fit check; `lines` is the arithmetic, one step a line."""

    status: str  # "fits" | "tight" | "does_not_fit" | "unknown"
    gpu: str | None
    gpu_memory_gib: float | None
    required_gib: float | None = None
    weights_gib: float | None = None
    kv_cache_gib: float | None = None
    overhead_gib: float | None = None
    lines: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def detail(self) -> str:
        return "\n".join(self.lines + self.notes)

    def to_json(self) -> dict[str, Any]:
        # shallow (asdict deep-copies): every field is a scalar or a list of strings
        return {k: round(v, 3) if isinstance(v, float) else list(v) if isinstance(v, list) else v
                for k, v in vars(self).items()}


def parse_accelerators(spec: str | None) -> tuple[str, int] | None:
    """``"H100:8"`` -> ``("H100", 8)``; no count means one."""
    if not spec:
        return None
    name, _, count = str(spec).partition(":")
    return name, int(float(count)) if count else 1


def gpu_memory_gib(name: str) -> float | None:
    """Memory of one GPU by its SkyPilot name, case-insensitive."""
    for k, v in GPU_MEMORY_GIB.items():
        if k.lower() == name.lower():
            return float(v)
    return None


def load_architecture(model: dict[str, Any], project_dir: Path | None = None) -> Architecture:
    """Architecture from the model block, completed from a local ``config.json``."""
    block = model.get("architecture") or {}
    arch = Architecture(num_layers=block.get("num_layers"), num_kv_heads=block.get("num_kv_heads"),
                        head_dim=block.get("head_dim"))
    cfg = _local_config(model.get("source") or "", project_dir)
    if cfg is not None:
        path, data = cfg
        data = data.get("text_config", data) if "num_hidden_layers" not in data else data
        heads = data.get("num_attention_heads")
        hidden = data.get("hidden_size") or block.get("hidden_size")
        filled = False
        if arch.num_layers is None and data.get("num_hidden_layers"):
            arch.num_layers, filled = int(data["num_hidden_layers"]), True
        if arch.num_kv_heads is None and (data.get("num_key_value_heads") or heads):
            arch.num_kv_heads, filled = int(data.get("num_key_value_heads") or heads), True
        if arch.head_dim is None and (data.get("head_dim") or (hidden and heads)):
            arch.head_dim, filled = int(data.get("head_dim") or hidden // heads), True
        arch.max_context = data.get("max_position_embeddings")
        arch.dtype = data.get("torch_dtype") or data.get("dtype")
        if filled:
            arch.source = str(path)
    return arch


def _local_config(source: str, project_dir: Path | None) -> tuple[Path, dict] | None:
    if "://" in source and not source.startswith("file://"):
        return None
    try:  # a source too long or odd for the filesystem (ENAMETOOLONG, NUL) is just not a local path
        p = Path(source.removeprefix("file://")).expanduser()
        if not p.is_absolute() and project_dir is not None:
            p = project_dir / p
        f = p / "config.json" if p.is_dir() else p
        if f.name != "config.json" or not f.is_file():
            return None
        return f, json.loads(f.read_text())
    except (OSError, ValueError, RuntimeError):  # RuntimeError: `~user` with no such user
        return None


def _arg(args: dict[str, Any], *names: str) -> Any:
    for n in names:
        if args.get(n) is not None:
            return args[n]
    return None


def check_fit(model: dict[str, Any], args: dict[str, Any], accelerators: str | None,
              gpu_memory: float | None = None, project_dir: Path | None = None) -> FitResult:
    """Check that `model` served with SGLang `args` fits on `accelerators`.

    `gpu_memory` (GiB per GPU) comes from the provider's catalog when it knows it;
    otherwise from `GPU_MEMORY_GIB`.
    """
    acc = parse_accelerators(accelerators)
    if acc is None:
        return FitResult("unknown", None, None, notes=["no accelerators declared: fit not checked"])
    gpu, count = acc
    mem = gpu_memory if gpu_memory else gpu_memory_gib(gpu)
    if not mem:
        return FitResult("unknown", gpu, None, notes=[f"memory of GPU {gpu!r} is unknown: fit not checked"])
    args = args or {}
    tp = int(_arg(args, "tp_size", "tensor_parallel_size", "tp") or 1)
    pp = int(_arg(args, "pp_size", "pipeline_parallel_size", "pp") or 1)
    res = FitResult("unknown", gpu, mem)
    if tp * pp > count:
        res.status = "does_not_fit"
        res.lines.append(f"tp_size {tp} x pp_size {pp} = {tp * pp} GPUs per model copy, but {accelerators} gives {count}")
        return res
    params = model.get("parameters")
    if not params:
        res.notes.append("model parameters unknown: fit not checked")
        return res
    arch = load_architecture(model, project_dir)
    dtype = model.get("dtype") or "auto"
    if dtype == "auto":
        dtype = {"float16": "float16", "bfloat16": "bfloat16", "float32": "float32"}.get(str(arch.dtype), "bfloat16")
    wbytes = DTYPE_BYTES[dtype]
    weights = params * wbytes / (tp * pp) / GIB
    res.weights_gib = weights
    res.lines.append(f"weights: {human_count(params)} params x {wbytes:g} B ({dtype}) / {tp * pp} GPU(s) = {weights:.2f} GiB")

    kv = 0.0
    ctx_len = _arg(args, "context_length") or arch.max_context
    if arch.complete and ctx_len:
        kv_dtype = str(_arg(args, "kv_cache_dtype") or "auto")
        kbytes = KV_DTYPE_BYTES.get(kv_dtype, wbytes if kv_dtype == "auto" else 2.0)
        reqs = int(_arg(args, "max_running_requests") or 1)
        heads = math.ceil(arch.num_kv_heads / tp)
        layers = math.ceil(arch.num_layers / pp)
        kv = layers * heads * arch.head_dim * 2 * kbytes * int(ctx_len) * reqs / GIB
        res.lines.append(
            f"kv cache: {layers} layers x {heads} kv heads x {arch.head_dim} head dim x 2 x {kbytes:g} B ({kv_dtype})"
            f" x {int(ctx_len)} tokens x {reqs} request(s) = {kv:.2f} GiB")
        if not _arg(args, "max_running_requests"):
            res.notes.append("max_running_requests not set: kv cache sized for one full-context request")
        if arch.source != "model block":
            res.notes.append(f"architecture from {arch.source}")
    else:
        res.notes.append("architecture or context length unknown: kv cache not counted")
    res.kv_cache_gib = kv
    frac = float(_arg(args, "mem_fraction_static") or DEFAULT_MEM_FRACTION)
    overhead = mem * (1 - frac)
    res.overhead_gib = overhead
    res.lines.append(f"overhead: {mem:g} GiB x (1 - mem_fraction_static {frac:g}) = {overhead:.2f} GiB")
    required = weights + kv + overhead
    res.required_gib = required
    verdict = ">" if required > mem else "<="
    res.lines.append(f"total: {weights:.2f} + {kv:.2f} + {overhead:.2f} = {required:.2f} GiB {verdict} {mem:g} GiB per {gpu}")
    if required > mem:
        res.status = "does_not_fit"
    elif required > TIGHT * mem:
        res.status = "tight"
    else:
        res.status = "fits"
    return res
