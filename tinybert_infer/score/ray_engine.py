"""--engine ray: the same chunks, model and writer as the local engine, spread over a Ray cluster.

    read tasks (one per shard; corpus.iter_chunks, strict GLUE TSV)   -> blocks of chunk_rows rows
    map_batches(ScoreActor, ActorPoolStrategy, num_cpus=cpus_per_actor) -> tokenise + infer in the actors
    driver: iter_batches -> output.OrderedWriter (input order, each row once, counts checked) -> publish

Each block is one chunk (batch_size=None: Ray hands the actor whole blocks), so an actor scores exactly the
chunks the local engine scores and the logits are the same. The plan is chosen on the driver and shipped to the
actors as a plain dict. A dead actor is restarted and its block retried by Ray (the actor pool's default);
exceptions inside our code are not retried (they are bad input) and max_errored_blocks stays 0, so no block
is ever dropped silently. Rows carry (shard, index), and the writer drops exact repeats and refuses gaps.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path
from typing import Optional, Sequence

import numpy as np

from tinybert_infer.errors import PipelineError, ToolError, UsageError
from tinybert_infer.score.corpus import Shard, chunk_keys, chunk_nbytes, iter_chunks
from tinybert_infer.score.scorer import make_scorer

RAY_PACKAGE = "ray[data]"
LOCAL_OBJECT_STORE = 512 << 20  # a local Ray's object store: blocks are small, the default takes 30 % of RAM
READ_CONCURRENCY = 2            # shards read at once: reading is cheap next to scoring
# CPUs per scoring actor by default (= its intra-op threads), capped at the largest node. Two, not one: the actor
# tokenises the next chunk in a thread while both cores infer this one, one model serves two cores (memory), and
# it compiles its shapes once per two cores; measured against 2 x 1 in docs/ray.md.
DEFAULT_CPUS_PER_ACTOR = 2
# Ray merges what a read task yields into blocks of target_max_block_size bytes (128 MiB by default: a whole
# shard, one actor) and slices blocks of 1.5x that. At 4 chunks, a block is 4-5 chunks and never sliced unless
# one chunk is twice the first chunk's size, so actors see whole chunks (scored as locally) and share a shard.
CHUNKS_PER_BLOCK = 4
# Test hooks (fault injection), read inside the actors:
EXIT_ONCE_ENV = "TINYBERT_SCORE_TEST_EXIT_ONCE"  # a file path: while it exists, the next actor batch takes it, exits
DELAY_ENV = "TINYBERT_SCORE_TEST_DELAY"          # a file path: while it exists, each batch sleeps its seconds


def import_ray():
    try:
        import ray
        import ray.data  # noqa: F401
    except ImportError as exc:
        raise ToolError(f"--engine ray needs the package {RAY_PACKAGE} ({exc}); install it with "
                        f"pip install -r requirements.txt (or pip install '{RAY_PACKAGE}')") from None
    return ray


def _check_reachable(address: str, timeout: float = 3.0) -> None:
    """A clear one-line error instead of Ray's long retry loop when nothing listens at host:port."""
    target = address.split("://", 1)[-1]
    if target in ("auto", "local") or ":" not in target:
        return
    host, _, port = target.rpartition(":")
    try:
        with socket.create_connection((host, int(port)), timeout=timeout):
            pass
    except (OSError, ValueError) as exc:
        raise ToolError(f"RAY_ADDRESS={address}: cannot reach a Ray cluster there ({exc})") from None


def _package_root() -> str:
    return str(Path(__file__).resolve().parents[2])


class ShardSource:
    """A Ray Data datasource: one read task per shard, yielding one pyarrow block per chunk."""

    def __new__(cls, *args, **kwargs):  # subclass Datasource lazily: ray is optional for the package
        from ray.data import Datasource

        class _ShardSource(Datasource):
            def __init__(self, shards, labels, chunk_rows):
                self.shards, self.labels, self.chunk_rows = list(shards), tuple(labels), chunk_rows

            def estimate_inmemory_data_size(self):
                return sum(s.size for s in self.shards)

            def get_read_tasks(self, parallelism, per_task_row_limit=None, data_context=None):
                from ray.data import ReadTask
                from ray.data.block import BlockMetadata

                return [ReadTask(_read_fn(shard, shard_id, self.labels, self.chunk_rows),
                                 BlockMetadata(num_rows=None, size_bytes=shard.size, exec_stats=None,
                                               input_files=(shard.path,)))
                        for shard_id, shard in enumerate(self.shards)]

        return _ShardSource(*args, **kwargs)


