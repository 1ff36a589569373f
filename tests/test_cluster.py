"""spanqa.cluster on a local Ray instance: answers equal local ones, bad rows give error records, a worker
killed mid-job loses and duplicates nothing. The Ray tests share one `ray.init(num_cpus=2)` (marked `ray`:
deselect with -m 'not ray'); the row handling is also tested without Ray."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from conftest import FIXTURES
from spanqa import Reader
from spanqa.cluster.rows import ReadOptions, answer_rows, local_record, parse_row
from spanqa.errors import InputError
from spanqa.evaluation.squad import load_squad
from tiny_models import CORPUS

LONG_CONTEXT = " ".join(CORPUS * 40)  # many windows: read retrieval-first


def fixture_rows() -> list[dict]:
    rows = [{"id": ex.id, "question": ex.question, "context": ex.context} for ex in load_squad(SQUAD)]
    rows.append({"id": "several", "question": "Who built the tower?", "contexts": CORPUS[:3]})
    rows.append({"id": "long", "question": "When was the lamp lit?", "context": LONG_CONTEXT})
    return rows


SQUAD = FIXTURES / "eval_squad_tiny.json"


def local_answers(reader: Reader, rows: list[dict]) -> dict[str, dict]:
    items = [(r["question"], r.get("context", r.get("contexts"))) for r in rows]
    options = ReadOptions().for_backend(reader.backend.name)
    return {
        r["id"]: {"id": r["id"], **p.to_dict()} for r, p in zip(rows, reader.answer_batch(items, **options))
    }


@pytest.fixture(scope="module")
def tiny_reader(tiny_bert_dir: Path) -> Reader:
    return Reader.load(tiny_bert_dir, backend="onnx-int8")


# ---- rows, without Ray ----


@pytest.mark.parametrize(
    ("row", "message"),
    [
        ({"question": "Q?", "context": "C."}, "no id"),
        ({"id": "x", "question": " ", "context": "C."}, "question is empty"),
        ({"id": "x", "question": "Q?"}, "exactly one of context or contexts"),
        ({"id": "x", "question": "Q?", "context": "C.", "contexts": ["D."]}, "exactly one"),
        ({"id": "x", "question": "Q?", "contexts": []}, "non-empty list"),
        ({"id": "x", "question": "Q?", "contexts": ["ok", 3]}, "contexts[1] must be a string"),
        ({"id": "x", "question": "Q?", "context": "a\x00b"}, "NUL"),
        ({"json": "[1, 2]"}, "not a JSON object"),
        ({"json": "{oops"}, "not a JSON object"),
    ],
)
def test_parse_row_names_what_is_wrong(row, message):
    with pytest.raises(InputError, match=message.replace("[", r"\[").replace("]", r"\]")):
        parse_row(row)


def test_parse_row_reads_json_lines_and_numeric_ids():
    assert parse_row({"json": '{"id": 7, "question": "Q?", "context": "C."}'}) == ("7", ("Q?", "C."))


def test_one_bad_row_in_a_batch_is_an_error_record_and_the_others_are_answered(tiny_reader):
    rows = fixture_rows()[:4]
    too_long = {"id": "huge", "question": "why " * 400, "context": "A short text."}  # no room left for text
    records = answer_rows(tiny_reader, [*rows[:2], too_long, *rows[2:]], ReadOptions().for_backend("x"))
    assert [r["id"] for r in records] == ["eval-1", rows[1]["id"], "huge", *[r["id"] for r in rows[2:]]]
    assert records[2]["error"] and "question" in records[2]["error"]
    want = local_answers(tiny_reader, rows)
    assert [local_record(r) for r in records if r["error"] is None] == [want[r["id"]] for r in rows]


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--concurrency", "2"], "--concurrency needs --ray"),
        (["--ray", "--out", "answers.txt"], ".jsonl or .parquet"),  # refused before Ray starts
        (["--ray", "--out", "no/such/dir/a.jsonl"], "does not exist"),
    ],
)
def test_predict_refuses_ray_options_it_cannot_use(extra, message, tmp_path, capsys, monkeypatch):
    from spanqa.cli.main import main

    monkeypatch.chdir(tmp_path)
    out = ["--out", "a.jsonl"] if "--out" not in extra else []
    code = main(["predict", "--data", str(SQUAD), *out, *extra])
    err = capsys.readouterr().err
    assert code == 2 and len(err.strip().splitlines()) == 1 and message in err


# ---- on a local Ray instance ----


@pytest.fixture(scope="module")
def ray_local():
    import ray

    started = not ray.is_initialized()
    if started:  # the workers inherit this process's environment: the private SPANQA_CACHE and PYTHONPATH
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    ray.data.DataContext.get_current().enable_progress_bars = False
    yield ray
    if started:
        ray.shutdown()


def test_int8_workers_get_the_fp32_graph_for_the_re_read(tiny_bert_dir, tmp_path):
    from spanqa.backends.model_cache import FP32_FILE, INT8_FILE, weight_files
    from spanqa.cluster.ray_predict import model_files

    files = model_files(tiny_bert_dir, "onnx-int8")
    assert {FP32_FILE, INT8_FILE} <= set(files)
    assert not {p.name for p in weight_files(tiny_bert_dir)} & set(files)
    for name, data in files.items():
        (tmp_path / name).write_bytes(data)
    assert Reader.load(tmp_path, backend="onnx-int8").backend.fallback is not None
    (tmp_path / FP32_FILE).unlink()  # an int8-only folder: int8 alone, no error
    reader = Reader.load(tmp_path, backend="onnx-int8")
    assert reader.backend.fallback is None and reader.answer("Who built the tower?", CORPUS[0]).answers
    alone = model_files(tiny_bert_dir, "onnx-int8-alone")  # no re-read: the int8 graph is all it needs
    assert INT8_FILE in alone and FP32_FILE not in alone
    assert set(model_files(tiny_bert_dir, "onnx")) & {FP32_FILE, INT8_FILE} == {FP32_FILE}


@pytest.mark.ray
def test_ray_predictions_equal_local_ones(ray_local, tiny_bert_dir, tiny_reader):
    from spanqa.cluster.ray_predict import ClusterOptions, answer_dataset

    rows = fixture_rows()
    ds = ray_local.data.from_items(rows, override_num_blocks=4)
    out = answer_dataset(
        ds, tiny_bert_dir, "onnx-int8", cluster=ClusterOptions(concurrency=2, questions_per_task=3)
    )
    got = {r["id"]: local_record(r) for r in out.take_all()}
    assert got == local_answers(tiny_reader, rows)
    assert got["long"]["answers"] and got["several"]["answers"][0]["doc"] in (0, 1, 2)


@pytest.mark.ray
def test_cli_writes_an_error_record_for_each_bad_row_and_answers_the_rest(
    ray_local, tiny_bert_dir, tiny_reader, tmp_path, capsys
):
    from spanqa.cli.main import main

    good = fixture_rows()[:3]
    lines = [
        json.dumps(good[0]),
        "this line is not JSON",
        json.dumps({"id": "empty", "question": "", "context": "Some text."}),
        "",
        json.dumps(good[1]),
        json.dumps({"id": "nocontext", "question": "Why?"}),
        json.dumps(good[2]),
    ]
    data = tmp_path / "questions.jsonl"
    data.write_text("\n".join(lines) + "\n", encoding="utf-8")
    out = tmp_path / "answers.jsonl"
    args = ["predict", "--ray", "--model", str(tiny_bert_dir), "--data", str(data), "--out", str(out)]
    code = main([*args, "--backend", "onnx-int8", "--questions-per-task", "2"])
    err = capsys.readouterr().err
    assert code == 2
    assert "3 of 6 rows could not be answered" in err.splitlines()[-1]
    records = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert [r["id"] for r in records] == [
        good[0]["id"],
        None,
        "empty",
        good[1]["id"],
        "nocontext",
        good[2]["id"],
    ]
    errors = {r["id"]: r["error"] for r in records if "error" in r}
    assert errors == {
        None: errors[None],
        "empty": "question is empty",
        "nocontext": "give exactly one of context or contexts",
    }
    assert "not a JSON object" in errors[None]
    want = local_answers(tiny_reader, good)
    assert [r for r in records if "error" not in r] == [want[r["id"]] for r in good]


@pytest.mark.ray
def test_a_worker_killed_mid_job_leaves_every_id_answered_exactly_once(ray_local, tiny_bert_dir, tmp_path):
    from spanqa.cluster import ray_predict

    marker = tmp_path / "crashed"

    class CrashingWorker(ray_predict.ReaderWorker):
        """Dies (the whole process, as a kill or an out-of-memory would) in its second call, once per job."""

        calls = 0

        def __call__(self, batch):
            self.calls += 1
            if self.calls == 2:
                try:
                    os.close(os.open(marker, os.O_CREAT | os.O_EXCL))
                except FileExistsError:
                    pass
                else:
                    os._exit(1)
            return super().__call__(batch)

    rows = [{"id": f"q{i}", "question": "When was it lit?", "context": CORPUS[i % 3]} for i in range(24)]
    ds = ray_local.data.from_items(rows, override_num_blocks=6)
    original = ray_predict.ReaderWorker
    ray_predict.ReaderWorker = CrashingWorker
    try:
        out = ray_predict.answer_dataset(
            ds,
            tiny_bert_dir,
            "onnx-int8",
            cluster=ray_predict.ClusterOptions(concurrency=2, questions_per_task=2),
        )
        records = out.take_all()
    finally:
        ray_predict.ReaderWorker = original
    assert marker.exists()  # a worker did die mid-job
    ids = sorted(r["id"] for r in records)
    assert ids == sorted(r["id"] for r in rows)  # every id once: none lost, none duplicated
    assert all(r["error"] is None and r["answers"] for r in records), [r["error"] for r in records][:3]


@pytest.mark.ray
def test_parquet_questions_in_parquet_answers_out(ray_local, tiny_bert_dir, tiny_reader, tmp_path, capsys):
    import pyarrow as pa
    import pyarrow.parquet as pq

    from spanqa.cli.main import main
    from spanqa.cluster.rows import record_schema

    good = fixture_rows()[:2]
    table = pa.table(
        {
            "id": [good[0]["id"], "noquestion", good[1]["id"]],
            "question": [good[0]["question"], None, good[1]["question"]],
            "context": [good[0]["context"], "Some text.", good[1]["context"]],
        }
    )
    pq.write_table(table, tmp_path / "questions.parquet")
    out = tmp_path / "answers.parquet"
    args = ["predict", "--ray", "--model", str(tiny_bert_dir), "--backend", "onnx-int8"]
    code = main([*args, "--data", str(tmp_path / "questions.parquet"), "--out", str(out)])
    assert code == 2 and "1 of 3 rows" in capsys.readouterr().err
    answers = pq.read_table(out)
    assert answers.schema == record_schema()
    records = answers.to_pylist()
    assert [r["id"] for r in records] == [good[0]["id"], "noquestion", good[1]["id"]]
    assert records[1]["error"] == "row has no question"
    want = local_answers(tiny_reader, good)
    assert [local_record(records[0]), local_record(records[2])] == [want[r["id"]] for r in good]
