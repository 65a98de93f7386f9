"""The checkpoints users bring (issue 12): Hugging Face BertForSequenceClassification folders with their own head
and tokenizer settings, Hugging Face cache and sharded layouts, and nothing non-finite.

Hugging Face checkpoints are written on the fly with transformers' own save_pretrained; the expected labels
come from transformers' own forward and tokenizer, loaded offline from the folder."""

from __future__ import annotations

import json
import math
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import SENTENCES, WORDS, random_batch, write_tsv
from error_helpers import assert_error, run_main
from tinybert_infer.backends.base import Backend
from tinybert_infer.models.checkpoint import load_model, read_checkpoint
from tinybert_infer.errors import CheckpointError, DataError, ExportError, PipelineError, ResultError
from tinybert_infer.models.synthetic import write_random_checkpoint, write_random_hf_checkpoint

INPUTS = ("input_ids", "segment_ids", "input_mask")
CASED_WORDS = ["Good", "MOVIE", "Film", "É", "##É", "It", "The"]


@pytest.fixture(scope="module")
def hf_checkpoint(tmp_path_factory) -> Path:
    return write_random_hf_checkpoint(tmp_path_factory.mktemp("hf") / "hf_model", words=WORDS, seed=4)


@pytest.fixture(scope="module")
def cased_checkpoint(tmp_path_factory) -> Path:
    return write_random_hf_checkpoint(tmp_path_factory.mktemp("cased") / "cased_model", words=WORDS + CASED_WORDS,
                                      seed=5, do_lower_case=False)


def transformers_reference(folder: Path, texts):
    """Labels and logits as transformers computes them from the folder alone (offline)."""
    from transformers import BertForSequenceClassification, BertTokenizer

    tokenizer = BertTokenizer.from_pretrained(str(folder), local_files_only=True)
    model = BertForSequenceClassification.from_pretrained(str(folder), local_files_only=True).eval()
    enc = tokenizer(list(texts), max_length=64, truncation=True, padding="max_length", return_tensors="pt")
    with torch.inference_mode():
        logits = model(**enc).logits.numpy()
    return logits.argmax(1), logits, enc


def result_labels(result_dir: Path, count: int) -> np.ndarray:
    from tinybert_infer.run.results import read_output

    return np.array([read_output(result_dir / f"input{i}_0.txt").argmax() for i in range(count)])


def run_pipeline(model_dir: Path, work: Path, tsv: Path, backend: str = "onnxruntime", export_args=()):
    """export, preprocess, infer, postprocess through the CLI; returns (export stdout, result folder, summary)."""
    code, out_export, err = run_main("export", "--batch_size", "4", "--model_dir", model_dir, "--data_dir",
                                     tsv.parent, "--output_dir", work, *export_args)
    assert code == 0, err
    code, _, err = run_main("preprocess", "--tsv", tsv, "--model_dir", model_dir, "--output_dir", work / "bert_bin")
    assert code == 0, err
    bins = ",".join(str(work / "bert_bin" / n) for n in INPUTS)
    code, out, err = run_main("infer", "--backend", backend, "--model", work / "TinyBERT_sim_bs4.onnx", "--batchsize",
                              "4", "--model_dir", model_dir, "--input", bins, "--output", work / "result",
                              "--outfmt", "TXT", "--output_dirname", backend)
    assert code == 0, err
    result_dir = work / "result" / backend
    code, out_post, err = run_main("postprocess", "--result_dir", result_dir, "--bin_dir", work / "bert_bin")
    assert code == 0, err
    summary = json.loads((work / "result" / f"{backend}_summary.json").read_text())
    return out_export, result_dir, summary, out_post