def _read_fn(shard: Shard, shard_id: int, labels, chunk_rows: int):
    def read():
        import pyarrow as pa

        for chunk in iter_chunks(shard, shard_id, labels, chunk_rows):
            chunk["text"] = chunk["text"].astype(str).tolist()
            yield pa.table(chunk)
    return read


class ScoreActor:
    """Holds one scorer (model + tokenizer) built from the driver's plan; scores the chunks of one block per
    call, each as the local engine scores it. With more than one CPU, the next chunk is tokenised in a thread
    while the runtime infers this one (inference releases the GIL), so the actor's CPUs
    are not left idle during the tokenizer's single-threaded share of the work."""

    def __init__(self, plan: dict):
        self.scorer = make_scorer(plan)
        self.chunk_rows = plan["chunk_rows"]
        self.pool = None
        if plan["threads"] > 1:
            import sys
            from concurrent.futures import ThreadPoolExecutor

            self.pool = ThreadPoolExecutor(1, thread_name_prefix="tokenize")
            # The inference thread wakes up after each batch and needs the GIL back from the tokenizer
            # thread: at the default 5 ms it would stall the runtime for up to that long per batch.
            sys.setswitchinterval(0.0005)

    def __call__(self, batch: dict) -> dict:
        _test_faults()
        texts = [str(t) for t in batch["text"]]
        spans = chunk_keys(batch, self.chunk_rows)
        if self.pool is None or len(spans) < 2:
            parts = [self.scorer.score_batch(texts[a:b]) for a, b in spans]
        else:
            parts = []
            pending = self.pool.submit(self.scorer.encode, texts[spans[0][0]:spans[0][1]])
            for k in range(len(spans)):
                feats = pending.result()
                if k + 1 < len(spans):
                    a, b = spans[k + 1]
                    pending = self.pool.submit(self.scorer.encode, texts[a:b])
                parts.append(self.scorer.infer(feats))
        logits = np.concatenate(parts) if parts else np.empty((0, 0), np.float32)
        out = {"shard": batch["shard"], "index": batch["index"], "label": batch["label"], "last": batch["last"],
               "prediction": logits.argmax(axis=1).astype(np.int64)}
        out.update({f"logit_{k}": logits[:, k] for k in range(logits.shape[1])})
        return out


def _test_faults() -> None:
    """Fault injection for the tests; both hooks are files, so a test arms them while Ray runs."""
    delay = os.environ.get(DELAY_ENV)
    if delay and os.path.isfile(delay):
        import time

        time.sleep(float(Path(delay).read_text() or 0))
    armed = os.environ.get(EXIT_ONCE_ENV)
    if armed and os.path.isfile(armed):
        try:
            os.rename(armed, armed + ".fired")  # atomic: exactly one actor batch wins
        except FileNotFoundError:
            return
        os._exit(1)  # like a crash: no cleanup, no exception for Ray to report


def _pipeline_error(exc: BaseException) -> Optional[PipelineError]:
    """Our typed error (bad shard line, ...) inside Ray's wrappers, if that is what failed."""
    seen = set()
    stack = [exc]
    while stack:
        current = stack.pop()
        if current is None or id(current) in seen:
            continue
        seen.add(id(current))
        if isinstance(current, PipelineError) and type(current).__module__ == PipelineError.__module__:
            # the original, not Ray's dual-class copy (a traceback); Ray appends retry advice on new lines
            return type(current)(str(current).splitlines()[0])
        stack += [getattr(current, "cause", None), current.__cause__, current.__context__]
    return None


