"""One run plan: how a run executes, chosen once, recorded in every summary.

    plan = make_plan(dynamic_model="TinyBERT_sim_dyn.onnx", precision="bf16", batch_size=32).plan
    with open_plan(plan) as executor:
        logits = executor.score([[101, 2204, 102], [101, 2919, 3185, 102]])   # token id rows, any lengths

A Plan names the artefact (variant = graph x runtime x precision, optimize.VARIANTS), the batching (static: file
order, every batch at the model's width; length: sorted by length, each batch cropped), the shape policy (fixed:
the model's own static shape; dynamic: one compiled model takes every shape; per_length: OpenVINO compiles a
static [batch, L] model per length bucket and reuses it, so it keeps the kernels it only has for static shapes:
bf16/AMX, NNCF int8), streams and threads. The planner (make_plan) builds the candidates of a precision, times
them the way they run (real sentence lengths, interleaved rounds, median), keeps the first candidate unless
another is faster by more than a margin, and caches the choice beside the model (tinybert_backend_choice.json,
keyed by the models' sha256, batch, threads, precision, CPU (model name and instruction sets) and library versions).
"""

from __future__ import annotations

import functools
import statistics
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np

from tinybert_infer.backends.base import Backend
from tinybert_infer.errors import UsageError
from tinybert_infer.fsutil import ClosesOnExit
from tinybert_infer.layout import (DYNAMIC_EXPORT_HINT, IDS_NAME, INPUT_NAMES, MASK_NAME, SELECTION_CACHE_NAME, SEQ_LEN,
                                   require_model)

BATCHINGS = ("static", "length", "packed")
SHAPE_POLICIES = ("fixed", "dynamic", "per_length")
# A coarse bucket set for the per_length policy: SST-2 dev lengths (mean 25, max 55) fill each with a few batches,
# six compiles per batch size (cached on disk by OpenVINO afterwards).
DEFAULT_BUCKETS = (16, 24, 32, 40, 48, 64)
# The per_length policy's default rounding (the planner's candidates, --static_shapes without --buckets): every
# batch's length up to a multiple of 4. Each of DEFAULT_BUCKETS is such a multiple, so no batch is ever longer
# than with them; on SST-2 dev at BS 32 it computes 1.15x the real tokens against their 1.27x, with 11 compiled
# shapes instead of 6 (at most width / 4; cached on disk like the others).
PER_LENGTH_PAD_MULTIPLE = 4
SWITCH_MARGIN = 0.10       # another candidate must beat the preferred one by this much to be chosen
TIMING_ROUNDS = 3          # timed passes per candidate per sweep
TIMING_SWEEPS = 2          # each candidate opened, timed and closed once per sweep (time_plans)
SWEEP_KEEP_WITHIN = 0.75   # after the first sweep, candidates below this fraction of the fastest drop out
PACKED_SENTENCES_PER_ROW = 2  # packed_rows: a batch of BS sentences runs as BS / 2 rows (SST-2: 2.5 per row)
TIMING_SAMPLES = 256       # real sentences per timing pass (a length-stratified subset of the data)


