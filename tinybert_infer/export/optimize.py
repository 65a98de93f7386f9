"""CPU artefacts built from the simplified ONNX (TinyBERT_sim_bsN.onnx), one per variant.

The simplified ONNX stays what atc and trtexec consume; everything here is a second, CPU-only artefact
next to it (names in layout.py). Variants:

  torch               PyTorch eager on the checkpoint (nothing to build)
  onnxruntime         ONNX Runtime on the simplified ONNX as exported
  onnxruntime-fused   ONNX Runtime on the graph after its BERT optimizer (Attention, SkipLayerNormalization, BiasGelu)
  onnxruntime-int8-dynamic  ONNX Runtime dynamic INT8 (weights int8, activations quantised per batch at run time)
  openvino-fp32       OpenVINO on the simplified ONNX, INFERENCE_PRECISION_HINT=f32 pinned
  openvino-bf16       OpenVINO on the simplified ONNX, bf16 (AVX512-BF16 / AMX on CPUs that have them)
  openvino-int8       OpenVINO IR quantised by NNCF (static INT8, calibrated on unlabelled sentences)
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Dict, Optional, Sequence

import numpy as np

from tinybert_infer.errors import ExportError, UsageError
from tinybert_infer.fsutil import staged_file
from tinybert_infer.layout import IDS_NAME, optimized_name, packed_sim_onnx_name, require_model


@dataclass(frozen=True)
class Variant:
    name: str
    runtime: str     # torch | onnxruntime | openvino
    precision: str   # fp32 | int8 | bf16
    exact: bool      # same arithmetic as PyTorch fp32 up to rounding (labels expected identical)
    description: str


VARIANTS: Dict[str, Variant] = {v.name: v for v in (
    Variant("torch", "torch", "fp32", True, "PyTorch eager on the checkpoint"),
    Variant("onnxruntime", "onnxruntime", "fp32", True, "ONNX Runtime, simplified ONNX as exported"),
    Variant("onnxruntime-fused", "onnxruntime", "fp32", True, "ONNX Runtime, graph after its BERT optimizer"),
    Variant("onnxruntime-int8-dynamic", "onnxruntime", "int8", False, "ONNX Runtime dynamic INT8 (quantize_dynamic)"),
    Variant("openvino-fp32", "openvino", "fp32", True, "OpenVINO, INFERENCE_PRECISION_HINT=f32"),
    Variant("openvino-bf16", "openvino", "bf16", False, "OpenVINO, INFERENCE_PRECISION_HINT=bf16"),
    Variant("openvino-int8", "openvino", "int8", False, "OpenVINO IR quantised by NNCF (static INT8)"),
    Variant("openvino-int8-bf16", "openvino", "int8", False,
            "the NNCF INT8 IR with the ops it leaves unquantised in bf16 (INFERENCE_PRECISION_HINT=bf16)"),
)}
# OpenVINO variants whose unquantised ops run in bf16; the others are pinned to exact f32. On a CPU without BF16
# the hint falls back to f32 (backends/openvino reads back what the plugin uses).
OPENVINO_BF16_VARIANTS = ("openvino-bf16", "openvino-int8-bf16")
FP32_CANDIDATES = ("onnxruntime", "onnxruntime-fused", "openvino-fp32")  # what `auto` chooses among for exact fp32


def variant(name: str) -> Variant:
    try:
        return VARIANTS[name]
    except KeyError:
        raise UsageError(f"unknown backend variant {name!r} (choose from {', '.join(VARIANTS)})") from None


def openvino_precision(name: str) -> str:
    """The OpenVINO precision hint a variant runs with (backends.openvino.PRECISION_HINTS key)."""
    return "bf16" if name in OPENVINO_BF16_VARIANTS else "fp32"


def variants_for(precision: str) -> list[str]:
    return [n for n, v in VARIANTS.items() if v.precision == precision and v.runtime != "torch"]


@dataclass
class Artefact:
    variant: str
    path: Optional[Path]          # None for torch (runs the checkpoint)
    build_seconds: float = 0.0
    notes: Dict[str, object] = field(default_factory=dict)


@contextlib.contextmanager
def _quiet():
    """The optimizer and quantizers print advice and warnings on every call; keep the benchmark readable."""
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        try:
            yield
        finally:
            root.setLevel(level)


def _source_record(dst: Path) -> Path:
    return dst.with_name(dst.name + ".source")


def _fresh(dst: Path, src: Path) -> bool:
    """Whether dst was built from src as it is now: the digest recorded beside dst when it was built is src's.
    Times would not do: a graph copied in with its old time (cp -p, tar, rsync -a) looks older than the
    artefacts of the model it replaces, which would then run in its place."""
    from tinybert_infer.fsutil import model_sha256

    try:
        return dst.is_file() and _source_record(dst).read_text(encoding="ascii").strip() == model_sha256(src)
    except (OSError, UnicodeDecodeError):
        return False


@contextlib.contextmanager
def _building(dst: Path, src: Path):
    """Around a build of dst from src: its record goes first (a build cut short leaves no record, so the next run
    builds again) and is written once dst is complete."""
    from tinybert_infer.fsutil import model_sha256

    record, source = _source_record(dst), model_sha256(src)  # the graph as it is when the build reads it
    record.unlink(missing_ok=True)
    yield
    with staged_file(record) as tmp:
        Path(tmp).write_text(source + "\n", encoding="ascii")


# ---------------------------------------------------------------- ONNX Runtime fp32 fusions
def fuse_bert(src: Path, dst: Path, *, num_heads: int = 0, hidden_size: int = 0) -> dict:
    """ORT's BERT optimizer (opt_level 0: fusions only; the session applies its own at load). Returns fused counts.

    num_heads/hidden_size 0 lets the optimizer read them from the graph's Reshape shapes.
    """
    from onnxruntime.transformers.optimizer import optimize_model

    with _quiet():
        model = optimize_model(str(src), model_type="bert", num_heads=num_heads, hidden_size=hidden_size,
                               opt_level=0)
        stats = {k: int(v) for k, v in model.get_fused_operator_statistics().items() if v}
        with staged_file(dst) as tmp:
            model.save_model_to_file(str(tmp))
    return stats


def fused_counts(path: Path) -> dict:
    """Counts of ORT contrib (fused) ops in a graph, read from the file itself."""
    import onnx

    graph = onnx.load(str(path), load_external_data=False).graph
    counts: dict = {}
    for node in graph.node:
        if node.domain == "com.microsoft":
            counts[node.op_type] = counts.get(node.op_type, 0) + 1
    return counts


# ---------------------------------------------------------------- ONNX Runtime INT8
def quantize_dynamic_int8(src: Path, dst: Path) -> None:
    from onnxruntime.quantization import QuantType, quantize_dynamic

    with _quiet(), staged_file(dst) as tmp:
        # Signed int8 weights: the u8s8 kernels ORT uses with VNNI/AMX.
        quantize_dynamic(str(src), str(tmp), weight_type=QuantType.QInt8)


def build_int8_dynamic(sim: Path, fused: Optional[Path], dst: Path, *, time_fn: Callable[[Path], float]) -> dict:
    """Quantise both the fused and the plain graph, keep whichever works and runs faster (time_fn: samples/s).

    Quantising a fused graph can fail in shape inference ("Unable to find data type for weight_name");
    the plain graph then remains.
    """
    tried: dict = {}
    candidates = [("fused", fused), ("plain", sim)] if fused is not None else [("plain", sim)]
    paths = {}
    for label, source in candidates:
        out = dst.with_name(dst.stem + f".from-{label}.tmp.onnx")
        try:
            quantize_dynamic_int8(source, out)
        except Exception as exc:  # the known shape-inference failure, or any other: fall back to the other graph
            tried[label] = f"failed: {str(exc).splitlines()[0][:160]}"
            continue
        paths[label] = out
        tried[label] = round(time_fn(out), 1)
    if not paths:
        raise ExportError(f"{sim}: dynamic INT8 quantisation failed ({tried})")
    best = max(paths, key=lambda k: tried[k])
    os.replace(paths[best], dst)
    for label, path in paths.items():
        if label != best:
            path.unlink(missing_ok=True)
    return {"quantized_from": best, "samples_per_s_by_source": tried}


# ---------------------------------------------------------------- OpenVINO INT8 (NNCF)
def nncf_available() -> bool:
    """Whether NNCF is installed, without importing it: its import (torch with it) took 1.5 s of a 6.5 s cached
    `score --precision auto` on SST-2 dev, which only needs to know whether the NNCF candidates exist."""
    import importlib.util

    return importlib.util.find_spec("nncf") is not None


def quantize_openvino_int8(sim: Path, dst_xml: Path, calibration: Sequence[dict]) -> dict:
    """NNCF post-training INT8 (transformer preset: no quantisers on the softmax/LayerNorm paths)."""
    import nncf
    import openvino as ov

    core = ov.Core()
    model = core.read_model(str(sim))
    with _quiet():
        quantized = nncf.quantize(model, nncf.Dataset(list(calibration)), model_type=nncf.ModelType.TRANSFORMER,
                                  preset=nncf.QuantizationPreset.MIXED, subset_size=len(calibration))
    # Written as a pair (.xml + .bin); the .xml goes last so its presence means a complete IR.
    bin_path = dst_xml.with_suffix(".bin")
    tmp_xml = dst_xml.with_name(dst_xml.stem + ".partial.xml")
    ov.save_model(quantized, str(tmp_xml), compress_to_fp16=False)
    os.replace(tmp_xml.with_suffix(".bin"), bin_path)
    os.replace(tmp_xml, dst_xml)
    fq = sum(1 for op in quantized.get_ops() if op.get_type_name() == "FakeQuantize")
    return {"nncf": nncf.__version__, "fake_quantize_nodes": fq, "calibration_batches": len(calibration),
            "calibration_samples": sum(len(b[IDS_NAME]) for b in calibration)}


def calibration_batches(feats: dict, batch_size: int) -> list[dict]:
    """Whole batches of the static shape the model was exported with (last partial batch dropped)."""
    n = len(feats[IDS_NAME])
    if n < batch_size:
        reps = -(-batch_size // n)
        feats = {k: np.concatenate([v] * reps) for k, v in feats.items()}
        n = len(feats[IDS_NAME])
    from tinybert_infer.run.inference import iter_batches

    return [{k: np.ascontiguousarray(v[chunk]) for k, v in feats.items()}
            for chunk in iter_batches(n, batch_size) if None not in chunk]


def calibration_features(checkpoint_dir, tsv_path, count: int, seq_len: int) -> tuple[dict, str]:
    """Tokenised sentences of an unlabelled TSV (SST-2 test.tsv: never the dev set that is scored)."""
    from tinybert_infer.models.checkpoint import read_checkpoint
    from tinybert_infer.export.onnx import validation_inputs

    return validation_inputs(read_checkpoint(checkpoint_dir), tsv_path, count, seq_len)


# ---------------------------------------------------------------- everything for one simplified ONNX
def artefact_path(sim: Path, name: str) -> Optional[Path]:
    if name in ("torch",):
        return None
    if name in ("onnxruntime", "openvino-fp32", "openvino-bf16"):
        return sim
    if name == "openvino-int8-bf16":  # the same NNCF IR, compiled with another hint
        name = "openvino-int8"
    return sim.with_name(optimized_name(sim.name, name))


def int8_dynamic_from_fused(sim: Path) -> bool:
    """Whether ORT dynamic INT8 of this graph may be quantised from its fused graph. Not for the packed graph:
    there the fused-then-quantised graph scored 0.8807 on SST-2 dev against 0.8922 from the plain graph, and ran
    at 580 against 888 sentences/s (shared checkpoint, AVX512-VNNI host)."""
    return Path(sim).name != packed_sim_onnx_name()


def _files_built(names: Sequence[str], sim: Path) -> set:
    """The variants among names (and the ones they are built from) that build_artefacts writes a file for."""
    built = set()
    for name in (variant(n).name for n in names):
        if name == "onnxruntime-int8-dynamic":
            built |= {"onnxruntime-fused", name} if int8_dynamic_from_fused(sim) else {name}
        elif name == "onnxruntime-fused" or (name in ("openvino-int8", "openvino-int8-bf16") and nncf_available()):
            built.add(name)
    return built


def artefacts_fresh(sim: Path, names: Sequence[str]) -> bool:
    """Whether build_artefacts would build nothing: every file it writes for these names exists, newer than sim."""
    return all(_fresh(artefact_path(sim, n), sim) for n in _files_built(names, sim))


def build_artefacts(sim: Path, names: Sequence[str], *, batch_size: int, threads: int,
                    num_heads: int = 0, hidden_size: int = 0, calibration: Optional[Callable[[], list]] = None,
                    time_fn: Optional[Callable[[str, Path], float]] = None, rebuild: bool = False,
                    log: Callable[[str], None] = lambda s: None) -> Dict[str, Artefact]:
    """Build (or reuse, when newer than sim) the artefact of each named variant.

    calibration: returns the list of feed dicts NNCF calibrates on (only called when openvino-int8 is built).
    time_fn(variant, path) -> samples/s, used to pick the faster INT8 source graph.
    """
    sim = require_model(sim)
    out: Dict[str, Artefact] = {}
    wanted = [variant(n).name for n in names]
    needs_fused = "onnxruntime-fused" in _files_built(wanted, sim)
    fused = artefact_path(sim, "onnxruntime-fused")
    if needs_fused:
        start = time.perf_counter()
        if rebuild or not _fresh(fused, sim):
            log(f"fusing {sim.name} (ORT BERT optimizer)")
            with _building(fused, sim):
                fuse_bert(sim, fused, num_heads=num_heads, hidden_size=hidden_size)
        out["onnxruntime-fused"] = Artefact("onnxruntime-fused", fused, time.perf_counter() - start,
                                            {"fused": fused_counts(fused)})
    for name in wanted:
        start = time.perf_counter()
        path = artefact_path(sim, name)
        if name in ("torch", "onnxruntime", "openvino-fp32", "openvino-bf16", "onnxruntime-fused"):
            out.setdefault(name, Artefact(name, path))
        elif name == "onnxruntime-int8-dynamic":
            notes = {}
            if rebuild or not _fresh(path, sim):
                log(f"quantising {sim.name} (ORT dynamic INT8)")
                timer = (lambda p: time_fn("onnxruntime-int8-dynamic", p)) if time_fn else (lambda p: 0.0)
                with _building(path, sim):
                    notes = build_int8_dynamic(sim, fused if int8_dynamic_from_fused(sim) else None, path,
                                               time_fn=timer)
            out[name] = Artefact(name, path, time.perf_counter() - start, notes)
        elif name in ("openvino-int8", "openvino-int8-bf16"):
            if not nncf_available():
                log(f"{name} skipped: nncf is not installed")
                continue
            notes = {}
            if rebuild or not _fresh(path, sim):
                log(f"quantising {sim.name} (NNCF INT8)")
                if calibration is None:
                    raise UsageError("openvino-int8 needs calibration data")
                with _building(path, sim):
                    notes = quantize_openvino_int8(sim, path, calibration())
            out[name] = Artefact(name, path, time.perf_counter() - start, notes)
    return {n: out[n] for n in wanted if n in out}


def make_variant_backend(name: str, path: Optional[Path], *, threads: int, checkpoint_dir=None,
                         batch_size: Optional[int] = None, streams: int = 1):
    """The Backend that runs one variant's artefact with a fixed thread count and explicit precision.

    streams: OpenVINO execution streams (ignored by the other runtimes)."""
    from tinybert_infer.backends import open_runtime

    # An NNCF IR carries its int8 in FakeQuantize nodes; the rest of it runs in exact f32 unless the variant says bf16.
    backend = open_runtime(variant(name).runtime, path, threads=threads, precision=openvino_precision(name),
                           streams=streams, checkpoint_dir=checkpoint_dir, batch_size=batch_size)
    backend.variant = name
    return backend