class RayEngine:
    def __init__(self, *, cpus_per_actor: Optional[int] = None, actors: Optional[int] = None):
        self.ray = import_ray()
        self.actors = actors
        self.started = False
        self.address = os.environ.get("RAY_ADDRESS") or None
        if not self.ray.is_initialized():
            self._connect()
        self.cpus_per_actor = self._actor_cpus(cpus_per_actor)

    def _actor_cpus(self, wanted: Optional[int]) -> int:
        """--cpus_per_actor, or DEFAULT_CPUS_PER_ACTOR capped at the largest node: an actor that no node can
        hold would wait forever instead of failing."""
        largest = max((int(n["Resources"].get("CPU", 0)) for n in self.ray.nodes() if n.get("Alive")), default=0)
        if wanted is None:
            return max(1, min(DEFAULT_CPUS_PER_ACTOR, largest))
        if wanted > largest:
            self.shutdown()
            raise UsageError(f"--cpus_per_actor {wanted}: no node of the Ray cluster has that many CPUs "
                             f"(the largest has {largest})")
        return wanted

    def _connect(self) -> None:
        ray = self.ray
        if self.address:
            _check_reachable(self.address)
            try:
                ray.init(address=self.address, log_to_driver=False,
                         runtime_env={"py_modules": [str(Path(_package_root()) / "tinybert_infer")]})
            except Exception as exc:  # ConnectionError, auth, version mismatch: one line naming the address
                raise ToolError(f"RAY_ADDRESS={self.address}: cannot connect to a Ray cluster "
                                f"({str(exc).splitlines()[0][:200]})") from None
        else:
            pythonpath = os.pathsep.join(p for p in (_package_root(), os.environ.get("PYTHONPATH")) if p)
            ray.init(num_cpus=os.cpu_count(), object_store_memory=LOCAL_OBJECT_STORE, include_dashboard=False,
                     log_to_driver=False, runtime_env={"env_vars": {"PYTHONPATH": pythonpath}})
        self.started = True

    def pool_size(self) -> int:
        cpus = int(self.ray.cluster_resources().get("CPU", 0))
        if self.actors:
            return self.actors
        return max(1, cpus // self.cpus_per_actor)

    def run(self, shards: Sequence[Shard], plan: dict, writer, labels, *, bar) -> dict:
        import logging

        import ray.data

        logging.getLogger("ray.data").setLevel(logging.WARNING)  # the one-line result, not Ray's plan dumps
        ctx = ray.data.DataContext.get_current()
        ctx.max_errored_blocks = 0            # never drop a failed block's rows
        ctx.actor_task_retry_on_errors = False  # our exceptions are bad input: fail, do not loop
        ctx.enable_progress_bars = False
        ctx.execution_options.preserve_order = False  # the writer orders rows itself
        previous_block_size = ctx.target_max_block_size
        chunk_bytes = chunk_nbytes(shards[0], labels, plan["chunk_rows"])
        ctx.target_max_block_size = CHUNKS_PER_BLOCK * chunk_bytes
        size = self.pool_size()
        plan = dict(plan, threads=self.cpus_per_actor)
        ds = ray.data.read_datasource(ShardSource(shards, labels, plan["chunk_rows"]), num_cpus=0,
                                      override_num_blocks=len(shards),  # one task per shard, blocks never split
                                      concurrency=min(READ_CONCURRENCY, len(shards)))
        ds = ds.map_batches(ScoreActor, fn_constructor_args=(plan,), batch_size=None, batch_format="numpy",
                            compute=ray.data.ActorPoolStrategy(size=size), num_cpus=self.cpus_per_actor,
                            zero_copy_batch=True)
        try:
            for batch in ds.iter_batches(batch_size=None, batch_format="numpy", prefetch_batches=2):
                writer.add(dict(batch))
                bar.update(len(batch["index"]))
        except KeyboardInterrupt:
            raise
        except Exception as exc:
            typed = _pipeline_error(exc)
            if typed is not None:
                raise typed from None
            raise PipelineError(f"Ray run failed: {str(exc).strip().splitlines()[0][:300]}") from None
        finally:
            ctx.target_max_block_size = previous_block_size
        return {"address": self.address or "local", "ray": self.ray.__version__, "actors": size,
                "cpus_per_actor": self.cpus_per_actor, "cluster_cpus": self.ray.cluster_resources().get("CPU"),
                "max_errored_blocks": ctx.max_errored_blocks,
                "target_max_block_size": CHUNKS_PER_BLOCK * chunk_bytes}

    def shutdown(self) -> None:
        if self.started and self.ray.is_initialized():
            self.ray.shutdown()
            self.started = False
