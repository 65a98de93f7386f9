"""TSV -> TinyBERT features -> one int64 file per sample and input, plus a manifest (ModelZoo's bert_bin layout)."""

from __future__ import annotations

import collections.abc
import functools
import hashlib
import json
import os
import re
from dataclasses import dataclass
from itertools import islice
from pathlib import Path
from typing import Iterable, Iterator, Optional, Sequence

import numpy as np

from tinybert_infer.errors import CheckpointError, DataError
from tinybert_infer.fsutil import JsonSpool, dump_json, file_sha256, read_json_object, staged_dir
from tinybert_infer.layout import (FILE_DTYPES, IDS_NAME, INPUT_NAMES, MANIFEST_NAME, MASK_NAME, SEGMENTS_NAME, SEQ_LEN,
                                   natural_key, sample_file_name)
from tinybert_infer.progress import progress
from tinybert_infer.data.tsv import TsvReader

MANIFEST_FORMAT = "tinybert-infer-inputs/1"
CHUNK = 512  # sentences tokenised per call: bounded memory, fast-tokenizer batching


TOKENIZER_CONFIG = "tokenizer_config.json"
TOKENIZER_JSON = "tokenizer.json"
# tokenizer_config.json's tokenizer_class values that name BERT's WordPiece tokenizer (the one built here).
BERT_TOKENIZER_CLASSES = ("BertTokenizer", "BertTokenizerFast")


@dataclass(frozen=True)
class TokenizerSettings:
    """BertTokenizer's normalisation switches, with its defaults (the recipe's: lower case, accents stripped)."""

    do_lower_case: bool = True
    strip_accents: Optional[bool] = None  # None: follow do_lower_case, as BertTokenizer does
    tokenize_chinese_chars: bool = True

    def record(self) -> dict:
        """The effective switches, as the manifest and the ONNX metadata record them."""
        strip = self.do_lower_case if self.strip_accents is None else self.strip_accents
        return {"do_lower_case": self.do_lower_case, "strip_accents": strip,
                "tokenize_chinese_chars": self.tokenize_chinese_chars}

    def label(self) -> str:
        return describe_tokenizer(self.record())


def describe_tokenizer(record: dict) -> str:
    """One line for a recorded setting: what messages and the run summary show and compare."""
    return ",".join(f"{k}={str(record.get(k)).lower()}" for k in ("do_lower_case", "strip_accents",
                                                                   "tokenize_chinese_chars"))


def vocab_digest(vocab: dict) -> str:
    """The identity of a vocabulary: sha256 of its tokens in id order. Two checkpoints with the same switches but
    other vocabularies turn the same text into other ids, and a graph fed them gives wrong labels without any
    other sign. vocab.txt and tokenizer.json with the same tokens and ids get the same digest."""
    tokens = sorted(vocab, key=vocab.__getitem__)
    return "sha256:" + hashlib.sha256("\n".join(tokens).encode("utf-8")).hexdigest()


def vocab_file_digest(vocab_file) -> str:
    return make_tokenizer(vocab_file).vocab_digest


def describe_vocab(digest: str) -> str:
    """Short enough for a one-line error, long enough to tell two vocabularies apart."""
    return f"vocabulary {digest[:len('sha256:') + 12]}"


def read_tokenizer_settings(folder) -> TokenizerSettings:
    """folder/tokenizer_config.json read as transformers' BertTokenizer.from_pretrained reads it (its keys
    override BertTokenizer's defaults; tokenizer.json's normaliser is not consulted, as in transformers 5);
    without the file, the recipe's lower-case default."""
    path = Path(folder) / TOKENIZER_CONFIG
    if not path.is_file():
        return TokenizerSettings()
    raw = read_json_object(path, CheckpointError)
    cls = raw.get("tokenizer_class")
    if cls is not None and cls not in BERT_TOKENIZER_CLASSES:
        raise CheckpointError(f"{path}: tokenizer_class {cls!r} not supported (only BERT WordPiece: "
                              f"{', '.join(BERT_TOKENIZER_CLASSES)})")
    defaults = TokenizerSettings()
    values = {}
    for key, allowed in (("do_lower_case", (bool,)), ("strip_accents", (bool, type(None))),
                         ("tokenize_chinese_chars", (bool,))):
        value = raw.get(key, getattr(defaults, key))
        if not isinstance(value, allowed):
            raise CheckpointError(f"{path}: key {key!r} must be true or false, got {value!r}")
        values[key] = value
    return TokenizerSettings(**values)