# ---------------------------------------------------------------- heads, whole pipeline
@pytest.mark.parametrize("backend", ["onnxruntime", "torch"])
def test_hf_checkpoint_gives_transformers_labels_through_the_pipeline(tmp_path, hf_checkpoint, tiny_tsv, backend):
    texts = [s for s, _ in SENTENCES]
    want, want_logits, _ = transformers_reference(hf_checkpoint, texts)
    out_export, result_dir, summary, out_post = run_pipeline(hf_checkpoint, tmp_path, tiny_tsv, backend)
    assert "head: hf: classifier(pooler)" in out_export
    assert "max |logit diff| vs transformers BertForSequenceClassification = " in out_export
    assert summary["head"] == "hf"
    got = result_labels(result_dir, len(texts))
    assert got.tolist() == want.tolist()
    accuracy = np.mean(want == np.array([int(label) for _, label in SENTENCES]))
    assert f"acc:{accuracy:.4f}" in out_post
    # TinyBERT's head on the same weights gives other logits: the head really is decided, not assumed.
    _, tinybert_head = load_model(hf_checkpoint, head="tinybert")
    enc = transformers_reference(hf_checkpoint, texts)[2]
    with torch.inference_mode():
        other = tinybert_head(enc["input_ids"], enc["token_type_ids"], enc["attention_mask"]).numpy()
    assert np.max(np.abs(other - want_logits)) > 1e-2


def test_tinybert_checkpoint_keeps_its_relu_head_through_the_pipeline(tmp_path, tiny_checkpoint, tiny_tsv):
    from tinybert_infer.data.features import encode, make_tokenizer

    out_export, result_dir, summary, _ = run_pipeline(tiny_checkpoint, tmp_path, tiny_tsv)
    assert "head: tinybert: classifier(relu(pooler))" in out_export
    assert "transformers" not in out_export
    assert summary["head"] == "tinybert"
    checkpoint, model = load_model(tiny_checkpoint)
    assert checkpoint.spec.name == "tinybert" and model.config.relu_head
    feats = encode(make_tokenizer(checkpoint.vocab_file), [s for s, _ in SENTENCES])
    with torch.inference_mode():
        want = model(*(torch.from_numpy(feats[n]) for n in INPUTS)).numpy().argmax(1)
    assert result_labels(result_dir, len(SENTENCES)).tolist() == want.tolist()


@pytest.mark.parametrize("cls_only_last_layer", [True, False], ids=["cls-only-last-layer", "full-last-layer"])
def test_hf_head_module_matches_transformers_forward(hf_checkpoint, cls_only_last_layer):
    from transformers import BertForSequenceClassification

    checkpoint, model = load_model(hf_checkpoint, cls_only_last_layer=cls_only_last_layer)
    assert checkpoint.spec.name == "hf" and not model.config.relu_head
    theirs = BertForSequenceClassification.from_pretrained(str(hf_checkpoint), local_files_only=True).eval()
    ids, seg, mask = random_batch(checkpoint.config.vocab_size)
    with torch.inference_mode():
        diff = model(ids, seg, mask) - theirs(input_ids=ids, token_type_ids=seg, attention_mask=mask).logits
    assert torch.max(torch.abs(diff)).item() < 1e-5


def test_dynamic_export_of_hf_checkpoint_is_checked_against_transformers(tmp_path, hf_checkpoint, tiny_tsv):
    code, out, err = run_main("export", "--dynamic", "--model_dir", hf_checkpoint, "--data_dir", tiny_tsv.parent,
                              "--output_dir", tmp_path, "--validate_count", "4")
    assert code == 0, err
    assert "head: hf" in out and "TinyBERT_sim_dyn.onnx: max |logit diff| vs transformers" in out
    from tinybert_infer.models.specs import METADATA_HEAD, read_onnx_metadata

    assert read_onnx_metadata(tmp_path / "TinyBERT_sim_dyn.onnx")[METADATA_HEAD] == "hf"


def test_undecidable_head_is_refused_naming_the_flag(tmp_path, hf_checkpoint, tiny_tsv):
    folder = Path(shutil.copytree(hf_checkpoint, tmp_path / "ck"))
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps(dict(config, architectures=["BertForMaskedLM"])))
    out = tmp_path / "out"
    code, _, err = run_main("export", "--batch_size", "1", "--model_dir", folder, "--data_dir", tiny_tsv.parent,
                            "--output_dir", out)
    assert_error(code, err, CheckpointError.exit_code, "config.json", "BertForMaskedLM", "--head tinybert",
                 "--head hf")
    assert not out.exists() or not list(out.iterdir())
    code, stdout, err = run_main("export", "--batch_size", "1", "--model_dir", folder, "--data_dir", tiny_tsv.parent,
                                 "--output_dir", out, "--head", "hf")
    assert code == 0, err
    assert "head: hf" in stdout


