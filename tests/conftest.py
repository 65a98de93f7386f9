"""Shared fixtures: tiny random TinyBERT checkpoints and tiny GLUE TSVs, built on the fly."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

import pytest

# Before torch loads OpenMP (the import below), and inherited by every child run: OpenMP's idle threads sleep
# instead of spinning. The suite runs a worker per core (-n auto), and a worker's spinning threads took the
# other worker's core: 2 min 07 s with spinning, 1 min 45 s without, on the same 2-core host.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

# A suite started as a background job (`cmd &` in a script, nohup) inherits SIGINT ignored, and Python then installs
# no KeyboardInterrupt handler: the Ctrl-C tests (7 of them) failed, testing the shell instead of the code. Python's
# own handler back; the runs the tests start get SIGINT's default again (exec resets a handled signal).
if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)

from tinybert_infer.models.synthetic import write_random_checkpoint  # noqa: E402
from tinybert_infer.plan.timing import TimingPolicy

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("TINYBERT_SHARED", ROOT.parent / "shared")).resolve()
# .ci/run sets this: there, a missing ../shared is a failure, never a silent skip of every end-to-end test.
REQUIRE_SHARED = os.environ.get("TINYBERT_REQUIRE_SHARED") == "1"


def pytest_sessionstart(session):
    if REQUIRE_SHARED and not (SHARED / "SST-2_model").is_dir():
        raise pytest.UsageError(f"TINYBERT_REQUIRE_SHARED=1 but {SHARED}/SST-2_model is missing: "
                                "the end-to-end tests cannot run")

WORDS = ["good", "bad", "movie", "film", "great", "awful", "it", "'s", "a", "the", "not", "fun", "boring",
         "charming", "story", "##s", "and", "very", "."]
SENTENCES = [
    ("it 's a charming and often affecting movie . ", "1"),
    ("unflinchingly bleak and desperate ", "0"),
    ("a great film", "1"),
    ("the story is boring and awful", "0"),
    ("not fun", "0"),
    ("very very good", "1"),
    ('he said "great" , but it was bad', "0"),
    ("films", "1"),
    ("Émile's MOVIE is good", "1"),
    ("bad bad bad bad bad bad bad bad bad bad bad bad bad bad bad bad bad bad bad bad bad bad bad bad bad "
     "bad bad bad bad bad bad bad bad bad bad bad bad bad bad bad bad bad bad bad bad bad bad bad bad bad "
     "bad bad bad bad bad bad bad bad bad bad bad bad bad bad bad bad bad bad", "0"),
    ("the the the", "1"),
    ("a", "0"),
    ("good and bad", "1"),
]


def write_tsv(path: Path, rows=SENTENCES, header="sentence\tlabel") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(header + "\n" + "".join(f"{s}\t{label}\n" for s, label in rows), encoding="utf-8")
    return path


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory) -> Path:
    return write_random_checkpoint(tmp_path_factory.mktemp("ckpt") / "SST-2_model", words=WORDS, seed=1)


@pytest.fixture()
def tiny_tsv(tmp_path) -> Path:
    return write_tsv(tmp_path / "glue_dir" / "SST-2" / "dev.tsv")


@pytest.fixture(scope="session")
def tiny_exports(tmp_path_factory, tiny_checkpoint) -> dict:
    """The tiny checkpoint exported once per session, validated on the tiny TSV (dev.tsv, its bert_bin beside):
    TinyBERT_{,sim_}bs4.onnx ("static" report) and TinyBERT_{,sim_}dyn.onnx ("dynamic"). The export is
    deterministic, so a copy is byte for byte what a test's own export would write. Never written to: tests
    take copies (copy_exports) for anything they build next to the model."""
    from tinybert_infer.data.features import preprocess
    from tinybert_infer.export.onnx import export_checkpoint, export_dynamic_checkpoint

    base = tmp_path_factory.mktemp("exports")
    tsv = write_tsv(base / "dev.tsv")
    preprocess(tsv, tiny_checkpoint / "vocab.txt", base / "bert_bin", show_progress=False)
    return {"dir": base, "tsv": tsv, "bin": base / "bert_bin",
            "static": export_checkpoint(tiny_checkpoint, 4, base, tsv_path=tsv),
            "dynamic": export_dynamic_checkpoint(tiny_checkpoint, base, tsv_path=tsv)}


@pytest.fixture(scope="session")
def pth2onnx_run(tmp_path_factory, tiny_checkpoint):
    """bash test/pth2onnx.sh 4 once per session from a clean folder on the tiny checkpoint: (run, folder). The
    script's own test reads its output; the stage-by-stage test starts from copies of its graphs."""
    folder = tmp_path_factory.mktemp("pth2onnx")
    data = write_tsv(folder / "glue" / "dev.tsv").parent
    proc = run_script("pth2onnx.sh", "4", cwd=folder,
                      env={"TINYBERT_MODEL_DIR": str(tiny_checkpoint), "TINYBERT_DATA_DIR": str(data)})
    return proc, folder