def load_vocab(vocab_file) -> dict:
    """token -> id from vocab.txt (one token per line) or from a tokenizer.json's WordPiece vocabulary."""
    path = Path(vocab_file)
    if path.suffix == ".json":
        return read_tokenizer_json_vocab(path)
    vocab = {}
    with open(path, encoding="utf-8") as handle:
        for index, line in enumerate(handle):
            vocab[line.rstrip("\n")] = index
    return vocab


def read_tokenizer_json_vocab(path) -> dict:
    path = Path(path)
    try:
        model = json.loads(path.read_text(encoding="utf-8")).get("model") or {}
    except (UnicodeDecodeError, json.JSONDecodeError, AttributeError) as exc:
        raise CheckpointError(f"{path}: not a valid tokenizer.json ({exc})") from None
    vocab = model.get("vocab")
    if model.get("type") != "WordPiece" or not isinstance(vocab, dict) or \
            not all(isinstance(v, int) and not isinstance(v, bool) for v in vocab.values()):
        raise CheckpointError(f"{path}: not a WordPiece (BERT) tokenizer.json; only BERT's tokenizer is supported")
    if sorted(vocab.values()) != list(range(len(vocab))):
        raise CheckpointError(f"{path}: vocabulary ids are not 0..{len(vocab) - 1}")
    return vocab


def make_tokenizer(vocab_file, settings: Optional[TokenizerSettings] = None) -> "WordPieceTokenizer":
    """BERT's tokenizer on exactly this vocabulary (vocab.txt or tokenizer.json): basic + WordPiece, with the
    switches of the tokenizer_config.json beside it (default: lower case, accents stripped).

    One per (file version, switches) in a process: a `score` run asks for it three times (planner, accuracy
    gate, scorer). Callers only call it; nothing mutates it."""
    settings = settings or read_tokenizer_settings(Path(vocab_file).parent)
    try:
        stat = os.stat(vocab_file)
    except OSError:  # load_vocab names the file and the problem
        return _build_tokenizer.__wrapped__(vocab_file, 0, 0, settings)
    return _build_tokenizer(str(vocab_file), stat.st_mtime_ns, stat.st_size, settings)


@functools.lru_cache(maxsize=4)
def _build_tokenizer(vocab_file, _mtime_ns: int, _size: int, settings: TokenizerSettings) -> "WordPieceTokenizer":
    return WordPieceTokenizer(vocab_file, load_vocab(vocab_file), settings)


# The tokens a BERT vocabulary must have, and the special tokens transformers' BertTokenizer registers as added
# tokens (matched in the raw text, before normalisation).
REQUIRED_TOKENS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]")
ADDED_TOKENS = REQUIRED_TOKENS + ("[MASK]",)


