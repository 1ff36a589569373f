"""Training: SQuAD examples -> labelled windows (the reader's own windowing), plus
synthetic negatives -> a model."""
