"""Answer a Ray Dataset of questions on a Ray cluster: one Reader per worker, `map_batches` over blocks.

    ds = ray.data.read_parquet("s3://bucket/questions/")      # rows {id, question, context | contexts}
    answers = answer_dataset(ds, backend="auto")                # rows {id, answers, no_answer, ...}

Each worker is a Ray actor holding one Reader, loaded once; each call reads `questions_per_task` rows with
`Reader.answer_batch` (their windows sorted by length into forward passes). The model reaches the workers
through Ray's object store (see docs/scale.md): the driver resolves the backend, exports the ONNX file if
needed, and puts the model's files in the object store once; each node copies them to a local directory.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from spanqa.backends.base import BACKENDS
from spanqa.cluster.rows import ReadOptions, answer_rows, is_blank_line, record_schema
from spanqa.errors import InputError, ModelError

QUESTIONS_PER_TASK = 64  # rows per worker call: a few seconds of work, so retries and balancing stay cheap
MODEL_FILES_DIR = "spanqa-ray-models"  # under each node's temporary directory, one folder per model


@dataclass(frozen=True)
class ClusterOptions:
    """How the job is spread: `concurrency` workers (None: as many as the cluster's CPUs allow, fewer
    while it is busy), each
    reserving `threads` CPUs and running inference on that many threads; `questions_per_task` rows per
    call. A worker that dies is restarted and its unfinished calls are run again (Ray Data's default for
    actors: max_restarts=-1, max_task_retries=-1), so every row still gives exactly one record."""

    concurrency: int | None = None
    threads: int = 1
    questions_per_task: int = QUESTIONS_PER_TASK


def require_ray() -> Any:
    try:
        import ray
        import ray.data  # Ray Data is a separate extra of Ray
    except ImportError:
        raise InputError("running on Ray needs Ray Data: pip install 'spanqa[ray]'") from None
    return ray


def connect(address: str | None = None, **init_kwargs: Any) -> None:
    """Join a running cluster ("auto", "head:6379") or, with None, start a new local
    one (ray.init's "local": Ray's own default would join a cluster it finds on this machine).

    Does nothing when this process is already connected (a caller that ran `ray.init` itself).
    """
    ray = require_ray()
    if ray.is_initialized():
        return
    try:
        ray.init(address=address or "local", **init_kwargs)
    except ConnectionError as e:
        raise InputError(f"cannot connect to Ray at {address}: {e}") from None


def answer_dataset(
    ds: Any,
    model: str | os.PathLike | None = None,
    backend: str = "auto",
    *,
    options: ReadOptions | None = None,
    cluster: ClusterOptions | None = None,
    shared_model: bool = False,
) -> Any:
    """A Ray Dataset of answer records (spanqa.cluster.rows.record_schema), one per row of `ds`.

    Lazy, like every Ray Dataset: nothing runs until it is written or iterated. `shared_model=True`: the
    workers read `model` at the same path themselves (a shared filesystem, or a path baked into every
    node's image) instead of receiving it from the driver.
    """
    ray = require_ray()
    options = options or ReadOptions()
    cluster = cluster or ClusterOptions()
    for name in ("threads", "questions_per_task"):
        if not isinstance(getattr(cluster, name), int) or getattr(cluster, name) < 1:
            raise InputError(f"{name} must be a positive integer, got {getattr(cluster, name)!r}")
    if cluster.concurrency is None:  # as many as fit, but start with what a busy cluster has free
        most = _workers_that_fit(ray, cluster.threads)
        pool = ray.data.ActorPoolStrategy(min_size=1, max_size=most, initial_size=most)
    elif isinstance(cluster.concurrency, int) and cluster.concurrency >= 1:
        pool = ray.data.ActorPoolStrategy(size=cluster.concurrency)
    else:
        raise InputError(f"concurrency must be a positive integer, got {cluster.concurrency!r}")
    backend = resolve_backend(model, backend)
    if shared_model:
        source: Any = str(model) if model is not None else None
    else:
        _check_window(model, options)
        files = model_files(model, backend)
        source = {"files": ray.put(files), "digest": _digest(files)}
    return ds.map_batches(
        ReaderWorker,
        fn_constructor_kwargs={
            "source": source,
            "backend": backend,
            "threads": cluster.threads,
            "options": options,
        },
        batch_size=cluster.questions_per_task,
        batch_format="pyarrow",
        compute=pool,
        num_cpus=cluster.threads,
    )


class ReaderWorker:
    """A Ray Data worker: loads the Reader once, then answers one batch of rows per call."""

    def __init__(self, source: Any, backend: str, threads: int, options: ReadOptions):
        from spanqa.reading.reader import Reader

        model = source if source is None or isinstance(source, str) else _unpack(source)
        self.reader = Reader.load(model, backend, threads=threads)
        self.options = options.for_backend(self.reader.backend.name)

    def __call__(self, batch: Any) -> Any:
        import pyarrow as pa

        rows = [row for row in batch.to_pylist() if not is_blank_line(row)]
        records = answer_rows(self.reader, rows, self.options)
        return pa.Table.from_pylist(records, schema=record_schema())


def resolve_backend(model: str | os.PathLike | None, backend: str) -> str:
    """The backend every worker runs: `auto` is decided once, on the driver, so that all workers agree."""
    if backend not in BACKENDS:
        raise InputError(f"unknown backend {backend!r}; choose one of {', '.join(BACKENDS)}")
    if backend != "auto":
        return backend
    from spanqa.backends.load import resolve_auto
    from spanqa.backends.model_dir import resolve_model

    # decided by the driver's CPU and packages: a cluster of unlike machines should name its backend
    return resolve_auto(resolve_model(model))


def model_files(model: str | os.PathLike | None, backend: str) -> dict[str, bytes]:
    """The files a worker needs to load `model` with `backend`: for ONNX, the exported graph (made here,
    once, if the export cache lacks it; for onnx-int8 the fp32 one as well, for openvino-int8 the fp32 one
    alone) with the tokenizer, config and card, and no PyTorch weights."""
    from spanqa.backends.model_cache import FP32_FILE, INT8_FILE, weight_files
    from spanqa.backends.model_dir import resolve_model

    model_dir = resolve_model(model)
    weights = set(weight_files(model_dir))
    top_level = sorted(p for p in model_dir.iterdir() if p.is_file() and not p.name.endswith(".onnx"))
    if backend == "torch":
        return {p.name: p.read_bytes() for p in top_level}
    from spanqa.backends.onnx_backend import onnx_file

    files = {p.name: p.read_bytes() for p in top_level if p not in weights and p.name != "export.json"}
    # int8 with its fp32 graph too: workers re-read borderline questions in fp32 as the local reader does
    graphs = {"onnx": (False,), "onnx-int8": (False, True), "openvino-int8": (False,)}
    for int8 in graphs.get(backend, (True,)):
        graph = onnx_file(model_dir, int8=int8)
        if graph.with_name(graph.name + ".data").is_file():
            raise ModelError(f"{graph} keeps its weights in an external file; give the workers a shared path")
        files[INT8_FILE if int8 else FP32_FILE] = graph.read_bytes()
    return files


def _check_window(model: str | os.PathLike | None, options: ReadOptions) -> None:
    from spanqa.backends.model_dir import max_positions, read_config, resolve_model

    limit = max_positions(read_config(resolve_model(model)))
    if options.max_seq_len is not None and options.max_seq_len > limit:
        raise InputError(f"max_seq_len={options.max_seq_len} is more than this model's {limit} positions")


def _digest(files: dict[str, bytes]) -> str:
    h = hashlib.sha256()
    for name in sorted(files):
        h.update(name.encode() + b"\0" + hashlib.sha256(files[name]).digest())
    return h.hexdigest()[:32]


def _unpack(source: dict[str, Any]) -> Path:
    """The model's files in this node's temporary directory, written once per node and model.

    Written into a fresh folder and renamed into place, so a worker killed while writing leaves nothing
    another worker could half-read.
    """
    import ray

    target = Path(tempfile.gettempdir()) / MODEL_FILES_DIR / source["digest"]
    if target.is_dir():
        return target
    files = ray.get(source["files"]) if isinstance(source["files"], ray.ObjectRef) else source["files"]
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".unpacking-", dir=target.parent))
    for name, data in files.items():
        (staging / name).write_bytes(data)
    try:
        staging.rename(target)
    except OSError:  # another worker of this node was first: its copy is the same
        import shutil

        shutil.rmtree(staging, ignore_errors=True)
    return target


def _workers_that_fit(ray: Any, threads: int) -> int:
    cpus = int(ray.cluster_resources().get("CPU", 1))
    return max(1, cpus // threads)