def test_head_flag_is_refused_for_an_exported_graph(tmp_path, tiny_checkpoint):
    code, _, err = run_main("infer", "--backend", "onnxruntime", "--model", tmp_path / "x.onnx", "--head", "hf")
    assert_error(code, err, 2, "--head applies to --backend torch")


@pytest.mark.parametrize("key, value", [("position_embedding_type", "relative_key"), ("model_type", "roberta"),
                                        ("is_decoder", True), ("problem_type", "regression")])
def test_configs_the_encoder_does_not_compute_are_refused(tmp_path, hf_checkpoint, key, value):
    folder = Path(shutil.copytree(hf_checkpoint, tmp_path / "ck"))
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps(dict(config, **{key: value})))
    with pytest.raises(CheckpointError, match=f"{key} .* not supported"):
        read_checkpoint(folder)


# ---------------------------------------------------------------- tokenizer settings
def test_cased_checkpoint_gives_transformers_tokenisation_byte_for_byte(tmp_path, cased_checkpoint):
    rows = SENTENCES + [("Good MOVIE , The Film", "1"), ("Émile's É film", "0")]
    tsv = write_tsv(tmp_path / "dev.tsv", rows)
    assert not (cased_checkpoint / "vocab.txt").exists()  # the vocabulary is tokenizer.json's
    code, _, err = run_main("preprocess", "--tsv", tsv, "--model_dir", cased_checkpoint, "--output_dir",
                            tmp_path / "bert_bin")
    assert code == 0, err
    _, _, enc = transformers_reference(cased_checkpoint, [s for s, _ in rows])
    want = {"input_ids": enc["input_ids"], "segment_ids": enc["token_type_ids"], "input_mask": enc["attention_mask"]}
    for name in INPUTS:
        for i in range(len(rows)):
            got = (tmp_path / "bert_bin" / name / f"input{i}.bin").read_bytes()
            assert got == want[name][i].numpy().astype(np.int64).tobytes(), (name, i)
    ids = enc["input_ids"][len(rows) - 2].tolist()
    from transformers import BertTokenizer

    tok = BertTokenizer.from_pretrained(str(cased_checkpoint), local_files_only=True)
    assert tok.convert_tokens_to_ids("Good") in ids and tok.convert_tokens_to_ids("MOVIE") in ids  # really cased
    manifest = json.loads((tmp_path / "bert_bin" / "manifest.json").read_text())
    assert manifest["tokenizer"] == {"do_lower_case": False, "strip_accents": False, "tokenize_chinese_chars": True}


def test_inputs_tokenised_with_other_settings_are_refused(tmp_path, cased_checkpoint, tiny_tsv):
    """Lower-cased inputs for a cased model: inference refuses them (exit 4, no result folder), and so does
    postprocessing for a run made on the right inputs but scored against the wrong ones."""
    lower = Path(shutil.copytree(cased_checkpoint, tmp_path / "lower"))
    config = json.loads((lower / "tokenizer_config.json").read_text())
    (lower / "tokenizer_config.json").write_text(json.dumps(dict(config, do_lower_case=True)))
    for folder, bins in ((cased_checkpoint, "cased_bin"), (lower, "lower_bin")):
        code, _, err = run_main("preprocess", "--tsv", tiny_tsv, "--model_dir", folder, "--output_dir", tmp_path / bins)
        assert code == 0, err

    def infer(bins, name):
        dirs = ",".join(str(tmp_path / bins / n) for n in INPUTS)
        return run_main("infer", "--backend", "torch", "--batchsize", "4", "--model_dir", cased_checkpoint,
                        "--input", dirs, "--output", tmp_path / "result", "--output_dirname", name, "--outfmt", "TXT")

    code, _, err = infer("lower_bin", "wrong")
    assert_error(code, err, DataError.exit_code, "manifest.json", "do_lower_case=true",
                 "model's tokenizer uses do_lower_case=false")
    assert not (tmp_path / "result" / "wrong").exists()
    code, _, err = infer("cased_bin", "right")
    assert code == 0, err
    code, _, err = run_main("postprocess", "--result_dir", tmp_path / "result" / "right", "--bin_dir",
                            tmp_path / "lower_bin")
    assert_error(code, err, ResultError.exit_code, "tokenised with do_lower_case=true")
    code, _, err = run_main("postprocess", "--result_dir", tmp_path / "result" / "right", "--bin_dir",
                            tmp_path / "cased_bin")
    assert code == 0, err


