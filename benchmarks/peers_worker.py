"""One peer configuration, run by the peers' own virtualenv (benchmarks/peers.py starts it).

    PEERS_PYTHON benchmarks/peers_worker.py '{"config": ..., "model": ..., "data": ..., "out": ...}'

Imports nothing from spanqa (the peers' virtualenv does not have it): reads the SQuAD file itself, answers
each question one at a time the way the library's users call it, and writes answers, latencies and the
versions it ran with as JSON.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

WARMUP = 5
# spanqa's defaults; max_seq_len comes from the model card, as spanqa reads it
DOC_STRIDE, MAX_ANSWER_LEN = 128, 30


def load_questions(path: str, limit: int) -> list[tuple[str, str, str]]:
    data = json.loads(Path(path).read_text(encoding="utf-8"))["data"]
    out = []
    for article in data:
        for paragraph in article["paragraphs"]:
            for qa in paragraph["qas"]:
                out.append((qa["id"], qa["question"], paragraph["context"]))
    return out[:limit]


def hf_pipeline(model: str, threads: int, max_seq_len: int, onnx_dir: str | None):
    import torch
    from transformers import AutoTokenizer, pipeline

    torch.set_num_threads(threads)
    tokenizer = AutoTokenizer.from_pretrained(model)
    if onnx_dir is None:
        qa = pipeline("question-answering", model=model, tokenizer=tokenizer, device="cpu")
    else:
        from optimum.onnxruntime import ORTModelForQuestionAnswering

        exported = Path(onnx_dir)
        if not (exported / "model.onnx").is_file():  # optimum's own export, once per model
            ORTModelForQuestionAnswering.from_pretrained(model, export=True).save_pretrained(exported)
        ort_model = ORTModelForQuestionAnswering.from_pretrained(exported)
        qa = pipeline("question-answering", model=ort_model, tokenizer=tokenizer, device="cpu")

    def answer(question: str, context: str) -> str:
        out = qa(
            question=question,
            context=context,
            handle_impossible_answer=True,  # SQuAD 2.0: "" when no answer beats the null score
            max_seq_len=max_seq_len,
            doc_stride=DOC_STRIDE,
            max_answer_len=MAX_ANSWER_LEN,
        )
        return out["answer"]

    return answer


def haystack_reader(model: str, threads: int, max_seq_len: int):
    import torch
    from haystack import Document
    from haystack.components.readers import ExtractiveReader

    torch.set_num_threads(threads)
    reader = ExtractiveReader(
        model=model,
        device=None,
        top_k=1,
        no_answer=True,
        max_seq_length=max_seq_len,
        stride=DOC_STRIDE,
        answers_per_seq=20,
    )
    reader.warm_up()

    def answer(question: str, context: str) -> str:
        answers = reader.run(query=question, documents=[Document(content=context)], top_k=1)["answers"]
        best = answers[0] if answers else None
        return best.data or "" if best is not None else ""

    return answer


def versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for name in ("torch", "transformers", "optimum", "onnxruntime", "haystack-ai"):
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            pass
    return out


def main() -> None:
    a = json.loads(sys.argv[1])
    questions = load_questions(a["data"], a["limit"])
    started = time.perf_counter()
    if a["config"] == "hf-pipeline":
        answer = hf_pipeline(a["model"], a["threads"], a["max_seq_len"], None)
    elif a["config"] == "optimum-ort-pipeline":
        answer = hf_pipeline(a["model"], a["threads"], a["max_seq_len"], a["onnx_dir"])
    elif a["config"] == "haystack-reader":
        answer = haystack_reader(a["model"], a["threads"], a["max_seq_len"])
    else:
        raise SystemExit(f"unknown peer configuration {a['config']}")
    load_s = time.perf_counter() - started
    for _, q, c in questions[:WARMUP]:
        answer(q, c)
    answers, latencies = [], []
    cpu_started = time.process_time()
    started = time.perf_counter()
    for _, q, c in questions:
        t = time.perf_counter()
        answers.append(answer(q, c))
        latencies.append(time.perf_counter() - t)
    total = time.perf_counter() - started
    result = {
        "config": a["config"],
        "qps": len(questions) / total,
        "seconds": total,
        "cpu_ms_per_question": 1000 * (time.process_time() - cpu_started) / len(questions),
        "latencies": latencies,
        "load_s": load_s,
        "answers": answers,
        "ids": [i for i, _, _ in questions],
        "versions": versions(),
    }
    Path(a["out"]).write_text(json.dumps(result), encoding="utf-8")


if __name__ == "__main__":
    main()
