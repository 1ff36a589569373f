from spanqa import Reader


def test_reader_answers_with_exact_offsets(tiny_bert_dir):
    reader = Reader.load(tiny_bert_dir)
    context = "The lighthouse was first lit on 12 March 1849."
    pred = reader.answer("When was it lit?", context, top_k=3)
    assert 1 <= len(pred.answers) <= 3
    for a in pred.answers:
        assert context[a.start : a.end] == a.text