def test_tokenizer_config_settings_are_read_like_transformers(tmp_path, tiny_checkpoint):
    from transformers import BertTokenizer

    from tinybert_infer.data.features import make_tokenizer

    folder = Path(shutil.copytree(tiny_checkpoint, tmp_path / "ck"))
    text = "Émile's MOVIE"
    assert make_tokenizer(folder / "vocab.txt").tokenize(text) == \
        BertTokenizer.from_pretrained(str(folder), local_files_only=True).tokenize(text)  # no config: lower case
    (folder / "tokenizer_config.json").write_text(json.dumps({"do_lower_case": True, "strip_accents": False}))
    ours = make_tokenizer(folder / "vocab.txt").tokenize(text)
    assert ours == BertTokenizer.from_pretrained(str(folder), local_files_only=True).tokenize(text)
    assert ours[0] != "e"  # the accent was kept
    (folder / "tokenizer_config.json").write_text(json.dumps({"do_lower_case": "no"}))
    with pytest.raises(CheckpointError, match="do_lower_case' must be true or false"):
        make_tokenizer(folder / "vocab.txt")


# ---------------------------------------------------------------- folder layouts
def _as_hf_cache(src: Path, root: Path) -> Path:
    """models--org--name/{blobs,snapshots/<hash>,refs/main} with the snapshot's files symlinked into blobs/."""
    entry = root / "models--org--tiny-sst2"
    commit = "0123456789abcdef0123456789abcdef01234567"
    (entry / "blobs").mkdir(parents=True)
    (entry / "snapshots" / commit).mkdir(parents=True)
    (entry / "refs").mkdir()
    (entry / "refs" / "main").write_text(commit)
    for i, path in enumerate(sorted(src.iterdir())):
        blob = entry / "blobs" / f"blob{i:04d}"
        shutil.copyfile(path, blob)
        os.symlink(os.path.join("..", "..", "blobs", blob.name), entry / "snapshots" / commit / path.name)
    return entry


def test_hugging_face_cache_entry_and_snapshot_folder_load(tmp_path, hf_checkpoint, tiny_tsv):
    entry = _as_hf_cache(hf_checkpoint, tmp_path / "hub")
    snapshot = next((entry / "snapshots").iterdir())
    direct = read_checkpoint(hf_checkpoint)
    for folder in (entry, snapshot):
        checkpoint = read_checkpoint(folder)
        assert checkpoint.folder == snapshot and checkpoint.spec.name == "hf"
        assert all(torch.equal(direct.state_dict[k], v) for k, v in checkpoint.state_dict.items())
    code, _, err = run_main("preprocess", "--tsv", tiny_tsv, "--model_dir", entry, "--output_dir", tmp_path / "bb")
    assert code == 0, err
    (entry / "refs" / "main").write_text("f" * 40)
    with pytest.raises(CheckpointError, match="names snapshot"):
        read_checkpoint(entry)


def test_sharded_safetensors_load_like_one_file(tmp_path, hf_checkpoint):
    sharded = write_random_hf_checkpoint(tmp_path / "sharded", words=WORDS, seed=4, max_shard_size=20000)
    shards = sorted(p.name for p in sharded.glob("model-*.safetensors"))
    assert len(shards) > 2 and (sharded / "model.safetensors.index.json").is_file()
    whole, parts = read_checkpoint(hf_checkpoint), read_checkpoint(sharded)
    assert parts.weights_file.name == "model.safetensors.index.json"
    assert sorted(whole.state_dict) == sorted(parts.state_dict)
    assert all(torch.equal(whole.state_dict[k], parts.state_dict[k]) for k in whole.state_dict)
    (sharded / shards[1]).unlink()
    with pytest.raises(CheckpointError, match=f"shard '{shards[1]}' not found"):
        read_checkpoint(sharded)


