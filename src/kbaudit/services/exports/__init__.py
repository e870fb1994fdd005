"""The export pipeline: jobs are planned into parts, each part is read, formatted, compressed,
encrypted and stored as one file by a worker, and files are downloaded through tokens.

``jobs`` (create, view, list) -> ``planning`` -> ``parts`` (one file each) -> ``sweep``
(leases, expiry); ``formats`` writes CSV and NDJSON; ``download`` streams files back.
"""