@dataclass(frozen=True)
class Plan:
    variant: str                          # optimize.VARIANTS name: runtime and precision follow from it
    model: str                            # graph file it runs (ONNX, or OpenVINO IR for openvino-int8)
    batching: str = "static"              # static | length
    batch_size: int = 32
    shape_policy: str = "fixed"           # fixed | dynamic | per_length
    buckets: Optional[Tuple[int, ...]] = None   # length batching: lengths rounded up to these (None: longest member)
    pad_multiple: Optional[int] = None
    streams: int = 1
    threads: Optional[int] = None
    checkpoint_dir: Optional[str] = None  # the torch variant runs the checkpoint itself

    def __post_init__(self):
        from tinybert_infer.export.optimize import variant

        variant(self.variant)
        if self.batching not in BATCHINGS:
            raise UsageError(f"plan batching {self.batching!r}: use one of {', '.join(BATCHINGS)}")
        if self.shape_policy not in SHAPE_POLICIES:
            raise UsageError(f"plan shape policy {self.shape_policy!r}: use one of {', '.join(SHAPE_POLICIES)}")
        if self.shape_policy == "per_length" and (self.runtime != "openvino" or self.batching != "length"):
            raise UsageError("the per_length shape policy is OpenVINO's, with length-aware batching")
        if self.batching == "packed" and (self.shape_policy != "fixed" or self.buckets or self.pad_multiple):
            raise UsageError("packed batching runs one fixed shape (rows of the model's width): no buckets or padding")
        if self.buckets is not None and self.pad_multiple is not None:
            raise UsageError("give either --pad_multiple or --buckets, not both")
        if self.batch_size < 1 or self.streams < 1:
            raise UsageError("plan batch size and streams must be positive")
        if self.streams > 1 and self.runtime != "openvino":
            raise UsageError(f"--streams {self.streams}: only OpenVINO runs several batches at once")

    @property
    def precision(self) -> str:
        from tinybert_infer.export.optimize import variant

        return variant(self.variant).precision

    @property
    def runtime(self) -> str:
        from tinybert_infer.export.optimize import variant

        return variant(self.variant).runtime

    @property
    def mode(self) -> str:
        """dynamic.run_samples' mode for this batching (packed: run/packing.py)."""
        return {"length": "dynamic_length", "packed": "packed"}.get(self.batching, "static")

    def label(self) -> str:
        pad = (f" buckets {','.join(map(str, self.buckets))}" if self.buckets else
               f" pad {self.pad_multiple}" if self.pad_multiple else "")
        return (f"{self.variant} {self.batching}{pad} bs{self.batch_size} {self.shape_policy} "
                f"streams{self.streams}")

    def to_dict(self) -> dict:
        info = asdict(self)
        info["buckets"] = list(self.buckets) if self.buckets else None
        info.update(precision=self.precision, runtime=self.runtime, label=self.label())
        return info

    @classmethod
    def from_dict(cls, info: dict) -> "Plan":
        fields = {k: info[k] for k in cls.__dataclass_fields__ if k in info}
        if fields.get("buckets"):
            fields["buckets"] = tuple(fields["buckets"])
        return cls(**fields)


# ---------------------------------------------------------------- executing a plan
def backend_for(plan: Plan) -> Backend:
    from tinybert_infer.export.optimize import make_variant_backend, openvino_precision

    model = Path(plan.model)
    if plan.batching == "packed" and plan.runtime == "openvino":
        from tinybert_infer.backends.openvino import OpenVinoStaticShapes

        # Rows of the model's fixed width, batch_size of them per run: one static shape, compiled once.
        return OpenVinoStaticShapes(model, batch_size=plan.batch_size, threads=plan.threads,
                                    precision=openvino_precision(plan.variant), streams=plan.streams)
    if plan.shape_policy == "per_length":
        from tinybert_infer.backends.openvino import OpenVinoStaticShapes

        # An NNCF IR carries its int8 in the graph; its other ops run in exact f32 or bf16 as the variant says.
        # No model cache: imported blobs cost 2.3x the memory of compiled shapes (shared checkpoint, bf16, 11
        # shapes: 1,660 against 715 MB, peak RSS 1.8 GB) to save about a second of compiling.
        return OpenVinoStaticShapes(model, batch_size=plan.batch_size, threads=plan.threads,
                                    precision=openvino_precision(plan.variant), streams=plan.streams)
    backend = make_variant_backend(plan.variant, None if plan.runtime == "torch" else model, threads=plan.threads,
                                   checkpoint_dir=plan.checkpoint_dir, batch_size=plan.batch_size,
                                   streams=plan.streams)
    if plan.batching == "packed":
        from tinybert_infer.run.packing import check_packed_backend

        check_packed_backend(backend)
    elif plan.batching == "length" and backend.seq_len is not None:
        raise UsageError(f"{plan.model}: static sequence length {backend.seq_len}; length-aware batching needs a "
                         f"dynamic-shape model (python -m tinybert_infer export --dynamic)")
    return backend