# ---------------------------------------------------------------- nothing non-finite
@pytest.mark.parametrize("safetensors", [True, False], ids=["safetensors", "pytorch_model.bin"])
@pytest.mark.parametrize("bad", [math.nan, math.inf])
def test_non_finite_weights_are_refused_at_load(tmp_path, tiny_tsv, safetensors, bad):
    folder = write_random_checkpoint(tmp_path / "ck", safetensors=safetensors, seed=2)
    weights = folder / ("model.safetensors" if safetensors else "pytorch_model.bin")
    if safetensors:
        from safetensors.torch import load_file, save_file

        state = load_file(str(weights))
    else:
        state = torch.load(str(weights), weights_only=True)
    name = "bert.encoder.layer.1.attention.self.key.weight"
    state[name][3, 5] = bad
    save_file(state, str(weights)) if safetensors else torch.save(state, str(weights))
    out = tmp_path / "out"
    code, _, err = run_main("export", "--batch_size", "1", "--model_dir", folder, "--data_dir", tiny_tsv.parent,
                            "--output_dir", out)
    assert_error(code, err, CheckpointError.exit_code, weights.name, f"tensor '{name}' holds NaN or inf")
    assert not out.exists() or not list(out.iterdir())


def test_parity_check_fails_on_non_finite_logits(tmp_path, tiny_checkpoint, tiny_tsv, monkeypatch):
    from tinybert_infer.export import onnx as export
    from tinybert_infer.export.onnx import export_checkpoint, logit_difference

    nan = np.array([[np.nan, 0.0]])
    assert logit_difference(nan, nan) == math.inf
    assert logit_difference(np.zeros((1, 2)), np.array([[np.inf, 0.0]])) == math.inf
    assert logit_difference(np.zeros((1, 2)), np.ones((1, 2))) == 1.0

    def broken(folder, **kwargs):  # finite weights whose logits overflow: what the load check cannot see
        checkpoint, model = load_model(folder, **kwargs)
        with torch.no_grad():
            model.classifier.bias.fill_(math.inf)
        return checkpoint, model

    monkeypatch.setattr(export, "load_model", broken)
    with pytest.raises(ExportError, match="non-finite logits"):
        export_checkpoint(tiny_checkpoint, 2, tmp_path, tsv_path=tiny_tsv)
    assert list(tmp_path.glob("*.onnx")) == [] and not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


class _NanAfter(Backend):
    """A backend whose sample `bad` comes out NaN (the batch it is in has run before, so results exist)."""

    name = "nan-stub"
    batch_size = 4
    seq_len = None
    input_names = INPUTS

    def __init__(self, bad: int):
        self.bad, self.calls = bad, 0

    def run(self, feeds):
        out = np.zeros((len(feeds["input_ids"]), 2), np.float32)
        return out

    def run_pipelined(self, items):
        for batch, (feeds, slots) in enumerate(items):
            out = self.run(feeds)
            for slot in slots:
                if slot.index == self.bad:
                    out[slot.row] = np.nan
            yield slots, out, 1.0

    def describe(self):
        return {"backend": self.name}

    def close(self):
        pass


def test_non_finite_output_stops_inference_and_leaves_no_result_folder(tmp_path, tiny_checkpoint, tiny_tsv,
                                                                       monkeypatch):
    from tinybert_infer import backends
    from tinybert_infer.data.features import preprocess

    preprocess(tiny_tsv, tiny_checkpoint / "vocab.txt", tmp_path / "bert_bin", show_progress=False)
    monkeypatch.setattr(backends, "make_backend", lambda *a, **k: _NanAfter(bad=6))
    dirs = ",".join(str(tmp_path / "bert_bin" / n) for n in INPUTS)
    code, _, err = run_main("infer", "--backend", "onnxruntime", "--model", tmp_path / "m.onnx", "--input", dirs,
                            "--output", tmp_path / "result", "--outfmt", "TXT")
    assert_error(code, err, PipelineError.exit_code, "input6.bin", "non-finite model output", "sample 6")
    assert sorted(os.listdir(tmp_path / "result")) == []  # no folder, no summary, no spool


# ---------------------------------------------------------------- id2label: the model's own label order
def _with_id2label(src: Path, dst: Path, id2label: dict) -> Path:
    shutil.copytree(src, dst)
    config = json.loads((dst / "config.json").read_text())
    config["id2label"] = {str(k): v for k, v in id2label.items()}
    config["label2id"] = {v: k for k, v in id2label.items()}
    (dst / "config.json").write_text(json.dumps(config))
    return dst


