"""`make bench`: the end-to-end benchmark (throughput.py) and its naive baseline worker."""
