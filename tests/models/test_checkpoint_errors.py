"""Bad and untrusted checkpoints: a one-line error naming the file and problem, exit 3, nothing written,
and no pickled code ever run (issue 5)."""

from __future__ import annotations

import json
import pickle
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import run_cli, write_tsv
from error_helpers import WritesMarker, assert_error, leftovers, run_main
from tinybert_infer.errors import CheckpointError, DataError

CHECKPOINT_EXIT = CheckpointError.exit_code
DATA_EXIT = DataError.exit_code


@pytest.fixture()
def ckpt(tmp_path, tiny_checkpoint) -> Path:
    """A private, editable copy of the tiny checkpoint."""
    return Path(shutil.copytree(tiny_checkpoint, tmp_path / "SST-2_model"))


def _export(model_dir: Path, out: Path):
    return run_main("export", "--batch_size", "1", "--model_dir", model_dir, "--data_dir", out.parent / "none",
                    "--output_dir", out)


def _assert_nothing_exported(out: Path) -> None:
    assert not out.exists() or sorted(p.name for p in out.iterdir()) == [], sorted(out.iterdir())


def edit_config(folder: Path, drop=(), **changes) -> None:
    path = folder / "config.json"
    config = json.loads(path.read_text())
    for key in drop:
        del config[key]
    config.update(changes)
    path.write_text(json.dumps(config))


def edit_weights(folder: Path, drop=(), **replace) -> None:
    path = folder / "pytorch_model.bin"
    state = torch.load(path, weights_only=True)
    for key in list(state):
        if any(key.startswith(prefix) for prefix in drop):
            del state[key]
    state.update(replace)
    torch.save(state, path)


def edit_vocab(folder: Path, drop=(), extra=0) -> None:
    path = folder / "vocab.txt"
    tokens = [t for t in path.read_text().splitlines() if t not in drop]
    path.write_text("\n".join(tokens + [f"[extra{i}]" for i in range(extra)]) + "\n")