@pytest.mark.parametrize("backend", ["onnxruntime", "torch"])
def test_reversed_id2label_gives_the_model_own_labels_in_dataset_order(tmp_path, hf_checkpoint, tiny_tsv, backend):
    """A checkpoint whose output 0 is POSITIVE: every prediction is the dataset label its name says (SST-2:
    0 negative, 1 positive), through export, OM-style result folders (logit k = dataset label k), postprocess
    and score; read as label i = output i, all of them were backwards with exit 0."""
    from transformers import BertForSequenceClassification

    model_dir = _with_id2label(hf_checkpoint, tmp_path / "reversed", {0: "POSITIVE", 1: "NEGATIVE"})
    texts = [s for s, _ in SENTENCES]
    outputs, logits, _ = transformers_reference(model_dir, texts)
    names = BertForSequenceClassification.from_pretrained(str(model_dir), local_files_only=True).config.id2label
    want = np.array([{"NEGATIVE": 0, "POSITIVE": 1}[names[int(o)]] for o in outputs])
    assert (want != outputs).all()  # the order matters for every sentence

    _, result_dir, summary, out_post = run_pipeline(model_dir, tmp_path / "work", tiny_tsv, backend)
    assert result_labels(result_dir, len(texts)).tolist() == want.tolist()
    accuracy = np.mean(want == np.array([int(label) for _, label in SENTENCES]))
    assert f"acc:{accuracy:.4f}" in out_post
    assert summary["model_labels"] == [{"label": 0, "model_output": 1, "model_name": "NEGATIVE"},
                                       {"label": 1, "model_output": 0, "model_name": "POSITIVE"}]
    # logits in dataset order: logit_0 is transformers' NEGATIVE output
    from tinybert_infer.run.results import read_output

    got0 = np.array([read_output(result_dir / f"input{i}_0.txt") for i in range(len(texts))])
    np.testing.assert_allclose(got0, logits[:, ::-1], atol=1e-4)

    code, out, err = run_main("score", "--tsv", tiny_tsv, "--backend", "torch", "--model_dir", model_dir,
                              "--output", tmp_path / "scored", "--output_dirname", "s")
    assert code == 0, err
    rows = (tmp_path / "scored" / "s" / "predictions.tsv").read_text().splitlines()[1:]
    assert [int(r.split("\t")[2]) for r in rows] == want.tolist()
    assert f"acc:{accuracy:.4f}" in out


@pytest.mark.parametrize("id2label, fragment", [
    ({0: "joy", 1: "anger"}, "does not say which dataset label"),
    ({0: "positive", 1: "LABEL_1"}, "does not say which dataset label"),  # two names for label 1
    ({0: "LABEL_0", 2: "LABEL_1"}, "id2label names outputs [0, 2]"),
])
def test_id2label_that_does_not_name_the_dataset_labels_is_refused(tmp_path, hf_checkpoint, tiny_tsv, id2label,
                                                                   fragment):
    model_dir = _with_id2label(hf_checkpoint, tmp_path / "odd", id2label)
    code, _, err = run_main("export", "--batch_size", "4", "--model_dir", model_dir, "--data_dir", tiny_tsv.parent,
                            "--output_dir", tmp_path / "out")
    assert_error(code, err, CheckpointError.exit_code, model_dir / "config.json", fragment)
    assert not (tmp_path / "out").exists() or not list((tmp_path / "out").glob("*.onnx"))


def test_generic_and_numbered_names_keep_the_output_order(tmp_path, hf_checkpoint):
    from tinybert_infer.models.labels import output_order

    for names in ({0: "LABEL_0", 1: "LABEL_1"}, {0: "0", 1: "1"}, {0: "negative", 1: "Positive"}, {0: "neg", 1: "pos"}):
        assert output_order({"id2label": {str(k): v for k, v in names.items()}}, 2, Path("c.json")) == (0, 1)
    assert output_order({}, 3, Path("c.json")) == (0, 1, 2)
    assert output_order({"id2label": {"0": "LABEL_2", "1": "LABEL_0", "2": "LABEL_1"}}, 3, Path("c.json")) == (1, 2, 0)