class PlanExecutor(ClosesOnExit):
    """Runs one plan: score() for arrays in memory, run_samples()/run_files() for ais_bench result folders."""

    def __init__(self, plan: Plan, backend: Optional[Backend] = None):
        self.plan = plan
        self.backend = backend or backend_for(plan)

    def summary_extra(self) -> dict:
        return {"plan": self.plan.to_dict()}

    def score(self, inputs) -> np.ndarray:
        """Logits [N, labels] in input order. inputs: a list of token id sequences ([CLS] ... [SEP], any
        lengths; segments 0, mask 1), or {input_ids, segment_ids, input_mask}: int [N, W] arrays."""
        from tinybert_infer.run.length import batch_feeds, plan_batches, real_lengths

        feats = as_features(inputs)
        if self.plan.batching == "packed":
            from tinybert_infer.run.packing import check_packed_backend, score_packed

            return score_packed(self.backend.run_pipelined, feats, self.plan.batch_size,
                                check_packed_backend(self.backend))
        lengths = real_lengths(feats[MASK_NAME])
        width = feats[IDS_NAME].shape[1]
        if self.backend.seq_len not in (None, width):
            raise UsageError(f"{self.plan.model} takes {self.backend.seq_len} tokens per sample, got {width}")
        fed = self.backend.batch_size or 1
        batches = plan_batches(lengths, self.plan.batch_size, width=width, pad_multiple=self.plan.pad_multiple,
                               buckets=self.plan.buckets, mode=self.plan.mode)
        holder = SimpleNamespace(feats=feats)  # dynamic.batch_feeds slices samples.feats: one home for filler rows
        out: Optional[np.ndarray] = None
        items = ((batch_feeds(holder, b, self.backend.input_names, fed), b) for b in batches)
        for batch, logits, _ms in self.backend.run_pipelined(items):
            if out is None:
                out = np.empty((len(lengths), logits.shape[1]), np.float32)
            out[list(batch.indices)] = logits[:len(batch.indices)]
        return out if out is not None else np.empty((0, 0), np.float32)

    def run_samples(self, samples, output_root, **kwargs):
        from tinybert_infer.run.length import run_samples

        extra = dict(kwargs.pop("extra_summary", None) or {}, **self.summary_extra())
        if self.plan.batching == "packed":
            from tinybert_infer.run.packing import run_packed_samples

            return run_packed_samples(self.backend, samples, output_root, batch_rows=self.plan.batch_size,
                                      extra_summary=extra, **kwargs)
        return run_samples(self.backend, samples, output_root, batch_size=self.plan.batch_size, mode=self.plan.mode,
                           pad_multiple=self.plan.pad_multiple, buckets=self.plan.buckets, extra_summary=extra,
                           **kwargs)

    def run_files(self, input_dirs, output_root, **kwargs):
        """Per-sample files: the static plan streams them in file order (inference.run_files); a length or packed
        plan reads them all first (it sorts by length)."""
        extra = dict(kwargs.pop("extra_summary", None) or {}, **self.summary_extra())
        if self.plan.batching == "static":
            from tinybert_infer.run.inference import run_files

            return run_files(self.backend, input_dirs, output_root, batch_size=self.plan.batch_size,
                             extra_summary=extra, **kwargs)
        from tinybert_infer.run.length import read_sample_files

        # The packed graph's inputs are built from the three unpacked ones, which the files hold.
        names = INPUT_NAMES if self.plan.batching == "packed" else self.backend.input_names
        samples = read_sample_files(input_dirs, names)
        return self.run_samples(samples, output_root, extra_summary=extra, **kwargs)

    def close(self) -> None:
        from tinybert_infer.machine import return_free_memory

        if self.backend is not None:  # closing twice is harmless
            self.backend.close()
            self.backend = None  # the runtime's sessions and compiled shapes go with the last reference
            return_free_memory()


def open_plan(plan: Plan) -> PlanExecutor:
    return PlanExecutor(plan)


def as_features(inputs) -> Dict[str, np.ndarray]:
    """{input name: int64 [N, W]} from token id rows (padded here) or from such a dict."""
    if isinstance(inputs, dict):
        missing = [n for n in INPUT_NAMES if n not in inputs]
        if missing:
            raise UsageError(f"score(): inputs lack {missing}")
        return {n: np.asarray(inputs[n], dtype=np.int64) for n in INPUT_NAMES}
    rows = [np.asarray(r, dtype=np.int64).ravel() for r in inputs]
    width = max((len(r) for r in rows), default=1)
    feats = {n: np.zeros((len(rows), width), np.int64) for n in INPUT_NAMES}
    for i, row in enumerate(rows):
        feats[IDS_NAME][i, :len(row)] = row
        feats[MASK_NAME][i, :len(row)] = 1
    return feats


# ---------------------------------------------------------------- the planner
DEFAULT_MAX_DROP = 0.005  # issue 10: int8 within 0.5 points of fp32 (the score command may ask for 0.3)


@dataclass(eq=False)
class AccuracyGate:
    """Labelled sentences (dev, never the data being scored when that is the test set) and the largest accuracy
    drop (a fraction: 0.005 = 0.5 points) a low-precision plan may show against exact fp32 on them. With `load`
    instead of feats/labels, the sentences are read on first use: a choice answered from the planner's cache
    never needs them (tokenising SST-2 dev took 1.3 s of a 3.8 s cached `score`)."""

    feats: Optional[dict] = None
    labels: Optional[np.ndarray] = None
    max_drop: float = DEFAULT_MAX_DROP
    source: str = ""
    load: Optional[Callable[[], Tuple[dict, np.ndarray]]] = field(default=None, repr=False)

    def sentences(self) -> Tuple[dict, np.ndarray]:
        if self.feats is None:
            self.feats, self.labels = self.load()
        return self.feats, self.labels


