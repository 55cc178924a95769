"""PII redaction, a transformation: emails, public IP addresses, phone numbers, credit-card numbers, US Social
Security numbers, Chinese resident ID numbers and IBANs are replaced by `<EMAIL>`, `<IP>`, `<PHONE>`,
`<CREDIT_CARD>`, `<SSN>`, `<CN_ID>`, `<IBAN>`, and the number of replacements per type is stored on the document
(`pii_redactions`).

Detection is regex candidates plus validation, so that numbers which merely look like PII stay: cards must pass
Luhn, Chinese IDs the ISO 7064 MOD 11-2 checksum and a real birth date, IBANs (any case, spaced or not) the mod-97
check, SSNs the SSA rules (no area 000, 666 or 9xx, no group 00, no serial 0000), IPs must parse and be globally
routable unicast addresses (private, loopback, multicast and documentation ranges are kept, as FineWeb does).
Phone numbers are digit groups with separators (international `+CC`, `(0)`, area codes in parentheses, local
numbers of up to 8 digits, extensions), ten bare digits, and Chinese mobile numbers (`1[3-9]` + 9 digits, optional
`+86`), with 7 to 15 digits. No candidate spans a line break. Not phones: SSN-shaped numbers, dates, year ranges,
numeric ranges in prose ("1200-1000"), decimals and arXiv ids, partial IPs, counting sequences, "house number +
street", and digits in arithmetic: next to an operator (`23786-17509 = 6277`) or inside a calculator annotation
(`<<23786-17509=6277>>`, as in GSM8K). Where candidates overlap, the earlier type in `PII_TYPES` wins.
`bench/pii_eval.py` measures recall and precision per type, and false redactions on text without PII.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import re
from collections.abc import Callable

from pydantic import Field

from llm_core.filters.base import DocFilter, Document, FilterOutcome, FilterSettings

PII_TYPES = ("EMAIL", "IP", "IBAN", "CN_ID", "CREDIT_CARD", "SSN", "PHONE")

EMAIL_RE = re.compile(r"(?<![\w.%+-])[A-Za-z0-9][A-Za-z0-9._%+-]{0,63}@(?:[A-Za-z0-9-]{1,63}\.)+[A-Za-z]{2,24}\b")
IPV4_RE = re.compile(r"(?<![\d.])(?:\d{1,3}\.){3}\d{1,3}(?![\d.]|\.\d)")
IPV6_RE = re.compile(r"(?<![\w:])(?:[0-9A-Fa-f]{0,4}:){2,7}(?:[0-9A-Fa-f]{1,4}|(?:\d{1,3}\.){3}\d{1,3})?(?![\w:])")
CN_ID_RE = re.compile(r"(?<![\dA-Za-z])[1-9]\d{5}(?:18|19|20)\d{2}(?:0[1-9]|1[0-2])\d{2}\d{3}[\dXx](?![\dA-Za-z])")
CARD_RE = re.compile(
    r"(?<![\w+-])(?<!\d\.)(?:"  # not the decimals of a number ("0.0072973525693")
    r"\d{12,19}"  # no separators
    r"|\d{4}(?P<sep>[ -])\d{4}(?:(?P=sep)\d{4}){1,2}(?:(?P=sep)\d{1,4})?"  # groups of four
    r"|\d{4}(?P<sep2>[ -])\d{6}(?P=sep2)\d{4,5}"  # 4-6-5 (Amex, Diners)
    r")(?![\d-])"
)
# Country code, check digits, then the account in groups of letters and digits; any case, spaces between groups.
IBAN_RE = re.compile(r"(?<![A-Za-z0-9])[A-Za-z]{2}\d{2}(?: ?[A-Za-z0-9]){11,30}(?![A-Za-z0-9])")
SSN_RE = re.compile(r"(?<![\w-])(?P<area>\d{3})(?P<sep>[- ])(?P<group>\d{2})(?P=sep)(?P<serial>\d{4})(?![\w-]|[.,]\d)")
# Separators are spaces or tabs, dots and hyphens, never a line break. Letters of any script may touch a number
# ("电话021-54098575"), Latin letters and digits may not (part numbers, hashes).
_SEP = r"[ \t.-]"
PHONE_RE = re.compile(
    r"(?<![A-Za-z0-9_+./-])"
    r"(?:"
    # international: +CC or 00CC, an optional (0), an optional area code in parentheses, then digit groups
    rf"(?:\+|00)\d{{1,3}}{_SEP}?(?:\(0\)[ \t]?)?(?:\(\d{{1,4}}\){_SEP}?)?\d{{1,5}}(?:{_SEP}?\d{{2,8}}){{1,4}}"
    rf"|\(\d{{2,4}}\)[ \t]?\d{{2,5}}(?:{_SEP}\d{{2,8}}){{1,3}}"  # (area) local
    rf"|\d{{2,5}}(?:{_SEP}\d{{2,8}}){{1,4}}"  # digit groups with separators (local numbers of up to 8 digits)
    r"|(?:\+?86[ \t-]?)?1[3-9]\d(?:[ \t-]?\d{4}){2}"  # Chinese mobile
    r"|\d{10}"  # ten bare digits (national numbers)
    r")"
    r"(?:[ \t]?(?:x|ext\.?)[ \t]?\d{1,5})?"
    r"(?![A-Za-z0-9_]|[-.:/]\d)"
)
# "224 4966 Bond St", "3747 3911 fourth avenue": a house number, then a street name
_STREET_AFTER_RE = re.compile(
    r"[ \t]+(?:[A-Z][a-z]|(?i:[^\W\d_]+(?:[ \t]+[^\W\d_]+){0,2}[ \t]+"
    r"(?:street|st|avenue|ave|road|rd|boulevard|blvd|lane|ln|drive|dr|way|court|ct|place|pl|square|sq)\b))"
)
_DECIMAL_RE = re.compile(r"\d+\.\d+")  # "1706.03762" (an arXiv id), "3.14159265": two groups joined by a dot
_RANGE_RE = re.compile(r"[1-9]\d{0,4}[ \t]?[-–][ \t]?\d{1,5}")  # "1200-1000", "pages 120-135" (not "555-0134")
_US_LOCAL_RE = re.compile(r"[2-9]\d{2}-\d{4}")
# "/" is not among them: it separates phone numbers ("0171 2345678 / 0171 8765432")
_OPERATOR_AFTER_RE = re.compile(r"[ \t]*[=+*×÷]")
_OPERATOR_BEFORE_RE = re.compile(r"[=+*×÷][ \t]*$")
_YEAR_RANGE_RE = re.compile(r"(?:19|20)\d\d\s?[-–]\s?(?:19|20)\d\d")
_PARTIAL_IP_RE = re.compile(r"\d{1,3}(?:\.\d{1,3}){1,3}")
_REPEAT_RE = re.compile(r"(\d)\1{7}")
_SSN_SHAPE_RE = re.compile(r"\d{3}-\d{2}-\d{4}")
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
    iban = candidate.replace(" ", "").upper()
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


def ssn_valid(area: str, group: str, serial: str) -> bool:
    """US Social Security number rules: no area 000, 666 or 900-999, no group 00, no serial 0000."""
    return area not in ("000", "666") and area[0] != "9" and group != "00" and serial != "0000"


def _ssn(m: re.Match) -> bool:
    return ssn_valid(m["area"], m["group"], m["serial"])


def _iban_end(m: re.Match) -> int | None:
    """End of the longest valid IBAN the candidate starts with: a candidate may run on into the next words
    ("DE89 3704 0044 0532 0130 00 is mine"), so trailing space-separated groups are dropped until one validates."""
    text = m.group()
    while True:
        if iban_valid(text):
            return m.start() + len(text)
        if " " not in text:
            return None
        text = text.rsplit(" ", 1)[0]


def _in_calculation(m: re.Match) -> bool:
    """Digits inside a calculator annotation (`<<23786-17509=6277>>`) or next to an operator (`1200-1000 = 200`)."""
    line_start = m.string.rfind("\n", 0, m.start()) + 1
    before = m.string[line_start : m.start()]
    if before.rfind("<<") > before.rfind(">>"):
        return True
    return bool(_OPERATOR_AFTER_RE.match(m.string, m.end()) or _OPERATOR_BEFORE_RE.search(before))


def _counting(number: str, groups: list[str]) -> bool:
    """Three or more equal-length, increasing numbers separated by spaces ("10 11 12 13", "11 13 17 19 23") are a
    sequence, not a phone number; with hyphens or dots ("28-64-66-98") they are written as one."""
    numbers = [int(g) for g in groups]
    spaced = not re.search(r"[.-]", number)
    return spaced and len(groups) >= 3 and len({len(g) for g in groups}) == 1 and numbers == sorted(set(numbers))


def _phone(m: re.Match) -> bool:
    number = re.split(r"[ \t]?(?:x|ext\.?)[ \t]?(?=\d)", m.group())[0]
    digits = re.sub(r"\D", "", number)
    if not 7 <= len(digits) <= 15 or _SSN_SHAPE_RE.fullmatch(number) or _DATE_RE.fullmatch(number):
        return False
    groups = re.findall(r"\d+", number)
    if _YEAR_RANGE_RE.fullmatch(number) or _PARTIAL_IP_RE.fullmatch(number) or _counting(number, groups):
        return False
    if (_RANGE_RE.fullmatch(number) and not _US_LOCAL_RE.fullmatch(number)) or _DECIMAL_RE.fullmatch(number):
        return False
    if _in_calculation(m):
        return False
    # Two space-separated groups followed by a street name are a house number and a street ("224 4966 Bond St").
    house_number = len(groups) == 2 and re.fullmatch(r"[1-9]\d*[ \t]\d+", number)
    return not (house_number and _STREET_AFTER_RE.match(m.string, m.end()))


def _any(m: re.Match) -> bool:
    return True


def _whole(valid: Callable[[re.Match], bool]) -> Callable[[re.Match], int | None]:
    """A yes/no validator as a span-end validator: the whole match or nothing."""
    return lambda m: m.end() if valid(m) else None


# Per type: (candidate regex, validator giving the end of the PII span in the candidate, or None to reject it).
DETECTORS: dict[str, list[tuple[re.Pattern, Callable[[re.Match], int | None]]]] = {
    "EMAIL": [(EMAIL_RE, _whole(_any))],
    "IP": [(IPV4_RE, _whole(_public_ip)), (IPV6_RE, _whole(_public_ip))],
    "CN_ID": [(CN_ID_RE, _whole(lambda m: cn_id_valid(m.group())))],
    "CREDIT_CARD": [(CARD_RE, _whole(_card))],
    "IBAN": [(IBAN_RE, _iban_end)],
    "SSN": [(SSN_RE, _whole(_ssn))],
    "PHONE": [(PHONE_RE, _whole(_phone))],
}


def find_pii(text: str, types: tuple[str, ...] | list[str] = PII_TYPES) -> list[tuple[int, int, str]]:
    """Non-overlapping (start, end, type) spans, sorted by start; earlier types win overlaps."""
    taken: list[tuple[int, int, str]] = []
    for pii_type in PII_TYPES:
        if pii_type not in types:
            continue
        for pattern, span_end in DETECTORS[pii_type]:
            for m in pattern.finditer(text):
                end = span_end(m)
                start = m.start()
                if end is not None and all(end <= s or start >= e for s, e, _ in taken):
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
    config_model = PIIConfig

    def __init__(self, config: PIIConfig):
        super().__init__()
        self.types = tuple(config.types)

    def filter(self, doc: Document) -> FilterOutcome:
        doc.text, doc.pii_redactions = redact(doc.text, self.types)
        return True