def test_score_tokenises_as_the_checkpoint_says_and_refuses_a_graph_of_other_settings(tmp_path, cased_checkpoint):
    """score on a cased HF folder (tokenizer.json, no vocab.txt) gives transformers' labels; the same folder made
    lower-case is refused with the cased model's graph, naming both settings."""
    texts = ["Good MOVIE", "The Film It", "É good", "it the"]
    tsv = write_tsv(tmp_path / "cased.tsv", [(t, "1") for t in texts])
    want = transformers_reference(cased_checkpoint, texts)[0]
    code, _, err = run_main("export", "--dynamic", "--model_dir", cased_checkpoint, "--data_dir", tmp_path,
                            "--output_dir", tmp_path)
    assert code == 0, err
    from tinybert_infer.layout import dynamic_sim_onnx_name

    onnx = tmp_path / dynamic_sim_onnx_name()
    code, _, err = run_main("score", "--tsv", tsv, "--model", onnx, "--model_dir", cased_checkpoint,
                            "--output", tmp_path / "scored", "--output_dirname", "s")
    assert code == 0, err
    rows = (tmp_path / "scored" / "s" / "predictions.tsv").read_text().splitlines()[1:]
    assert [int(r.split("\t")[2]) for r in rows] == want.tolist()

    lower = Path(shutil.copytree(cased_checkpoint, tmp_path / "lower"))
    config = json.loads((lower / "tokenizer_config.json").read_text())
    (lower / "tokenizer_config.json").write_text(json.dumps(dict(config, do_lower_case=True)))
    code, _, err = run_main("score", "--tsv", tsv, "--model", onnx, "--model_dir", lower,
                            "--output", tmp_path / "scored", "--output_dirname", "t")
    assert_error(code, err, DataError.exit_code, onnx, "do_lower_case=false", "do_lower_case=true")
    assert not (tmp_path / "scored" / "t").exists()


def test_graph_metadata_is_read_as_onnx_reads_it_and_unreadable_files_give_none(tiny_exports, tmp_path):
    import onnx

    from tinybert_infer.models.specs import read_onnx_metadata

    for report in (tiny_exports["static"], tiny_exports["dynamic"]):
        expected = {p.key: p.value for p in onnx.load(str(report.sim_path), load_external_data=False).metadata_props}
        assert expected and read_onnx_metadata(report.sim_path) == expected
    garbage = tmp_path / "not.onnx"
    garbage.write_bytes(b"\xff\xff\xff\xff not a protobuf")
    assert read_onnx_metadata(garbage) == {}
    assert read_onnx_metadata(tmp_path / "missing.onnx") == {}


