"""The filtering stage: URL blocklists, language ID, quality heuristics, PII redaction and global deduplication.

Each filter is one predicate (or one transformation) on a `Document`, built on `DocFilter`, which counts, times and
names the reason of every exclusion. `FilterStage` runs the enabled filters in a fixed order per shard, then
deduplicates across all shards in `finalize`.
"""