def copy_exports(exports: dict, dest: Path) -> dict:
    """tiny_exports' files copied into dest: the same dict, every path (the reports' too) in dest."""
    import dataclasses

    dest.mkdir(parents=True, exist_ok=True)
    for path in exports["dir"].iterdir():
        (shutil.copytree if path.is_dir() else shutil.copy2)(path, dest / path.name)
    moved = {"dir": dest, "tsv": dest / exports["tsv"].name, "bin": dest / exports["bin"].name}
    for key in ("static", "dynamic"):
        report = exports[key]
        moved[key] = dataclasses.replace(report, onnx_path=dest / report.onnx_path.name,
                                         sim_path=dest / report.sim_path.name)
    return moved


# A moment per measurement instead of --backend auto's rounds of ~0.5 s (select.SELECT_ROUND)
SHORT_TIMING = TimingPolicy(warmup_s=0.0, warmup_runs=1, min_s=0.0, min_runs=2, max_s=0.5)


@pytest.fixture()
def short_auto_timing(monkeypatch):
    """In-process `--backend auto` measures with SHORT_TIMING: for tests of what auto does with its
    measurement (choice, log, cache, summary), not of how long it measures."""
    import functools

    import tinybert_infer.plan.select as select

    monkeypatch.setattr(select, "choose_backend", functools.partial(select.choose_backend, policy=SHORT_TIMING))


def clean_environ_of(environ) -> dict:
    """environ without the project's own TINYBERT_* settings, so a user's exported TINYBERT_DATA_DIR or
    TINYBERT_BACKEND (as the README suggests) cannot change what a test runs."""
    return {k: v for k, v in environ.items() if not k.startswith("TINYBERT_")}


def clean_environ() -> dict:
    """The caller's environment without TINYBERT_* (clean_environ_of)."""
    return clean_environ_of(os.environ)


def random_batch(vocab_size: int, lengths=(1, 5, 17, 64, 30, 2), width: int = 64):
    """Random (input_ids, segment_ids, input_mask) tensors of the given real lengths, padding zeroed."""
    import numpy as np
    import torch

    rng = np.random.default_rng(0)
    lengths = np.asarray(lengths)
    mask = torch.from_numpy((np.arange(width)[None] < lengths[:, None]).astype(np.int64))
    ids = torch.from_numpy(rng.integers(0, vocab_size, (len(lengths), width))) * mask
    seg = torch.from_numpy(rng.integers(0, 2, (len(lengths), width))) * mask
    return ids, seg, mask


def run_cli(*args, cwd=None, env=None, check=False, timeout=300) -> subprocess.CompletedProcess:
    """python -m tinybert_infer ARGS in a subprocess (the way users run it)."""
    full_env = dict(clean_environ(), PYTHONPATH=str(ROOT))
    full_env.update(env or {})
    proc = subprocess.run([sys.executable, "-m", "tinybert_infer", *map(str, args)], cwd=cwd, env=full_env,
                          capture_output=True, text=True, timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f"exit {proc.returncode}\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr}")
    return proc


def run_cli_in_process(*args, cwd=None, env=None, check=False) -> subprocess.CompletedProcess:
    """run_cli's call and result, from tinybert_infer.cli.main in this process (no interpreter start, no torch
    or sklearn import per call): for tests where no process boundary is under test. The working folder and
    the environment (TINYBERT_* cleared, then env) are the call's only, restored afterwards; warnings are
    printed to its stderr under the interpreter's default filters, as a `python -m tinybert_infer` run's are
    (not collected by pytest), so a one-line-error check still sees them."""
    import warnings

    from error_helpers import run_main

    def to_stderr(message, category, filename, lineno, file=None, line=None):
        sys.stderr.write(warnings.formatwarning(message, category, filename, lineno, line))

    saved_cwd, saved_env = os.getcwd(), dict(os.environ)
    os.environ.clear()
    os.environ.update(clean_environ_of(saved_env), **{k: str(v) for k, v in (env or {}).items()})
    try:
        if cwd is not None:
            os.chdir(cwd)
        with warnings.catch_warnings():
            warnings.resetwarnings()
            warnings.simplefilter("default")
            for category in (DeprecationWarning, PendingDeprecationWarning, ImportWarning, ResourceWarning):
                warnings.filterwarnings("ignore", category=category)
            warnings.showwarning = to_stderr  # restored by catch_warnings
            code, out, err = run_main(*args)
    finally:
        os.chdir(saved_cwd)
        os.environ.clear()
        os.environ.update(saved_env)
    proc = subprocess.CompletedProcess(["tinybert_infer", *map(str, args)], code, out, err)
    if check and code != 0:
        raise AssertionError(f"exit {code}\nstdout:\n{out}\nstderr:\n{err}")
    return proc