def dev_gate(tsv_path, vocab_file, max_drop: float = DEFAULT_MAX_DROP, max_seq_length: int = 64):
    """The gate on a labelled GLUE TSV (SST-2 dev.tsv); None when it is absent."""
    tsv_path = Path(tsv_path)
    if not tsv_path.is_file():
        return None
    # a partial of a module-level function: the gate travels to child processes (the real-job rows), so it pickles
    return AccuracyGate(max_drop=max_drop, source=str(tsv_path),
                        load=functools.partial(_read_gate_sentences, tsv_path, vocab_file, max_seq_length))


def _read_gate_sentences(tsv_path: Path, vocab_file, max_seq_length: int):
    from tinybert_infer.run.length import read_tsv_samples
    from tinybert_infer.data.tsv import TsvReader

    labels = np.array([int(ex.label) for ex in TsvReader(tsv_path)])
    return read_tsv_samples(tsv_path, vocab_file, max_seq_length).feats, labels


class GateCheck:
    """The accuracy gate, applied to a plan only when a choice needs its verdict (pick asks in the order it
    decides): scoring every candidate on SST-2 dev took ~50 s of a 3-minute first `score --precision auto`,
    for a choice that reads one or two of them. The fp32 reference (ONNX Runtime as exported, on the dynamic
    model) is scored once, on first use. known: a cached entry's accuracy_gate, whose verdicts are reused."""

    def __init__(self, gate: AccuracyGate, dynamic_model, known: Optional[dict] = None, log=lambda s: None):
        self.gate, self.dynamic_model, self.log = gate, dynamic_model, log
        known = known or {}
        self.reference: Optional[float] = known.get("fp32_accuracy")
        self.accuracy: Dict[str, float] = dict(known.get("accuracy") or {})
        self.scored = 0  # plans scored by this check (not known before)

    def _accuracy(self, plan: Plan) -> float:
        feats, labels = self.gate.sentences()
        with open_plan(plan) as executor:
            return float(np.mean(executor.score(feats).argmax(1) == labels))

    def passes(self, plan: Plan) -> bool:
        label = plan.label()
        if self.reference is None:
            self.reference = self._accuracy(Plan("onnxruntime", str(self.dynamic_model), "length", plan.batch_size,
                                                 "dynamic", threads=plan.threads))
        if label not in self.accuracy:
            self.accuracy[label] = self._accuracy(plan)
            self.scored += 1
            self.log(f"[plan] {label}: accuracy {self.accuracy[label]:.4f} (fp32 {self.reference:.4f})"
                     f"{'' if self._inside(label) else ': outside the gate, left out'}")
        return self._inside(label)

    def _inside(self, label: str) -> bool:
        return self.reference - self.accuracy[label] <= self.gate.max_drop + 1e-12

    def info(self) -> dict:
        return {"fp32_accuracy": self.reference, "accuracy": dict(self.accuracy), "max_drop": self.gate.max_drop,
                "source": self.gate.source}


def gate_plans(plans: Sequence[Plan], gate: AccuracyGate, dynamic_model, log=lambda s: None):
    """Every plan through the gate: the ones within max_drop of exact fp32, and every plan's accuracy."""
    check = GateCheck(gate, dynamic_model, log=log)
    kept = [p for p in plans if check.passes(p)]
    return kept, check.info()


@dataclass
class Choice:
    plan: Plan
    selection: dict = field(default_factory=dict)  # candidates' samples/s, rounds, margin, cached or measured


def _dynamic_variants(precision: str) -> List[str]:
    from tinybert_infer.export.optimize import nncf_available

    if precision == "fp32":
        return ["openvino-fp32", "onnxruntime-fused"]
    if precision == "bf16":
        return ["openvino-bf16"]
    if precision == "int8":
        # int8-bf16 first: on AMX its unquantised ops (attention, GELU, LayerNorm) run in bf16, not f32.
        return (["openvino-int8-bf16", "openvino-int8"] if nncf_available() else []) + ["onnxruntime-int8-dynamic"]
    raise UsageError(f"--precision {precision!r}: use one of fp32, int8, bf16")