class WordPieceTokenizer:
    """The `tokenizers` pipeline that transformers' BertTokenizer builds (in transformers 5 it is a wrapper over
    exactly this: BertNormalizer, BertPreTokenizer, WordPiece, [CLS] $A [SEP], the special tokens as added
    tokens), built directly: importing transformers took 0.9 s of a 2.6 s cached `score` on SST-2 dev.
    tests/data/test_tokenizer.py checks every switch against transformers' ids. [MASK] is registered only
    when the vocabulary has it (otherwise it would get an id past the embedding table; SST-2 never needs it)."""

    def __init__(self, vocab_file, vocab: dict, settings: TokenizerSettings):
        from tokenizers import AddedToken, Tokenizer, normalizers, pre_tokenizers, processors
        from tokenizers.models import WordPiece

        missing = [t for t in REQUIRED_TOKENS if t not in vocab]
        if missing:
            raise DataError(f"{vocab_file}: the vocabulary has no {', '.join(missing)} token (a BERT vocabulary "
                            f"needs {', '.join(REQUIRED_TOKENS)})")
        self.vocab_size = len(vocab)
        self.vocab_digest = vocab_digest(vocab)
        self.pad_token_id = vocab["[PAD]"]
        tokenizer = Tokenizer(WordPiece(vocab, unk_token="[UNK]", max_input_chars_per_word=100))
        tokenizer.normalizer = normalizers.BertNormalizer(
            clean_text=True, handle_chinese_chars=settings.tokenize_chinese_chars,
            strip_accents=settings.strip_accents, lowercase=settings.do_lower_case)
        tokenizer.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
        tokenizer.add_special_tokens([AddedToken(t, normalized=False, special=True)
                                      for t in ADDED_TOKENS if t in vocab])
        tokenizer.post_processor = processors.TemplateProcessing(
            single="[CLS]:0 $A:0 [SEP]:0", pair="[CLS]:0 $A:0 [SEP]:0 $B:1 [SEP]:1",
            special_tokens=[("[CLS]", vocab["[CLS]"]), ("[SEP]", vocab["[SEP]"])])
        self._tokenizer = tokenizer

    def __len__(self) -> int:
        return self.vocab_size

    def token_ids(self, texts: Sequence[str], max_length: int) -> list[list[int]]:
        """[CLS] tokens [SEP] per text, truncated to max_length ids in all (the word pieces cut, [SEP] kept, as
        transformers' truncation=True does), unpadded."""
        rows = [e.ids for e in self._tokenizer.encode_batch(list(texts))]
        return [ids if len(ids) <= max_length else ids[:max_length - 1] + ids[-1:] for ids in rows]

    def tokenize(self, text: str) -> list[str]:
        """The word pieces of one text, without [CLS]/[SEP] (as transformers' tokenize)."""
        return self._tokenizer.encode(text, add_special_tokens=False).tokens


def encode(tokenizer: WordPieceTokenizer, texts: Sequence[str], max_seq_length: int = SEQ_LEN) -> dict:
    """[CLS] tokens[:max-2] [SEP], padded with [PAD]; segment ids 0. Returns int64 arrays [n, max_seq_length]."""
    return padded_features(tokenizer.token_ids(texts, max_seq_length), max_seq_length, tokenizer.pad_token_id)


def padded_features(rows: Sequence[Sequence[int]], width: int, pad_id: int) -> dict:
    """The model's three inputs from unpadded token id rows (one sentence each: segment ids 0), int64 [n, width]."""
    ids = np.full((len(rows), width), pad_id, np.int64)
    mask = np.zeros((len(rows), width), np.int64)
    for row, tokens in enumerate(rows):
        ids[row, :len(tokens)] = tokens
        mask[row, :len(tokens)] = 1
    return {IDS_NAME: ids, SEGMENTS_NAME: np.zeros_like(ids), MASK_NAME: mask}


def _chunks(items: Iterable, size: int) -> Iterator[list]:
    it = iter(items)
    while chunk := list(islice(it, size)):
        yield chunk


@dataclass
class PreprocessReport:
    out_dir: Path
    count: int
    labelled: bool
    real_tokens: int