def test_graph_metadata_is_found_past_the_graph_reading_only_its_records(tiny_exports, tmp_path, monkeypatch):
    """The reader seeks over the other top-level fields: metadata written after a large graph is still found,
    with only a few hundred bytes read; a file cut short or with a record past its end gives {}."""
    import builtins

    import onnx

    from tinybert_infer.models.specs import read_onnx_metadata

    model = onnx.load(str(tiny_exports["dynamic"].sim_path), load_external_data=False)
    model.graph.doc_string = "x" * 2_000_000  # a big graph field before metadata_props, as real weights are
    onnx.helper.set_model_props(model, {"a": "1", "b": "é"})
    path = tmp_path / "big.onnx"
    data = model.SerializeToString()
    path.write_bytes(data)
    read = []
    real_open = builtins.open

    def counting_open(file, mode="r", *args, **kwargs):
        handle = real_open(file, mode, *args, **kwargs)
        if str(file) == str(path):
            original = handle.read
            handle.read = lambda n=-1: read.append(n) or original(n)
        return handle

    monkeypatch.setattr(builtins, "open", counting_open)
    assert read_onnx_metadata(path) == {"a": "1", "b": "é"}
    monkeypatch.undo()
    assert 0 < sum(n for n in read if n > 0) < 1000 and -1 not in read
    for cut in (len(data) - 3, len(data) // 2):
        path.write_bytes(data[:cut])
        assert read_onnx_metadata(path) == {}


def _swapped_vocab_checkpoint(source: Path, dest: Path) -> Path:
    """The same checkpoint with "good" and "bad" trading ids: same size and switches, every sentence with either
    word turned into other ids."""
    folder = Path(shutil.copytree(source, dest))
    tokens = (folder / "vocab.txt").read_text().splitlines()
    i, j = tokens.index("good"), tokens.index("bad")
    tokens[i], tokens[j] = tokens[j], tokens[i]
    (folder / "vocab.txt").write_text("\n".join(tokens) + "\n")
    return folder


def test_graph_or_inputs_of_another_vocabulary_are_refused_everywhere(tmp_path, tiny_checkpoint, tiny_exports):
    """Same switches, another vocabulary: score, infer (--tsv and preprocessed inputs) and postprocess refuse
    it, naming the file and both vocabularies, and write nothing. Before, each of them ran with exit 0 on ids the
    graph was never trained on."""
    from conftest import copy_exports

    exports = copy_exports(tiny_exports, tmp_path / "exports")
    other = _swapped_vocab_checkpoint(tiny_checkpoint, tmp_path / "other")
    tsv = exports["tsv"]
    code, _, err = run_main("preprocess", "--tsv", tsv, "--model_dir", other, "--output_dir", tmp_path / "other_bin")
    assert code == 0, err
    right = json.loads((exports["bin"] / "manifest.json").read_text())["vocab"]["digest"]
    wrong = json.loads((tmp_path / "other_bin" / "manifest.json").read_text())["vocab"]["digest"]
    assert right != wrong and right.startswith("sha256:")
    ids = [np.concatenate([np.fromfile(f, np.int64) for f in sorted((b / "input_ids").iterdir())])
           for b in (exports["bin"], tmp_path / "other_bin")]
    assert not np.array_equal(*ids)  # the swap reaches the ids ("very very good" is in the TSV)

    dyn, static = exports["dynamic"].sim_path, exports["static"].sim_path
    code, _, err = run_main("score", "--tsv", tsv, "--model", dyn, "--model_dir", other,
                            "--output", tmp_path / "scored", "--output_dirname", "s")
    assert_error(code, err, DataError.exit_code, dyn, other / "vocab.txt", right[:19], wrong[:19])
    code, _, err = run_main("infer", "--tsv", tsv, "--dynamic_length", "--batchsize", "4", "--model", dyn,
                            "--model_dir", other, "--output", tmp_path / "result", "--output_dirname", "t")
    assert_error(code, err, DataError.exit_code, dyn, "vocabulary")

    def infer(bins, name):
        dirs = ",".join(str(bins / n) for n in INPUTS)
        return run_main("infer", "--backend", "onnxruntime", "--model", static, "--batchsize", "4",
                        "--input", dirs, "--output", tmp_path / "result", "--output_dirname", name, "--outfmt", "TXT")

    code, _, err = infer(tmp_path / "other_bin", "wrong")
    assert_error(code, err, DataError.exit_code, tmp_path / "other_bin" / "manifest.json", wrong[:19], right[:19])
    assert not (tmp_path / "scored").exists() and not (tmp_path / "result").exists()
    code, _, err = infer(exports["bin"], "right")
    assert code == 0, err
    summary = json.loads((tmp_path / "result" / "right_summary.json").read_text())
    assert summary["model_vocab"] == right
    code, _, err = run_main("postprocess", "--result_dir", tmp_path / "result" / "right", "--bin_dir",
                            tmp_path / "other_bin")
    assert_error(code, err, ResultError.exit_code, "vocabulary")
    code, _, err = run_main("postprocess", "--result_dir", tmp_path / "result" / "right", "--bin_dir", exports["bin"])
    assert code == 0, err


def test_vocabulary_digest_is_the_tokens_in_id_order_whatever_the_file(tmp_path, cased_checkpoint):
    """tokenizer.json and vocab.txt holding the same tokens at the same ids are one vocabulary."""
    from tinybert_infer.data.features import load_vocab, vocab_digest, vocab_file_digest

    vocab = load_vocab(cased_checkpoint / "tokenizer.json")
    txt = tmp_path / "vocab.txt"
    txt.write_text("\n".join(sorted(vocab, key=vocab.get)) + "\n")
    assert vocab_file_digest(txt) == vocab_file_digest(cased_checkpoint / "tokenizer.json") == vocab_digest(vocab)
    swapped = dict(vocab)
    first, second = sorted(vocab, key=vocab.get)[:2]
    swapped[first], swapped[second] = vocab[second], vocab[first]
    assert vocab_digest(swapped) != vocab_digest(vocab)