def candidate_plans(precision: str, *, dynamic_model, batch_size: int, threads: int,
                    static_model=None) -> List[Plan]:
    """In order of preference (the first one is kept unless another is clearly faster). Paths are the artefacts
    each variant runs; build them with build_candidate_artefacts first."""
    from tinybert_infer.export.optimize import artefact_path, variant
    from tinybert_infer.models.specs import same_network

    dyn = Path(dynamic_model)
    plans: List[Plan] = []
    two = min(2, threads)
    packed = packed_model_beside(dyn)
    for name in _dynamic_variants(precision):
        path = str(artefact_path(dyn, name))
        if packed is not None and (name.startswith("openvino") or name == "onnxruntime-int8-dynamic"):
            # Packed first (ORT int8: 888 against 757 sentences/s length-aware, AVX512-VNNI host). OpenVINO int8
            # tries two streams first: its GEMMs are short, so one request over two threads spends more of its
            # time synchronising; two single-threaded requests ran 8-10 % faster (AVX2 and AVX512-VNNI hosts),
            # while fp32/bf16 ran 4-6 % faster with one stream. ORT has no streams.
            streams_order = ([1] if not name.startswith("openvino") else
                             sorted({1, two}, reverse=variant(name).precision == "int8"))
            for streams in streams_order:
                plans.append(Plan(name, str(artefact_path(packed, name)), "packed", packed_rows(batch_size),
                                  "fixed", streams=streams, threads=threads))
        if name.startswith("openvino"):
            for streams in sorted({1, two}):
                plans.append(Plan(name, path, "length", batch_size, "per_length",
                                  pad_multiple=PER_LENGTH_PAD_MULTIPLE, streams=streams, threads=threads))
            plans.append(Plan(name, path, "length", batch_size, "dynamic", streams=two, threads=threads))
        else:
            plans.append(Plan(name, path, "length", batch_size, "dynamic", threads=threads))
    if static_model is not None and same_network(dyn, static_model):
        # the recipe's static-64 path, as a yardstick that may win on a static model (only the same network's)
        main = _dynamic_variants(precision)[0]
        if main in ("openvino-fp32", "openvino-bf16"):
            plans.append(Plan(main, str(static_model), "static", batch_size, "fixed", threads=threads))
    return plans


def packed_model_beside(dynamic_model: Path) -> Optional[Path]:
    """TinyBERT_sim_packed.onnx where export --dynamic wrote it, beside the dynamic model, when it was exported from
    the same network; None otherwise. A packed graph left from an earlier export (another checkpoint, or one whose
    packed export failed after the dynamic graph landed) would otherwise score the corpus with the wrong model."""
    from tinybert_infer.layout import packed_sim_onnx_name
    from tinybert_infer.models.specs import same_network

    path = Path(dynamic_model).with_name(packed_sim_onnx_name())
    return path if path.is_file() and same_network(dynamic_model, path) else None