def preprocess(tsv_path, vocab_file, out_dir, *, max_seq_length: int = SEQ_LEN,
               label_set: Optional[Sequence[str]] = ("0", "1"), show_progress: bool = True,
               dtype: str = "int64") -> PreprocessReport:
    """Stream the TSV into out_dir/{input_ids,segment_ids,input_mask}/input<i>.bin and out_dir/manifest.json.

    dtype: the files' integer type (FILE_DTYPES), recorded in the manifest.

    Everything is built in a sibling folder and moved into place only when complete.
    """
    if max_seq_length < 2:
        raise DataError(f"max_seq_length must be at least 2, got {max_seq_length}")
    if dtype not in FILE_DTYPES:
        raise DataError(f"--dtype {dtype!r}: use one of {', '.join(FILE_DTYPES)}")
    settings = read_tokenizer_settings(Path(vocab_file).parent)
    tokenizer = make_tokenizer(vocab_file, settings)
    reader = TsvReader(tsv_path, label_set=label_set)
    out_dir = Path(out_dir)
    count, real_tokens = 0, 0
    # Labels and guids go to disk as they come (JsonSpool), so memory does not grow with the file.
    with staged_dir(out_dir) as stage, JsonSpool() as labels, JsonSpool() as guids:
        for name in INPUT_NAMES:
            (stage / name).mkdir()
        with progress(desc=f"preprocess {reader.path.name}", unit="sent", enabled=show_progress) as bar:
            for chunk in _chunks(reader, CHUNK):
                features = encode(tokenizer, [ex.text for ex in chunk], max_seq_length)
                for row, ex in enumerate(chunk):
                    fname = sample_file_name(count)
                    for name in INPUT_NAMES:
                        features[name][row].astype(dtype).tofile(stage / name / fname)
                    if ex.label is not None:
                        labels.add(int(ex.label) if ex.label.isdigit() else ex.label)
                    if ex.guid is not None:
                        guids.add(ex.guid)
                    count += 1
                real_tokens += int(features["input_mask"].sum())
                bar.update(len(chunk))
        manifest = {
            "format": MANIFEST_FORMAT,
            "count": count,
            "max_seq_length": max_seq_length,
            "dtype": dtype,
            "inputs": list(INPUT_NAMES),
            "file_pattern": sample_file_name(0).replace("0", "{index}"),
            "real_tokens": real_tokens,
            "tsv": {"path": str(reader.path), "sha256": reader.sha256},
            "vocab": {"path": str(vocab_file), "sha256": file_sha256(vocab_file), "digest": tokenizer.vocab_digest},
            "tokenizer": settings.record(),
            "label_names": list(label_set) if label_set is not None and labels.count else None,
            "labels": labels if labels.count else None,
            "guids": guids if guids.count else None,
        }
        # Written last: its presence marks a complete folder.
        with open(stage / MANIFEST_NAME, "w", encoding="utf-8") as out:
            dump_json(manifest, out, indent=None)
        labelled = bool(labels.count)
    return PreprocessReport(out_dir, count, labelled, real_tokens)


def read_manifest(bin_dir) -> dict:
    path = Path(bin_dir) / MANIFEST_NAME
    if not path.is_file():
        raise DataError(f"{path}: manifest not found (run preprocessing first: bash test/preprocess_data.sh)")
    try:
        raw = path.read_bytes()
        manifest = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DataError(f"{path}: unreadable manifest ({exc})") from None
    if not isinstance(manifest, dict) or manifest.get("format") != MANIFEST_FORMAT:
        raise DataError(f"{path}: not a {MANIFEST_FORMAT} manifest")
    manifest["_sha256"] = hashlib.sha256(raw).hexdigest()  # identifies these inputs in run summaries
    return manifest


def manifest_tokenizer(manifest: dict) -> dict:
    """The tokenizer switches a manifest's inputs were made with (manifests from before they were recorded
    were all made with the recipe's lower-case default)."""
    return manifest.get("tokenizer") or TokenizerSettings().record()


def check_tokenizer_match(path, what: str, made_with: Optional[str], other: str, expected: Optional[str], fix: str,
                          error=DataError) -> None:
    """Ids made with other tokenizer switches than the model's (cased vs uncased) give wrong labels without
    any other sign: refuse them, naming the file that says so."""
    if made_with is not None and expected is not None and made_with != expected:
        raise error(f"{path}: {what} {made_with}, but {other} uses {expected}; {fix}")


def check_vocab_match(path, what: str, made_with: Optional[str], other: str, expected: Optional[str], fix: str,
                      error=DataError) -> None:
    """check_tokenizer_match for vocabularies: full digests compared, short ones shown."""
    if made_with and expected and made_with != expected:
        raise error(f"{path}: {what} {describe_vocab(made_with)}, but {other} uses {describe_vocab(expected)}; {fix}")


def check_inputs_tokenizer(manifest_path, manifest: dict, model_tokenizer: Optional[str], error=DataError,
                           model_vocab: Optional[str] = None) -> None:
    """Inputs made with other switches or another vocabulary than the model's are refused (where both sides say
    which: manifests and graphs from before the vocabulary was recorded are checked on the switches alone)."""
    fix = "preprocess again with this model's folder (--model_dir)"
    check_tokenizer_match(manifest_path, "inputs were tokenised with", describe_tokenizer(manifest_tokenizer(manifest)),
                          "the model's tokenizer", model_tokenizer, fix, error)
    check_vocab_match(manifest_path, "inputs were tokenised with", (manifest.get("vocab") or {}).get("digest"),
                      "the model's tokenizer", model_vocab, fix, error)