def run_script(script: str, *args, cwd, env=None, timeout=300) -> subprocess.CompletedProcess:
    """bash test/<script> ARGS from cwd (a ModelZoo-style working folder)."""
    full_env = dict(clean_environ(), PYTHON=sys.executable)
    full_env.update(env or {})
    return subprocess.run(["bash", str(ROOT / "test" / script), *map(str, args)], cwd=cwd, env=full_env,
                          capture_output=True, text=True, timeout=timeout)


# ---------------------------------------------------------------- long script runs, started early
# The suite is mostly one busy process, and this host has 2 cores. Whole script runs that share nothing with
# other tests (the quick benchmark, complete run_all.sh jobs) therefore run one after another on a background
# thread from the end of collection, and each of their tests (run last) waits for its own. EARLY_JOBS maps a
# fixture name to prepare(root) -> (argv, cwd, env): called in the main thread at collection's end, it writes
# the inputs and builds the environment (the main thread changes cwd and os.environ during in-process runs,
# so the background thread reads neither). Each run's stdout and stderr go to files in root.
EARLY_JOBS = {}
_EARLY = {"pool": None, "futures": {}, "procs": [], "roots": [], "stopping": False}
_EARLY_LOCK = threading.Lock()  # a run starts, or the session's end stops it: never both missed


def early_job(name: str):
    """Register prepare(root) for the early run that the fixture called `name` awaits (early_result)."""
    def register(prepare):
        EARLY_JOBS[name] = prepare
        return prepare
    return register


def _run_early(root: Path, spec, timeout: float = 900) -> subprocess.CompletedProcess:
    argv, cwd, env = spec
    with _EARLY_LOCK, open(root / "stdout.txt", "w") as out, open(root / "stderr.txt", "w") as err:
        if _EARLY["stopping"]:
            raise RuntimeError("the test session has ended")
        proc = subprocess.Popen([str(a) for a in argv], cwd=cwd, env=env, stdout=out, stderr=err,
                                start_new_session=True)  # its own process group: stopped as a whole
        _EARLY["procs"].append(proc)
    try:
        proc.wait(timeout=timeout)
    finally:
        stop_process_group(proc)
    return subprocess.CompletedProcess(argv, proc.returncode, (root / "stdout.txt").read_text(),
                                       (root / "stderr.txt").read_text())


def early_result(name: str, tmp_path_factory) -> tuple[subprocess.CompletedProcess, Path]:
    """(the finished run, its folder): the one started early, else (not started: e.g. only collected now) run here."""
    if name in _EARLY["futures"]:
        return _EARLY["futures"].pop(name).result()
    root = tmp_path_factory.mktemp(name)
    return _run_early(root, EARLY_JOBS[name](root)), root


def _uses_early_job(item) -> bool:
    return any(name in getattr(item, "fixturenames", ()) for name in EARLY_JOBS)


def _in_xdist_worker(config) -> bool:
    return hasattr(config, "workerinput")


def pytest_collection_modifyitems(session, config, items):
    """Tests that wait for an early run go last (in collection order otherwise): by then it has finished.
    Under pytest-xdist they go first: the worker that takes one runs it while the other works through the rest."""
    under_xdist = _in_xdist_worker(config)
    items.sort(key=lambda item: _uses_early_job(item) != under_xdist)


def pytest_collection_finish(session):
    # Under pytest-xdist every worker collects every test: started here, each run would happen once per worker.
    # There the other worker keeps the second core busy, so a test runs its job itself when it needs it.
    if session.config.option.collectonly or _in_xdist_worker(session.config):
        return
    from concurrent.futures import ThreadPoolExecutor

    wanted = [name for name in EARLY_JOBS
              if any(name in getattr(item, "fixturenames", ()) for item in session.items)]
    if wanted:
        _EARLY["pool"] = ThreadPoolExecutor(max_workers=1, thread_name_prefix="early-run")
    for name in wanted:
        root = Path(tempfile.mkdtemp(prefix=f"tinybert-{name}-"))
        _EARLY["roots"].append(root)
        spec = EARLY_JOBS[name](root)
        _EARLY["futures"][name] = _EARLY["pool"].submit(lambda r=root, s=spec: (_run_early(r, s), r))


def stop_process_group(proc: subprocess.Popen) -> None:
    """Kill a start_new_session process and everything it started, if it still runs."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def pytest_sessionfinish(session):
    """Runs never awaited (their tests not reached, e.g. after -x): not started, or stopped; folders removed."""
    with _EARLY_LOCK:
        _EARLY["stopping"] = True
        procs = list(_EARLY["procs"])
    for future in _EARLY["futures"].values():
        future.cancel()
    for proc in procs:
        stop_process_group(proc)
    if _EARLY["pool"] is not None:
        _EARLY["pool"].shutdown(wait=True)
    for root in _EARLY["roots"]:
        shutil.rmtree(root, ignore_errors=True)
    _EARLY.update(pool=None, futures={}, procs=[], roots=[], stopping=False)
