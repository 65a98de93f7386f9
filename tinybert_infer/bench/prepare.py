"""What a benchmark runs on: the throughput model, its exports and artefacts, the preprocessed inputs."""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Optional, Sequence

from tinybert_infer.layout import dynamic_sim_onnx_name, sim_onnx_name

# Export parity slack for the random-weights throughput model: its perturbed layer norms give large logits, so
# float rounding differs by more than the checkpoints' 1e-4 (seen: 1.09e-4 on an AMD host without AVX-512).
RANDOM_WEIGHTS_TOLERANCE = 1e-2


def perturb_layer_norms(checkpoint: Path, seed: int = 0, scale: float = 0.1) -> Path:
    """Random LayerNorm scales and shifts in a generated checkpoint. With the generator's ones/zeros the exporter
    folds each LayerNorm's Mul/Add away, so ORT's LayerNorm (hence SkipLayerNorm and Attention) fusions cannot
    match, which never happens with a trained checkpoint."""
    import torch

    weights = Path(checkpoint) / "pytorch_model.bin"
    state = torch.load(str(weights), weights_only=True)
    gen = torch.Generator().manual_seed(seed)
    for key, value in state.items():
        if "LayerNorm" in key:
            state[key] = value + scale * torch.randn(value.shape, generator=gen)
    torch.save(state, str(weights))
    return Path(checkpoint)


def throughput_checkpoint(work: Path) -> Path:
    """TinyBERT-4L-312D (the published table's model) with random weights, generated once per work folder."""
    from tinybert_infer.models.synthetic import TINYBERT_4L_312D, write_random_checkpoint

    folder = work / "TinyBERT-4L-312D-random"
    if not ((folder / "config.json").is_file() and (folder / "pytorch_model.bin").is_file()):
        perturb_layer_norms(write_random_checkpoint(folder, seed=0, **TINYBERT_4L_312D))
    return folder


def read_config(checkpoint: Path):
    from tinybert_infer.models.checkpoint import read_checkpoint

    return read_checkpoint(checkpoint).config


def export_for(checkpoint: Path, batch: int, out_dir: Path, tsv=None, tolerance: float = 1e-4) -> Path:
    """The simplified static ONNX at `batch`, exported unless one of this checkpoint's network is there (its
    recorded identity, not file times: a checkpoint copied in with its old times is still another network)."""
    from tinybert_infer.export.onnx import export_checkpoint
    from tinybert_infer.models.checkpoint import read_checkpoint
    from tinybert_infer.models.specs import METADATA_NETWORK, read_onnx_metadata

    sim = out_dir / sim_onnx_name(batch)
    recorded = read_onnx_metadata(sim).get(METADATA_NETWORK) if sim.is_file() else None
    if recorded is None or recorded != read_checkpoint(checkpoint).network_digest:
        export_checkpoint(checkpoint, batch, out_dir, tsv_path=tsv, validate_count=max(16, batch), tolerance=tolerance)
    return sim


def prepare_artefacts(sim: Path, names, *, batch: int, threads: int, config, calibration, log):
    """optimize.build_artefacts for the named variants, the auto-tuned ones timed with the QUICK policy."""
    from tinybert_infer.export.optimize import build_artefacts, make_variant_backend
    from tinybert_infer.plan.timing import QUICK, measure_backend

    def time_fn(name, path):
        backend = make_variant_backend(name, path, threads=threads, batch_size=batch)
        return measure_backend(backend, batch, QUICK, config.vocab_size)["samples_per_s"]

    return build_artefacts(sim, names, batch_size=batch, threads=threads, num_heads=config.num_attention_heads,
                           hidden_size=config.hidden_size, calibration=calibration, time_fn=time_fn, log=log)


def subset_tsv(tsv: Path, count: Optional[int], work: Path) -> Path:
    """The first `count` sentences of a TSV (quick mode), or the TSV itself."""
    if not count:
        return tsv
    lines = tsv.read_text(encoding="utf-8").splitlines(keepends=True)
    out = work / f"{tsv.stem}_first{count}.tsv"
    out.write_text("".join(lines[:count + 1]), encoding="utf-8")
    return out


def inputs_and_exports(work: Path, model_dir: Path, tsv: Path, batch_sizes: Sequence[int], *, needs_onnx: bool = True,
                       export_tsv: Optional[Path] = None, log: Callable[[str], None] = lambda s: None) -> tuple:
    """bert_bin/ from the TSV, the static ONNX per batch size and the dynamic ONNX, all under work/.
    export_tsv: the sentences the exports are validated on (None: the exporter's default)."""
    from tinybert_infer.models.checkpoint import VOCAB_FILE
    from tinybert_infer.data.features import preprocess
    from tinybert_infer.export.onnx import export_checkpoint, export_dynamic_checkpoint

    bin_dir = work / "bert_bin"
    log(f"preprocess {tsv} -> {bin_dir}")
    preprocess(tsv, model_dir / VOCAB_FILE, bin_dir, show_progress=False)
    static_models, dynamic_model = {}, None
    if needs_onnx:  # PyTorch eager alone runs the checkpoint itself for both paths
        for batch in batch_sizes:
            log(f"export static {sim_onnx_name(batch)}")
            static_models[batch] = export_checkpoint(model_dir, batch, work, tsv_path=export_tsv,
                                                     validate_count=8).sim_path
        log(f"export dynamic {dynamic_sim_onnx_name()}")
        dynamic_model = export_dynamic_checkpoint(model_dir, work, tsv_path=export_tsv).sim_path
    return bin_dir, static_models, dynamic_model