def check_folder_tokenizer(bin_dir, model_record: dict) -> None:
    """check_inputs_tokenizer for a preprocessed folder (bert_bin/) against a model record (specs.checkpoint_record
    keys), when the folder has a manifest: inputs made by another tool have none."""
    path = Path(bin_dir) / MANIFEST_NAME
    if path.is_file():
        check_inputs_tokenizer(path, read_manifest(bin_dir), model_record.get("model_tokenizer"),
                               model_vocab=model_record.get("model_vocab"))


def manifest_digest(bin_dir) -> Optional[str]:
    """sha256 of bin_dir's manifest, or None when there is none (e.g. inputs made by another tool)."""
    path = Path(bin_dir) / MANIFEST_NAME
    return hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else None


class NumberedNames(collections.abc.Sequence):
    """The names PREFIX0SUFFIX .. PREFIX<count-1>SUFFIX without holding them: a constant-size listing."""

    def __init__(self, prefix: str, suffix: str, count: int):
        self.prefix, self.suffix, self.count = prefix, suffix, count

    def __len__(self) -> int:
        return self.count

    def __getitem__(self, index):
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(self.count))]
        if index < 0:
            index += self.count
        if not 0 <= index < self.count:
            raise IndexError(index)
        return f"{self.prefix}{index}{self.suffix}"

    def __eq__(self, other):
        return isinstance(other, (list, tuple, NumberedNames)) and list(self) == list(other)


_NUMBERED = re.compile(r"^(\D*)(0|[1-9]\d*)(\D*)$")


def _is_input_file(entry) -> bool:
    return os.path.splitext(entry.name)[1].lower() in (".bin", ".npy") and entry.is_file()


def _numbered_listing(folder: Path) -> Optional[NumberedNames]:
    """One streaming pass: when the files are exactly PREFIX0SUFFIX..PREFIX<n-1>SUFFIX (what preprocessing
    writes), natural order is index order and nothing needs to be kept; otherwise None."""
    prefix = suffix = None
    count, highest = 0, -1
    with os.scandir(folder) as entries:
        for entry in entries:
            if not _is_input_file(entry):
                continue
            match = _NUMBERED.match(entry.name)
            if match is None or (prefix is not None and (match[1], match[3]) != (prefix, suffix)):
                return None
            prefix, suffix = match[1], match[3]
            count, highest = count + 1, max(highest, int(match[2]))
    # n distinct names with distinct indices (no leading zeros) all below n: exactly 0..n-1.
    return NumberedNames(prefix, suffix, count) if count and highest == count - 1 else None


def list_input_files(folder) -> Sequence[str]:
    """ais_bench's listing: .bin/.npy files of one input folder in natural order."""
    folder = Path(folder)
    if not folder.is_dir():
        raise DataError(f"{folder}: input folder not found")
    numbered = _numbered_listing(folder)
    if numbered is not None:
        return numbered
    names = [e.name for e in os.scandir(folder) if _is_input_file(e)]
    if not names:
        raise DataError(f"{folder}: no .bin or .npy files")
    return sorted(sorted(names), key=natural_key)


def manifest_dtype(bin_dir) -> Optional[str]:
    """The integer type preprocessing recorded in bin_dir's manifest, or None when there is no manifest
    (folders made by another tool). Read once per bin_dir and run: its input folders share it."""
    manifest_path = Path(bin_dir) / MANIFEST_NAME
    if not manifest_path.is_file():
        return None
    stat = manifest_path.stat()
    return _manifest_dtype(manifest_path.resolve(), stat.st_mtime_ns, stat.st_size)


@functools.lru_cache(maxsize=8)
def _manifest_dtype(manifest_path: Path, mtime_ns: int, size: int) -> str:  # keyed by the file's version
    dtype = read_manifest(manifest_path.parent).get("dtype", "int64")  # manifests before --dtype were all int64
    if dtype not in FILE_DTYPES:
        raise DataError(f"{manifest_path}: dtype {dtype!r}, expected one of {', '.join(FILE_DTYPES)}")
    return dtype


def folder_dtype(folder, first_name: str, seq_len: int) -> str:
    """The integer type of one input folder's .bin files, decided once for the folder: the dtype its
    preprocessing manifest records (the parent folder's), else int32 only when the first file is exactly
    seq_len int32 values. Every file is then read with that type, so a truncated int64 file of half the size
    is an error, never silently read as int32."""
    folder = Path(folder)
    recorded = manifest_dtype(folder.parent)
    if recorded is not None:
        return recorded
    first = folder / first_name
    try:
        int32 = first.suffix.lower() != ".npy" and first.stat().st_size == seq_len * 4
    except OSError as exc:
        raise DataError(f"{first}: unreadable input file ({exc})") from None
    return "int32" if int32 else "int64"


