"""PII redaction on the labelled Presidio sample and on hand-checked Chinese formats."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from llm_core.filters.base import Document
from llm_core.filters.pii import PIIConfig, PIIRedactor, cn_id_valid, find_pii, iban_valid, luhn_valid, redact

ROOT = Path(__file__).resolve().parents[1]


def with_cn_check(first17: str) -> str:
    weights = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
    check = (12 - sum(int(d) * w for d, w in zip(first17, weights)) % 11) % 11
    return first17 + ("X" if check == 10 else str(check))


def test_presidio_sample_meets_recall_and_precision_targets():
    import importlib.util

    spec = importlib.util.spec_from_file_location("pii_eval", ROOT / "bench/pii_eval.py")
    pii_eval = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(pii_eval)
    records = json.loads((ROOT / "data/pii/synth_dataset_v2.dev.json").read_text(encoding="utf-8"))
    stats = pii_eval.evaluate(records)
    for pii_type, s in stats.items():
        assert s["found"] / s["gold"] >= pii_eval.TARGETS[pii_type], (pii_type, s)
        assert s["correct"] / s["predicted"] >= 0.9, (pii_type, s)


def test_redaction_replaces_every_type_and_counts_them():
    cn_id = with_cn_check("11010519491231002")
    text = (
        "Write to ana.lopez@mail.example.es, call +34 612 345 678 or 13812345678 (+86 139-1234-5678). "
        f"Server 8.8.8.8 and 2001:4860:4860::8888. Card 4242 4242 4242 4242, ID {cn_id}, "
        "IBAN GB82 WEST 1234 5698 7654 32."
    )
    out, counts = redact(text)
    assert counts == {"EMAIL": 1, "PHONE": 3, "IP": 2, "CREDIT_CARD": 1, "CN_ID": 1, "IBAN": 1}
    assert out == (
        "Write to <EMAIL>, call <PHONE> or <PHONE> (<PHONE>). Server <IP> and <IP>. Card <CREDIT_CARD>, "
        "ID <CN_ID>, IBAN <IBAN>."
    )


@pytest.mark.parametrize(
    "text",
    [
        "Local network: 192.168.1.10, loopback 127.0.0.1, docs range 203.0.113.5, multicast 224.0.0.251.",
        "Card-like but not Luhn: 4242 4242 4242 4243.",
        "Not an ID (bad checksum): 110105194912310021, nor a date: 110105194913310028.",
        "Dates and ranges: 2020-01-15, 1999-2003, 15/01/2020; version 3.11.2; SSN-shaped 514-69-0360.",
        "Counting: 10 11 12 13 14. Address: 224 4966 Bond Street.",
        "IBAN-like with a bad checksum: GB82WEST12345698765433.",
    ],
)
def test_lookalikes_are_not_redacted(text):
    assert find_pii(text) == []


def test_validators():
    assert luhn_valid("4111111111111111") and not luhn_valid("4111111111111112")
    assert cn_id_valid(with_cn_check("11010519491231002")) and not cn_id_valid("110105194912310021")
    assert iban_valid("GB82 WEST 1234 5698 7654 32") and iban_valid("DE89370400440532013000")
    assert not iban_valid("DE89370400440532013001")


def test_redactor_is_a_transformation_with_selected_types():
    d = Document(doc_id="x", url="", text="Mail a@b.example.com, phone +1 415 555 0100.")
    redactor = PIIRedactor(PIIConfig(types=["EMAIL"]))
    assert redactor(d) is None
    assert d.text == "Mail <EMAIL>, phone +1 415 555 0100." and d.pii_redactions == {"EMAIL": 1}
    assert redactor.stats.kept == 1 and redactor.stats.dropped == {}


def test_unknown_pii_type_is_a_config_error():
    with pytest.raises(ValueError, match="unknown PII types"):
        PIIConfig(types=["EMAIL", "PASSPORT"])
