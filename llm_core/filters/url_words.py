"""Default word lists of the URL filter, in the spirit of FineWeb's (datatrove's banned_words / soft_banned_words /
banned_subwords assets): a short curated list of unambiguous adult terms, matched against the words of a URL
(split on non-alphanumerics) or, for subwords, anywhere inside the URL with punctuation removed."""

BANNED_WORDS: tuple[str, ...] = (
    "porn", "porno", "pornhub", "xxx", "xvideos", "xhamster", "hentai", "milf", "bdsm", "fetish", "nude", "nudes",
    "naked", "camgirl", "camgirls", "escort", "escorts", "blowjob", "handjob", "cumshot", "gangbang", "threesome",
    "orgy", "anal", "dildo", "vibrator", "erotic", "erotica", "stripper", "hooker", "pussy", "cock", "tits",
    "boobs", "sexcam", "sexchat", "webcamsex", "redtube", "youporn", "brazzers", "onlyfans",
)

SOFT_BANNED_WORDS: tuple[str, ...] = (
    "sex", "sexy", "adult", "hot", "girls", "babes", "dating", "cam", "cams", "live", "teen", "teens", "amateur",
    "mature", "lingerie", "bikini", "kinky", "singles", "hookup", "strip", "massage", "gay", "lesbian",
)

BANNED_SUBWORDS: tuple[str, ...] = (
    "pornhub", "xvideos", "xhamster", "xnxx", "youporn", "redtube", "brazzers", "livejasmin", "chaturbate",
    "sexcam", "freeporn", "hardcoresex", "camgirl",
)
