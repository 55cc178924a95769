"""A stable number in [0, 1) for any JSON-able object: the deterministic coin behind every split and subsample."""

from __future__ import annotations

import hashlib
import json


def unit_hash(obj: object, salt: str = "") -> float:
    digest = hashlib.sha256((salt + json.dumps(obj, sort_keys=True, ensure_ascii=False)).encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64
