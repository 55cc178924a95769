"""The Parquet schemas of the data contracts (DESIGN.md), defined once."""

from __future__ import annotations

import pyarrow as pa

RAW_PAGES = pa.schema(
    [
        ("url", pa.string()),
        ("fetched_at", pa.timestamp("us", tz="UTC")),
        ("status", pa.int32()),
        ("content_type", pa.string()),
        ("charset", pa.string()),
        ("body", pa.binary()),
        ("warc_record_id", pa.string()),
        ("source", pa.string()),
        # The record ended before its declared length: `body` holds the bytes present. Artifacts written before
        # this column existed lack it; readers take a missing value as False.
        ("truncated", pa.bool_()),
    ]
)

DOCUMENTS = pa.schema(
    [
        ("doc_id", pa.string()),
        ("url", pa.string()),
        ("text", pa.string()),
        ("title", pa.string()),
        ("source", pa.string()),
        # when the text's source was captured (a page's fetch time, a data file's modification time), never the
        # wall clock of the run, so two runs write the same rows (the run's own time is in run.json)
        ("extracted_at", pa.timestamp("us", tz="UTC")),
    ]
)

# Records dropped by a stage, with why. `detail` holds what identifies a record that never became a document
# (e.g. a WARC record id and its content type).
REJECTED = pa.schema([*DOCUMENTS, ("reason", pa.string()), ("detail", pa.string())])

FILTERED_DOCUMENTS = pa.schema(
    [
        *DOCUMENTS,
        ("language", pa.string()),
        ("language_score", pa.float32()),
        ("pii_redactions", pa.map_(pa.string(), pa.int32())),
        ("quality", pa.map_(pa.string(), pa.float32())),
    ]
)

# The search index's passages (the `index` stage): pieces of a document, numbered from 0 within it.
PASSAGES = pa.schema(
    [
        ("doc_id", pa.string()),
        ("passage", pa.int32()),
        ("url", pa.string()),
        ("text", pa.string()),
        ("source", pa.string()),
    ]
)

# A message of a prompt (preference pairs, rankings): role and content. Prompts are hashed to split them into train
# and val, so their rows keep this shape; an earlier assistant turn that called tools is kept as its content.
PROMPT_MESSAGE = pa.struct([("role", pa.string()), ("content", pa.string())])

# A message of a training conversation. `parts`: an assistant turn that calls tools, in order (kind: text | python |
# search | output; see chat/template.py); null for every other message. Artifacts written before this field existed
# lack it; readers take a missing or null value as no parts.
MESSAGE_PART = pa.struct([("kind", pa.string()), ("text", pa.string())])
MESSAGE = pa.struct([*PROMPT_MESSAGE, ("parts", pa.list_(MESSAGE_PART))])

CONVERSATIONS = pa.schema([("messages", pa.list_(MESSAGE)), ("source", pa.string())])

PREFERENCES = pa.schema(
    [
        ("prompt", pa.list_(PROMPT_MESSAGE)),
        ("chosen", pa.string()),
        ("rejected", pa.string()),
        ("source", pa.string()),
    ]
)

# The eval stage: one row per model x suite x metric, and what each model answered to each item.
EVAL_RESULTS = pa.schema(
    [
        ("model", pa.string()),
        ("suite", pa.string()),
        ("metric", pa.string()),
        ("value", pa.float64()),
        ("n", pa.int64()),
        ("ci_low", pa.float64()),
        ("ci_high", pa.float64()),
        ("baseline", pa.float64()),
        ("baseline_name", pa.string()),
        ("contaminated", pa.int64()),
        ("higher_is_better", pa.bool_()),
    ]
)

EVAL_ITEMS = pa.schema(
    [
        ("model", pa.string()),
        ("suite", pa.string()),
        ("item_id", pa.string()),
        ("prompt", pa.string()),
        ("output", pa.string()),
        ("expected", pa.string()),
        ("correct", pa.bool_()),
        ("reason", pa.string()),
        ("contaminated", pa.bool_()),
    ]
)
