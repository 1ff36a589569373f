"""Retrieval: passages and BM25 for texts longer than the reader should read, and the persistent SQLite index.

Below the reader: it never imports the reading layer (the plan only needs the window shape, the index a reader
object passed in).
"""
