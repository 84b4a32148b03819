"""Records: run folders and the append-only store, the schema, statistics, the run reader, the latency fit.

    store.py   run folders, results.jsonl (append-only), run ids
    schema.py  the record schema every record is validated against
    stats.py   the latency statistics every runner's samples go through
    reader.py  runs read back as tidy rows (report, compare, select)
    index.py   the SQLite index of runs already read and validated
    fit.py     the latency-versus-MACs power law
"""