# (case id, how to break the checkpoint, file named in the message, phrase in the message)
CASES = [
    ("missing folder", lambda f: shutil.rmtree(f), "SST-2_model", "checkpoint folder not found"),
    ("missing config", lambda f: (f / "config.json").unlink(), "config.json", "config file not found"),
    ("missing weights", lambda f: (f / "pytorch_model.bin").unlink(), "SST-2_model",
     "no weights file (model.safetensors or pytorch_model.bin)"),
    ("missing vocab", lambda f: (f / "vocab.txt").unlink(), "vocab.txt", "vocabulary file not found"),
    ("config not json", lambda f: (f / "config.json").write_text("{'hidden_size': 32,}"), "config.json",
     "not valid JSON"),
    ("config not an object", lambda f: (f / "config.json").write_text("[1, 2]"), "config.json",
     "expected a JSON object"),
    ("config key missing", lambda f: edit_config(f, drop=["num_hidden_layers"]), "config.json",
     "missing key 'num_hidden_layers'"),
    ("config key string", lambda f: edit_config(f, hidden_size="32"), "config.json",
     "key 'hidden_size' must be a positive integer, got '32'"),
    ("config key float", lambda f: edit_config(f, num_attention_heads=4.0), "config.json",
     "key 'num_attention_heads' must be a positive integer, got 4.0"),
    ("config key bool", lambda f: edit_config(f, type_vocab_size=True), "config.json",
     "key 'type_vocab_size' must be a positive integer, got True"),
    ("config key zero", lambda f: edit_config(f, num_hidden_layers=0), "config.json",
     "key 'num_hidden_layers' must be a positive integer, got 0"),
    ("config heads do not divide hidden", lambda f: edit_config(f, num_attention_heads=5), "config.json",
     "hidden_size 32 is not a multiple of num_attention_heads 5"),
    ("config activation unknown", lambda f: edit_config(f, hidden_act="swish9"), "config.json",
     "hidden_act 'swish9' not supported"),
    ("config eps wrong type", lambda f: edit_config(f, layer_norm_eps="1e-12"), "config.json",
     "key 'layer_norm_eps' must be a positive number"),
    ("weight shape vs config", lambda f: edit_config(f, intermediate_size=48), "pytorch_model.bin",
     "weight 'bert.encoder.layer.0.intermediate.dense.weight' has shape (64, 32), config implies (48, 32)"),
    ("config has more layers than weights", lambda f: edit_config(f, num_hidden_layers=3), "pytorch_model.bin",
     "missing weight 'bert.encoder.layer.2."),
    ("embedding smaller than config vocab", lambda f: edit_config(f, vocab_size=300), "pytorch_model.bin",
     "weight 'bert.embeddings.word_embeddings.weight' has shape (200, 32), config implies (300, 32)"),
    ("missing encoder weights", lambda f: edit_weights(f, drop=["bert.encoder.layer.1."]), "pytorch_model.bin",
     "missing weight 'bert.encoder.layer.1."),
    ("missing embeddings", lambda f: edit_weights(f, drop=["bert.embeddings.word_embeddings"]), "pytorch_model.bin",
     "missing weight 'bert.embeddings.word_embeddings.weight'"),
    ("missing classifier weights", lambda f: edit_weights(f, drop=["classifier."]), "pytorch_model.bin",
     "missing classifier weights"),
    ("classifier weight not a matrix", lambda f: edit_weights(f, **{"classifier.weight": torch.zeros(2)}),
     "pytorch_model.bin", "classifier.weight has shape (2,), expected [labels, hidden]"),
    ("weights not all tensors", lambda f: torch.save({"classifier.weight": 1}, f / "pytorch_model.bin"),
     "pytorch_model.bin", "expected a mapping of parameter names to tensors"),
    ("weights truncated", lambda f: _truncate(f / "pytorch_model.bin"), "pytorch_model.bin", "cannot read weights"),
    ("weights are text", lambda f: (f / "pytorch_model.bin").write_text("<html>404</html>"), "pytorch_model.bin",
     "refused to load: not a plain tensor checkpoint"),
    ("safetensors corrupt", lambda f: (f / "model.safetensors").write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{"),
     "model.safetensors", "cannot read weights"),
    ("vocab without [CLS]", lambda f: edit_vocab(f, drop=["[CLS]"]), "vocab.txt", "lacks special token(s) [CLS]"),
    ("vocab without [SEP]", lambda f: edit_vocab(f, drop=["[SEP]"]), "vocab.txt", "lacks special token(s) [SEP]"),
    ("vocab without [PAD]", lambda f: edit_vocab(f, drop=["[PAD]"]), "vocab.txt", "lacks special token(s) [PAD]"),
    ("vocab without [UNK]", lambda f: edit_vocab(f, drop=["[UNK]"]), "vocab.txt", "lacks special token(s) [UNK]"),
    ("vocab larger than embedding", lambda f: edit_vocab(f, extra=5), "vocab.txt",
     "205 tokens but config vocab_size is 200"),
    ("vocab not utf-8", lambda f: (f / "vocab.txt").write_bytes(b"[PAD]\n[UNK]\n\xff\xfe\n"), "vocab.txt",
     "not valid UTF-8"),
]


def _truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_bad_checkpoint_is_refused_by_export(case, ckpt, tmp_path):
    _, breaks, named, phrase = case
    breaks(ckpt)
    out = tmp_path / "onnx_out"
    code, _, err = _export(ckpt, out)
    assert_error(code, err, CHECKPOINT_EXIT, named, phrase)
    _assert_nothing_exported(out)


def test_bad_vocab_is_refused_by_preprocess_and_old_inputs_stay(ckpt, tmp_path):
    tsv = write_tsv(tmp_path / "dev.tsv")
    bin_dir = tmp_path / "bert_bin"
    code, _, err = run_main("preprocess", "--tsv", tsv, "--vocab", ckpt / "vocab.txt", "--output_dir", bin_dir)
    assert code == 0, err
    before = sorted(p.name for p in (bin_dir / "input_ids").iterdir())
    edit_vocab(ckpt, drop=["[SEP]", "[UNK]"])
    code, _, err = run_main("preprocess", "--tsv", tsv, "--vocab", ckpt / "vocab.txt", "--output_dir", bin_dir)
    assert_error(code, err, CHECKPOINT_EXIT, ckpt / "vocab.txt", "lacks special token(s) [UNK], [SEP]")
    assert sorted(p.name for p in (bin_dir / "input_ids").iterdir()) == before
    assert leftovers(tmp_path) == []


def test_bad_checkpoint_is_refused_by_torch_inference(ckpt, tmp_path):
    edit_weights(ckpt, drop=["classifier."])
    code, _, err = run_main("infer", "--backend", "torch", "--model_dir", ckpt, "--batchsize", "1",
                            "--input", "a,b,c", "--output", tmp_path / "result")
    assert_error(code, err, CHECKPOINT_EXIT, "pytorch_model.bin", "missing classifier weights")
    assert not (tmp_path / "result").exists()


# ---------------------------------------------------------------- untrusted pickles: refused, never run
def _zip_pickle(path: Path, marker: Path) -> None:
    """torch.save's own zip format, a real tensor beside the payload."""
    torch.save({"classifier.weight": torch.zeros(2, 32), "payload": WritesMarker(marker)}, path)


def _raw_pickle(path: Path, marker: Path) -> None:
    """A bare pickle (torch's legacy non-zip format), protocol 2 as torch itself wrote them."""
    with open(path, "wb") as handle:
        pickle.dump({"payload": WritesMarker(marker)}, handle, protocol=2)


def _unsafe_load(path: Path) -> None:
    """What an unguarded loader does (torch.load before 2.6): unpickle, running whatever is inside."""
    try:
        torch.load(path, weights_only=False)
    except RuntimeError:  # the legacy format's magic-number check fails only after the payload ran
        pass


@pytest.mark.parametrize("write_payload", [_zip_pickle, _raw_pickle], ids=["torch-zip", "legacy-pickle"])
def test_malicious_pickle_checkpoint_never_runs(write_payload, ckpt, tmp_path):
    marker = tmp_path / "pwned"
    write_payload(ckpt / "pytorch_model.bin", marker)
    # Control: an unguarded loader does run the payload, so the assertions below prove something.
    control = tmp_path / "control"
    write_payload(tmp_path / "control.bin", control)
    _unsafe_load(tmp_path / "control.bin")
    assert control.exists()

    out = tmp_path / "onnx_out"
    proc = run_cli("export", "--batch_size", "1", "--model_dir", ckpt, "--output_dir", out)
    assert_error(proc.returncode, proc.stderr, CHECKPOINT_EXIT, ckpt / "pytorch_model.bin",
                 "refused to load: not a plain tensor checkpoint", "never unpickled")
    assert not marker.exists(), "the pickled payload ran"
    _assert_nothing_exported(out)

    code, _, err = run_main("infer", "--backend", "torch", "--model_dir", ckpt, "--batchsize", "1",
                            "--input", "a,b,c", "--output", tmp_path / "result")
    assert_error(code, err, CHECKPOINT_EXIT, "pytorch_model.bin", "refused to load")
    assert not marker.exists()


def _npy_inputs(tmp_path: Path, sample: np.ndarray) -> list:
    """bert_bin/{input_ids,segment_ids,input_mask}/input0.npy, each holding `sample`."""
    dirs = []
    for name in ("input_ids", "segment_ids", "input_mask"):
        folder = tmp_path / "bert_bin" / name
        folder.mkdir(parents=True)
        np.save(folder / "input0.npy", sample)
        dirs.append(folder)
    return dirs


def test_malicious_npy_input_never_runs(tiny_checkpoint, tmp_path):
    marker = tmp_path / "pwned"
    dirs = _npy_inputs(tmp_path, np.ones(64, dtype=np.int64))
    np.save(dirs[0] / "input0.npy", np.array([WritesMarker(marker)], dtype=object), allow_pickle=True)
    np.load(dirs[0] / "input0.npy", allow_pickle=True)  # control: the payload is live
    assert marker.exists()
    marker.unlink()

    proc = run_cli("infer", "--backend", "torch", "--model_dir", tiny_checkpoint, "--batchsize", "1",
                   "--input", ",".join(map(str, dirs)), "--output", tmp_path / "result")
    assert_error(proc.returncode, proc.stderr, DATA_EXIT, dirs[0] / "input0.npy",
                 "Object arrays cannot be loaded when allow_pickle=False")
    assert not marker.exists(), "the pickled payload ran"
    assert not (tmp_path / "result").exists(), "a failed run must not leave a result folder"


def test_non_integer_npy_input_is_refused(tiny_checkpoint, tmp_path):
    dirs = _npy_inputs(tmp_path, np.ones(64, dtype=np.float32))
    code, _, err = run_main("infer", "--backend", "torch", "--model_dir", tiny_checkpoint, "--batchsize", "1",
                            "--input", ",".join(map(str, dirs)), "--output", tmp_path / "result")
    assert_error(code, err, DATA_EXIT, dirs[0] / "input0.npy", "float32 values, expected int64 token ids")
    assert not (tmp_path / "result").exists()
