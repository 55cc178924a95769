"""PII redaction, a transformation: emails, public IP addresses, phone numbers, credit-card numbers, Chinese
resident ID numbers and IBANs are replaced by `<EMAIL>`, `<IP>`, `<PHONE>`, `<CREDIT_CARD>`, `<CN_ID>`, `<IBAN>`,
and the number of replacements per type is stored on the document (`pii_redactions`).

Detection is regex candidates plus validation, so that numbers which merely look like PII stay: cards must pass
Luhn, Chinese IDs the ISO 7064 MOD 11-2 checksum and a real birth date, IBANs the mod-97 check, IPs must parse and
be globally routable unicast addresses (private, loopback, multicast and documentation ranges are kept, as FineWeb
does). Phone numbers are digit groups with separators (international `+CC`, `(0)`, area codes in parentheses,
extensions), ten bare digits, and Chinese mobile numbers (`1[3-9]` + 9 digits, optional `+86`), with 7 to 15
digits; SSN-shaped numbers, dates, year ranges, partial IPs, counting sequences and "house number + street" are not
phones. Where candidates overlap, the earlier type in `PII_TYPES` wins.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import re
from collections.abc import Callable

from pydantic import Field

from llm_core.filters.base import DocFilter, Document, FilterOutcome, FilterSettings

PII_TYPES = ("EMAIL", "IP", "IBAN", "CN_ID", "CREDIT_CARD", "PHONE")

EMAIL_RE = re.compile(r"(?<![\w.%+-])[A-Za-z0-9][A-Za-z0-9._%+-]{0,63}@(?:[A-Za-z0-9-]{1,63}\.)+[A-Za-z]{2,24}\b")
IPV4_RE = re.compile(r"(?<![\d.])(?:\d{1,3}\.){3}\d{1,3}(?![\d.]|\.\d)")
IPV6_RE = re.compile(r"(?<![\w:])(?:[0-9A-Fa-f]{0,4}:){2,7}(?:[0-9A-Fa-f]{1,4}|(?:\d{1,3}\.){3}\d{1,3})?(?![\w:])")
CN_ID_RE = re.compile(r"(?<![\dA-Za-z])[1-9]\d{5}(?:18|19|20)\d{2}(?:0[1-9]|1[0-2])\d{2}\d{3}[\dXx](?![\dA-Za-z])")
CARD_RE = re.compile(
    r"(?<![\w+-])(?:"
    r"\d{12,19}"  # no separators
    r"|\d{4}(?P<sep>[ -])\d{4}(?:(?P=sep)\d{4}){1,2}(?:(?P=sep)\d{1,4})?"  # groups of four
    r"|\d{4}(?P<sep2>[ -])\d{6}(?P=sep2)\d{4,5}"  # 4-6-5 (Amex, Diners)
    r")(?![\d-])"
)
IBAN_RE = re.compile(r"(?<![A-Za-z0-9])[A-Z]{2}\d{2}(?: ?[A-Z0-9]){11,30}(?![A-Za-z0-9])")
PHONE_RE = re.compile(
    r"(?<![\w+.-])"
    r"(?:"
    r"(?:\+|00)\d{1,3}[\s.-]?(?:\(0\)\s?)?(?:\(\d{1,4}\)[\s.-]?)?\d{1,5}(?:[\s.-]?\d{2,7}){1,4}"  # international
    r"|\(\d{2,4}\)\s?\d{2,5}(?:[\s.-]\d{2,7}){1,3}"  # (area) local
    r"|\d{2,5}(?:[\s.-]\d{2,7}){1,4}"  # digit groups with separators
    r"|(?:\+?86[\s-]?)?1[3-9]\d(?:[\s-]?\d{4}){2}"  # Chinese mobile
    r"|\d{10}"  # ten bare digits (national numbers)
    r")"
    r"(?:\s?(?:x|ext\.?)\s?\d{1,5})?"
    r"(?![\w]|[-.:/]\d)"
)
_WORD_AFTER_RE = re.compile(r"[ \t]+[^\W\d_]")
_YEAR_RANGE_RE = re.compile(r"(?:19|20)\d\d\s?[-–]\s?(?:19|20)\d\d")
_PARTIAL_IP_RE = re.compile(r"\d{1,3}(?:\.\d{1,3}){1,3}")
_REPEAT_RE = re.compile(r"(\d)\1{7}")
_SSN_RE = re.compile(r"\d{3}-\d{2}-\d{4}")
_DATE_RE = re.compile(r"(?:\d{4}[-./]\d{1,2}[-./]\d{1,2}|\d{1,2}[-./]\d{1,2}[-./]\d{4})")
_CN_ID_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)


def luhn_valid(digits: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = int(ch)
        if i % 2:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


def cn_id_valid(number: str) -> bool:
    """18-character PRC resident ID: valid birth date and ISO 7064 MOD 11-2 check character."""
    try:
        dt.date(int(number[6:10]), int(number[10:12]), int(number[12:14]))
    except ValueError:
        return False
    check = (12 - sum(int(d) * w for d, w in zip(number[:17], _CN_ID_WEIGHTS)) % 11) % 11
    return number[17].upper() == ("X" if check == 10 else str(check))


def iban_valid(candidate: str) -> bool:
    iban = candidate.replace(" ", "")
    if not 15 <= len(iban) <= 34:
        return False
    rearranged = iban[4:] + iban[:4]
    return int("".join(str(int(ch, 36)) for ch in rearranged)) % 97 == 1


def _public_ip(m: re.Match) -> bool:
    try:
        ip = ipaddress.ip_address(m.group())
        return ip.is_global and not ip.is_multicast
    except ValueError:
        return False


def _card(m: re.Match) -> bool:
    digits = re.sub(r"\D", "", m.group())
    return (
        12 <= len(digits) <= 19 and digits[0] in "0123456" and not _REPEAT_RE.search(digits) and luhn_valid(digits)
    )


def _counting(groups: list[str]) -> bool:
    """Three or more equal-length, increasing numbers ("10 11 12 13") are a sequence, not a phone number."""
    numbers = [int(g) for g in groups]
    return len(groups) >= 3 and len({len(g) for g in groups}) == 1 and numbers == sorted(set(numbers))


def _phone(m: re.Match) -> bool:
    number = re.split(r"\s?(?:x|ext\.?)\s?(?=\d)", m.group())[0]
    digits = re.sub(r"\D", "", number)
    if not 7 <= len(digits) <= 15 or _SSN_RE.fullmatch(number) or _DATE_RE.fullmatch(number):
        return False
    groups = re.findall(r"\d+", number)
    if _YEAR_RANGE_RE.fullmatch(number) or _PARTIAL_IP_RE.fullmatch(number) or _counting(groups):
        return False
    # Two bare digit groups followed by a word on the same line are a house number and a street ("224 4966 Bond St").
    short_local = len(groups) <= 2 and number[0].isdigit()
    return not (short_local and _WORD_AFTER_RE.match(m.string, m.end()))


def _any(m: re.Match) -> bool:
    return True


DETECTORS: dict[str, list[tuple[re.Pattern, Callable[[re.Match], bool]]]] = {
    "EMAIL": [(EMAIL_RE, _any)],
    "IP": [(IPV4_RE, _public_ip), (IPV6_RE, _public_ip)],
    "CN_ID": [(CN_ID_RE, lambda m: cn_id_valid(m.group()))],
    "CREDIT_CARD": [(CARD_RE, _card)],
    "IBAN": [(IBAN_RE, lambda m: iban_valid(m.group()))],
    "PHONE": [(PHONE_RE, _phone)],
}


def find_pii(text: str, types: tuple[str, ...] | list[str] = PII_TYPES) -> list[tuple[int, int, str]]:
    """Non-overlapping (start, end, type) spans, sorted by start; earlier types win overlaps."""
    taken: list[tuple[int, int, str]] = []
    for pii_type in PII_TYPES:
        if pii_type not in types:
            continue
        for pattern, valid in DETECTORS[pii_type]:
            for m in pattern.finditer(text):
                start, end = m.span()
                if valid(m) and all(end <= s or start >= e for s, e, _ in taken):
                    taken.append((start, end, pii_type))
    return sorted(taken)


def redact(text: str, types: tuple[str, ...] | list[str] = PII_TYPES) -> tuple[str, dict[str, int]]:
    """Text with every PII span replaced by `<TYPE>`, and the count per type."""
    spans = find_pii(text, types)
    if not spans:
        return text, {}
    out, counts, pos = [], {}, 0
    for start, end, pii_type in spans:
        out.append(text[pos:start])
        out.append(f"<{pii_type}>")
        counts[pii_type] = counts.get(pii_type, 0) + 1
        pos = end
    out.append(text[pos:])
    return "".join(out), counts


class PIIConfig(FilterSettings):
    types: list[str] = Field(default_factory=lambda: list(PII_TYPES), description=f"subset of {PII_TYPES}")

    def model_post_init(self, __context) -> None:
        unknown = sorted(set(self.types) - set(PII_TYPES))
        if unknown:
            raise ValueError(f"unknown PII types {unknown}; known: {list(PII_TYPES)}")


class PIIRedactor(DocFilter):
    """Never drops a document; rewrites its text and records `pii_redactions`."""

    name = "pii"
    reason_prefix = "pii"

    def __init__(self, config: PIIConfig):
        super().__init__()
        self.types = tuple(config.types)

    def filter(self, doc: Document) -> FilterOutcome:
        doc.text, doc.pii_redactions = redact(doc.text, self.types)
        return True
