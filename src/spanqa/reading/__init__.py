"""Reading: question and contexts -> windows -> backend logits -> decoded spans -> a Prediction.

`reader.Reader` runs the whole path; `windows`, `decode`, `bucketing` and `calibration` are its stages.
"""
