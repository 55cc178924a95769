"""Language ID with fastText's lid.176 model: keep documents whose top language is a configured one, with a score
at or above the threshold, and record `language` / `language_score` on them.

Newlines are folded to spaces before prediction (fastText predicts one line). Reasons: `lang:<code>` when the top
language is not wanted, `lang:<code><0.65` when it is wanted but the score is below the threshold.
The model is loaded once per process (it is not picklable, and shards run in worker processes).
"""

from __future__ import annotations

import functools

from pydantic import Field

from llm_core.filters.base import DocFilter, Document, FilterOutcome, FilterSettings
from llm_core.data_files import resolve_data_path

_LABEL = "__label__"


class LanguageFilterConfig(FilterSettings):
    model_path: str = Field("data/langid/lid.176.ftz", description="fastText language-ID model")
    languages: list[str] = Field(default_factory=lambda: ["en", "zh"], min_length=1)
    min_score: float = Field(0.65, ge=0.0, le=1.0)


@functools.lru_cache(maxsize=4)
def load_model(path: str):
    """A fastText model, once per process."""
    import fasttext

    fasttext.FastText.eprint = lambda *args, **kwargs: None  # silence the load-time deprecation notice
    return fasttext.load_model(str(resolve_data_path(path)))


def predict_language(model, text: str) -> tuple[str, float]:
    """(ISO code, probability) of the top language of `text`."""
    labels, scores = model.predict(" ".join(text.split()), k=1)
    if not labels:
        return "unknown", 0.0
    return labels[0].removeprefix(_LABEL), min(1.0, float(scores[0]))


class LanguageFilter(DocFilter):
    name = "language"
    reason_prefix = "lang"
    config_model = LanguageFilterConfig

    def __init__(self, config: LanguageFilterConfig):
        super().__init__()
        self.config = config
        self.languages = frozenset(config.languages)
        self.model = load_model(config.model_path)

    @classmethod
    def data_paths(cls, settings: LanguageFilterConfig) -> list[str]:
        return [settings.model_path]

    def filter(self, doc: Document) -> FilterOutcome:
        language, score = predict_language(self.model, doc.text)
        doc.language, doc.language_score = language, round(score, 4)
        if language not in self.languages:
            return False, language
        if score < self.config.min_score:
            return False, f"{language}<{self.config.min_score:g}"
        return True