def read_sample(path, seq_len: Optional[int] = None, dtype: str = "int64") -> np.ndarray:
    """One per-sample token-id file (.bin raw values of `dtype`, see folder_dtype; .npy without pickles),
    as int64."""
    path = Path(path)
    try:
        if path.suffix.lower() == ".npy":
            arr = np.load(path, allow_pickle=False)
        else:
            arr = np.fromfile(path, dtype=np.dtype(dtype))
            if seq_len is not None and path.stat().st_size != seq_len * arr.itemsize:
                raise DataError(f"{path}: {path.stat().st_size} bytes, expected {seq_len * arr.itemsize} "
                                f"({seq_len} {dtype} values)")
    except (OSError, ValueError) as exc:
        raise DataError(f"{path}: unreadable input file ({exc})") from None
    if arr.dtype.kind not in "iu":
        raise DataError(f"{path}: {arr.dtype} values, expected int64 token ids")
    arr = arr.reshape(-1).astype(np.int64, copy=False)
    if seq_len is not None and arr.size != seq_len:
        raise DataError(f"{path}: {arr.size} values, expected {seq_len}")
    return arr


def path_prefix(folder) -> str:
    """folder as a string that a file name is appended to, spelled as str(Path(folder) / name) would be
    (Path(".") / name is just name): a run joins thousands of paths, and pathlib per file was slow."""
    text = str(Path(folder))
    return "" if text == "." else os.path.join(text, "")


def read_samples(folder, names: Sequence[str], seq_len: int, dtype: str = "int64") -> np.ndarray:
    """Many per-sample files of one folder as int64 [len(names), seq_len], as read_sample reads each: raw .bin
    files are read straight into one buffer (a run reads thousands; pathlib, stat and np.fromfile per file
    were most of the time); a .npy file, or any .bin that is not exactly seq_len values, goes through
    read_sample, whose checks and messages stay the only ones."""
    folder = os.fspath(folder)
    itemsize = np.dtype(dtype).itemsize
    size = seq_len * itemsize
    raw = np.empty((len(names), size), np.uint8)
    slow = {}
    for row, name in enumerate(names):
        path = os.path.join(folder, name)
        data = b""
        if not name.lower().endswith(".npy"):
            try:
                fd = os.open(path, os.O_RDONLY)
                try:
                    data = os.read(fd, size + 1)  # one byte more: a longer file is caught
                finally:
                    os.close(fd)
            except OSError:
                data = b""
        if len(data) == size:
            raw[row] = np.frombuffer(data, np.uint8)
        else:
            slow[row] = read_sample(path, seq_len, dtype)
    out = raw.view(np.dtype(dtype)).astype(np.int64, copy=False)
    for row, values in slow.items():
        out[row] = values
    return out


def synthetic_feeds(batch: int, seq_len: int = SEQ_LEN, vocab_size: int = 30522, seed: int = 0,
                    lengths: str = "sst2") -> dict:
    """The one maker of random inputs by role. lengths: "sst2" (SST-2-like, mean ~25 of 64: static shapes make
    the content irrelevant to speed, but it keeps int8 activation ranges realistic), "uniform" (2..seq_len, every
    length once in a while: export's parity check without a TSV) or "full" (all seq_len, ais_bench's random
    pure-inference data)."""
    rng = np.random.default_rng(seed)
    if lengths == "sst2":
        lengths = np.clip(rng.normal(25, 10, batch).astype(int), 3, seq_len)
    elif lengths == "uniform":
        lengths = rng.integers(2, seq_len + 1, batch)
    else:
        lengths = np.full(batch, seq_len)
    mask = (np.arange(seq_len)[None, :] < lengths[:, None]).astype(np.int64)
    ids = rng.integers(min(1000, vocab_size // 2), vocab_size, (batch, seq_len), dtype=np.int64) * mask
    return {IDS_NAME: ids, SEGMENTS_NAME: np.zeros_like(ids), MASK_NAME: mask}