def packed_rows(batch_size: int) -> int:
    """Rows per packed run for a batch of `batch_size` sentences (SST-2 rows of 64 hold 2.5 sentences). At BS 32,
    [16, 64] (1,024 tokens a run) against [8, 64], end to end, interleaved medians: AMX Xeon +6 % (int8-bf16
    2 streams 1,943 vs 1,832/s; fp32 1 stream 495 vs 465/s), AVX512-VNNI EPYC +6.5 % (4L-312D int8) or equal
    (shared checkpoint). The longer GEMMs (M = 1,024) amortise each FullyConnected call."""
    return max(1, batch_size // PACKED_SENTENCES_PER_ROW)


PRECISIONS = ("fp32", "bf16", "int8")
AUTO_MAX_DROP = 0.003  # --precision auto: the fastest plan within 0.3 points of fp32 on the labelled dev set


def candidates_for(precision: str, **kwargs) -> List[Plan]:
    """candidate_plans of one precision, or for "auto" those of every precision, fp32 first (preferred)."""
    if precision != "auto":
        return candidate_plans(precision, **kwargs)
    plans: Dict[str, Plan] = {}
    for name in PRECISIONS:
        for plan in candidate_plans(name, **kwargs):
            plans.setdefault(plan.label(), plan)
    return list(plans.values())


def build_candidate_artefacts(plans: Sequence[Plan], dynamic_model, *, batch_size: int, threads: int,
                              checkpoint_dir=None, calibration_tsv=None, log=lambda s: None) -> None:
    """The artefacts the plans run (those not built yet), for the dynamic and the packed graph in one child."""
    from tinybert_infer.export.optimize import artefacts_fresh

    packed = packed_model_beside(Path(dynamic_model))
    jobs = []
    for source, batching in ((Path(dynamic_model), "length"), (packed, "packed")):
        names = sorted({p.variant for p in plans if source is not None and Path(p.model).parent == source.parent
                        and p.batching == batching})
        if names and not artefacts_fresh(source, names):
            log(f"[plan] building {', '.join(names)} artefacts of {source.name} (in a child process)")
            jobs.append((source, names))
    if jobs:
        build_artefacts_in_child(jobs, batch_size=batch_size, threads=threads, checkpoint_dir=checkpoint_dir,
                                 calibration_tsv=calibration_tsv)


def build_artefacts_in_child(jobs, *, batch_size: int, threads: int, checkpoint_dir=None,
                             calibration_tsv=None) -> None:
    """optimize.build_artefacts for each (model, variant names) job in one spawned process: fusing and quantising
    (NNCF above all) load whole graphs and calibration data, and that peak would otherwise stay with the run that
    follows. One child for all jobs pays the imports (torch, NNCF) once."""
    from tinybert_infer.isolate import call_in_child

    call_in_child(_build_artefacts, [(Path(m), list(n)) for m, n in jobs], batch_size, threads, checkpoint_dir,
                  calibration_tsv)


def _build_artefacts(jobs, batch_size, threads, checkpoint_dir, calibration_tsv) -> None:
    from tinybert_infer.export.optimize import build_artefacts
    from tinybert_infer.layout import packed_sim_onnx_name
    from tinybert_infer.plan.select import calibration_loader
    from tinybert_infer.progress import log_stderr

    for model, names in jobs:
        rows = packed_rows(batch_size) if model.name == packed_sim_onnx_name() else None
        build_artefacts(model, names, batch_size=batch_size, threads=threads,
                        calibration=calibration_loader(checkpoint_dir, calibration_tsv, batch_size, rows),
                        log=log_stderr)


def timing_subset(feats: Dict[str, np.ndarray], lengths: np.ndarray, count: int = TIMING_SAMPLES) -> dict:
    """Every k-th sentence in length order: the data's length distribution in at most `count` sentences."""
    order = np.argsort(lengths, kind="stable")
    step = max(1, int(np.ceil(len(order) / count)))
    pick = np.sort(order[::step])
    return {n: np.ascontiguousarray(v[pick]) for n, v in feats.items()}


def time_plans(plans: Sequence[Plan], feats: dict, *, rounds: int = TIMING_ROUNDS, sweeps: int = TIMING_SWEEPS,
               keep_within: float = SWEEP_KEEP_WITHIN,
               log: Callable[[str], None] = lambda s: None) -> Tuple[Dict[str, List[float]], Dict[str, float]]:
    """samples/s per plan (label -> every timed pass), and each plan's setup seconds: opening it and its first
    pass, less what that pass takes warm (session creation, a compile per shape met).
    One candidate is open at a time, so the planner's peak memory is one plan's, not the sum of all (7 int8
    candidates held open together took 3.8 GB on the shared checkpoint): each sweep opens a candidate, runs one
    warm-up pass (compiles every shape it needs), times `rounds` passes and closes it. Sweeps alternate their
    order (A B C, then C B A) so a drift in the machine's load hits every candidate alike; after the first,
    candidates slower than `keep_within` of the fastest are not measured again (their first figures stand)."""
    from tinybert_infer.machine import rss_mb

    count = len(feats[IDS_NAME])
    rates: Dict[str, List[float]] = {p.label(): [] for p in plans}
    setup: Dict[str, float] = {}
    alive = list(plans)
    for sweep in range(sweeps):
        for plan in (alive if sweep % 2 == 0 else alive[::-1]):
            opened = time.perf_counter()
            with open_plan(plan) as executor:
                executor.score(feats)
                first = time.perf_counter() - opened
                footprint = rss_mb()
                for _ in range(rounds):
                    start = time.perf_counter()
                    executor.score(feats)
                    rates[plan.label()].append(count / (time.perf_counter() - start))
            if sweep == 0:
                rate = statistics.median(rates[plan.label()])
                setup[plan.label()] = max(0.0, first - count / rate)
                log(f"[plan] {plan.label()}: {rate:.1f} samples/s, set up in {setup[plan.label()]:.1f} s"
                    + (f", RSS {footprint:.0f} MB while open" if footprint else ""))
        if sweep == 0:
            best = max(statistics.median(rates[p.label()]) for p in alive)
            alive = [p for p in alive if statistics.median(rates[p.label()]) >= keep_within * best]
    for key, values in rates.items():
        log(f"[plan] {key}: median {statistics.median(values):.1f} samples/s ({', '.join(f'{v:.0f}' for v in values)})")
    return rates, setup


def pick(plans: Sequence[Plan], medians: Dict[str, float], margin: float = SWITCH_MARGIN,
         setup_s: Optional[Dict[str, float]] = None, job_size: Optional[int] = None,
         admit: Optional[Callable[[Plan], bool]] = None) -> Optional[Plan]:
    """The first (preferred) plan, unless another beats it by more than the margin: on samples/s, or, for a job
    of `job_size` sentences, on its whole time (setup + job_size / samples/s). A per_length plan compiles each
    shape it meets (4 s for the shared checkpoint's 14): on SST-2 dev's 872 sentences that outweighs a 10 %
    faster steady state, on a corpus of 100,000 it does not.
    admit (the accuracy gate): only admitted plans count. It is asked lazily, fastest first and then in order of
    preference, so the answer is the same as over the admitted plans alone; None when no plan is admitted."""
    if job_size is None or setup_s is None:
        def cost(plan):
            return 1.0 / medians[plan.label()]
    else:
        def cost(plan):
            return setup_s.get(plan.label(), 0.0) + job_size / medians[plan.label()]
    admit = admit or (lambda plan: True)
    best = next((p for p in sorted(plans, key=cost) if admit(p)), None)  # sorted is stable: min's tie order
    preferred = next((p for p in plans if admit(p)), None)
    if best is None:
        return None
    return best if cost(preferred) > cost(best) * (1.0 + margin) else preferred


def _cache_key(plans: Sequence[Plan], batch_size: int, threads: int, precision: str) -> str:
    from tinybert_infer.fsutil import model_sha256
    from tinybert_infer.machine import cpu_key
    from tinybert_infer.plan.select import runtime_versions_key

    import hashlib

    models = sorted({p.model for p in plans})
    digests = ",".join(model_sha256(Path(m))[:16] if Path(m).is_file() else "missing" for m in models)
    # The candidates themselves too: a choice among other candidates (an older version's) is measured again.
    labels = hashlib.sha256("\n".join(sorted(p.label() for p in plans)).encode()).hexdigest()[:16]
    return "|".join(["plan", digests, f"candidates{labels}", f"bs{batch_size}", f"threads{threads}", precision,
                     cpu_key(), runtime_versions_key()])


def make_plan(*, dynamic_model, precision: str = "fp32", batch_size: int = 32, threads: Optional[int] = None,
              static_model=None, data=None, checkpoint_dir=None, calibration_tsv=None, candidates=None,
              rounds: int = TIMING_ROUNDS, margin: float = SWITCH_MARGIN, use_cache: bool = True,
              gate: Optional[AccuracyGate] = None, job_size: Optional[int] = None,
              log: Callable[[str], None] = lambda s: print(s, file=sys.stderr)) -> Choice:
    """The fastest plan of a precision on this machine for these models, measured on `data` (feats dict or
    token rows: the sentences to be served; default: synthetic SST-2-like lengths) and cached. Low-precision
    candidates must pass `gate` (accuracy on labelled sentences within max_drop of fp32); fp32 plans are exact.
    job_size: the sentences the run will score, when known: the choice then counts each plan's setup (compiles)
    against them (pick); the cache keeps the measurements, so one entry serves every job size."""
    from tinybert_infer.fsutil import write_json_atomic
    from tinybert_infer.machine import default_threads
    from tinybert_infer.plan.select import read_selection_cache

    threads = threads or default_threads()
    dyn = require_model(dynamic_model, DYNAMIC_EXPORT_HINT)
    plans = list(candidates) if candidates is not None else candidate_plans(
        precision, dynamic_model=dyn, batch_size=batch_size, threads=threads, static_model=static_model)
    feats = as_features(data) if data is not None else _synthetic_data()
    if _lengths(feats).max(initial=0) > SEQ_LEN:  # the packed graph's rows are SEQ_LEN wide (export --dynamic)
        plans = [p for p in plans if p.batching != "packed"]
    if not plans:
        raise UsageError(f"no {precision} plan can run here")
    from tinybert_infer.machine import cpu_has_bf16

    if any(p.precision == "bf16" for p in plans) and not cpu_has_bf16():
        log("[plan] this CPU has no bf16 instructions (avx512_bf16, amx_bf16): OpenVINO runs its bf16 plans in f32 "
            "(the run summary's inference_precision_hint says so)")
    build_candidate_artefacts(plans, dyn, batch_size=batch_size, threads=threads, checkpoint_dir=checkpoint_dir,
                              calibration_tsv=calibration_tsv, log=log)
    cache_file = dyn.parent / SELECTION_CACHE_NAME
    gated = gate is not None and precision != "fp32"
    key = _cache_key(plans, batch_size, threads, precision) + (f"|gate{gate.max_drop:g}" if gated else "")
    cache = read_selection_cache(cache_file) if use_cache else {}
    entry = cache.get(key)
    labels = {p.label(): p for p in plans}

    def save(entry: dict) -> None:
        if use_cache:
            cache[key] = entry
            try:
                write_json_atomic(cache_file, cache)
            except OSError:
                pass  # a read-only model folder: measured again next time

    if isinstance(entry, dict) and entry.get("plan", {}).get("label") in labels:
        timed = [p for p in plans if p.label() in entry.get("samples_per_s", {})]
        chosen = labels[entry["plan"]["label"]]
        if job_size and entry.get("setup_s") and timed:
            check = GateCheck(gate, dyn, known=entry.get("accuracy_gate"), log=log) if gated else None
            chosen = pick(timed, entry["samples_per_s"], entry.get("margin", margin), entry["setup_s"], job_size,
                          admit=check.passes if check else None) or chosen
            if check is not None and check.scored:  # a verdict this job size needed for the first time
                entry = dict(entry, accuracy_gate=check.info())
                save(entry)
        return Choice(chosen, dict(entry, plan=chosen.to_dict(), job_size=job_size, cached=True,
                                   cache_file=str(cache_file)))
    check = GateCheck(gate, dyn, log=log) if gated else None
    admit = check.passes if check else None
    feats = timing_subset(feats, _lengths(feats))
    rates, setup = time_plans(plans, feats, rounds=rounds, log=log)
    medians = {k: statistics.median(v) for k, v in rates.items()}
    steady = pick(plans, medians, margin, admit=admit)
    chosen = pick(plans, medians, margin, setup, job_size, admit=admit)  # without a job size: the steady one
    if steady is None or chosen is None:
        raise UsageError(f"no {precision} plan is within {gate.max_drop * 100:g} points of fp32 accuracy on "
                         f"{gate.source}: use --precision fp32")
    entry = {"plan": steady.to_dict(), "plan_for_long_runs": steady.label(),
             "samples_per_s": {k: round(v, 1) for k, v in medians.items()},
             "setup_s": {k: round(v, 2) for k, v in setup.items()}, "rounds": rounds, "sweeps": TIMING_SWEEPS,
             "margin": margin, "timing_samples": len(feats[IDS_NAME]),
             "preferred": plans[0].label(), "accuracy_gate": check.info() if check else None}
    save(entry)
    log(f"[plan] chose {chosen.label()} for {precision}"
        + (f" and {job_size} sentences (setup counted; {steady.label()} for a long run)" if chosen != steady else "")
        + f" (cached in {cache_file})")
    return Choice(chosen, dict(entry, plan=chosen.to_dict(), job_size=job_size, cached=False,
                               cache_file=str(cache_file)))


def _lengths(feats) -> np.ndarray:
    from tinybert_infer.run.length import real_lengths

    return real_lengths(feats[MASK_NAME])


def _synthetic_data(count: int = TIMING_SAMPLES) -> dict:
    from tinybert_infer.data.features import synthetic_feeds

    return synthetic_feeds(count)


def plan_of_backend(backend: Backend, model, *, batching: str = "static", batch_size: Optional[int] = None,
                    buckets=None, pad_multiple=None, threads: Optional[int] = None) -> Plan:
    """The plan a run on an already-made backend executes (a named --backend, or auto's static choice), for the
    summary: what ran, in the same shape as a planned run."""
    from tinybert_infer.run.inference import resolve_batch_size
    from tinybert_infer.export.optimize import VARIANTS

    batch = resolve_batch_size(backend, batch_size)
    # A variant's name is its backend's, except OpenVINO's (one per precision) and the GPU execution providers'
    # (they run ONNX Runtime's artefact).
    name = getattr(backend, "variant", None) or {"openvino": "openvino-fp32"}.get(backend.name, backend.name)
    if name not in VARIANTS:
        name = "onnxruntime"
    if name == "openvino-fp32" and getattr(backend, "precision", "fp32") == "bf16":
        name = "openvino-bf16"
    info = backend.describe()
    threads = threads or (info["threads"] if isinstance(info.get("threads"), int) else None)
    policy = "fixed" if backend.seq_len is not None or batching == "static" else "dynamic"
    return Plan(name, str(info.get("artefact") or model), batching, batch, policy,
                tuple(buckets) if buckets else None, pad_multiple, streams=int(info.get("streams") or 1),
                threads=threads)
