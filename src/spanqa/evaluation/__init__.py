"""Evaluation: SQuAD files, the official SQuAD 2.0 metrics, resumable runs, tuning, plots, speed."""
