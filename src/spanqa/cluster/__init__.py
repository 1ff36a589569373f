"""Beyond one machine: answering a Ray Dataset of questions on a Ray cluster (`pip install 'spanqa[ray]'`).

rows.py turns rows `{id, question, context | contexts}` into answer records (no Ray needed); ray_predict.py
is the Ray Data pipeline (one Reader per worker, `map_batches`); files.py reads questions and writes
predictions on any filesystem pyarrow reads. Importing this package does not import Ray.
"""
