"""Generated conversation and preference sets, deterministic for a seed.

- Identity: "who are you / who made you" in English and Chinese, answered from config (name, creator), so the model
  knows what it is instead of claiming to be whatever its web text said.
- Refusals: questions about made-up people, places and things, answered with "I don't know", so the model learns
  to say so instead of inventing facts.
- Arithmetic: small-number addition, the verifiable task GRPO can improve on a tiny CPU model. A fixed quarter of
  the operand pairs (`is_heldout_sum`) is never generated, so the eval stage can ask sums no training set holds.
- Keyword sentences: "write a sentence with the word X"; as preference pairs (answer uses X vs another word), a
  preference a tiny reward model can learn, which tests the reward model and PPO end to end.
"""

from __future__ import annotations

import random

from llm_core.chat.hashing import unit_hash
from llm_core.chat.loaders import Pair, Sample, msg

IDENTITY_QUESTIONS_EN = [
    "Who are you?",
    "What is your name?",
    "Who made you?",
    "Who created you?",
    "What are you?",
    "Tell me about yourself.",
    "Are you ChatGPT?",
    "Which company trained you?",
    "Hi! Can you introduce yourself?",
    "What should I call you?",
    "Are you a robot?",
    "Are you GPT-4?",
    "Are you Gemini?",
    "Who built this chatbot?",
    "Who is responsible for you?",
    "Please tell me your name.",
    "Hello! Who are you?",
    "Which organisation made you?",
    "Who wrote your code?",
    "What can you tell me about yourself?",
    "Are you human?",
    "Who are your makers?",
    "Good morning, who am I speaking with?",
    "What is this assistant called?",
]
IDENTITY_QUESTIONS_ZH = [
    "你是谁？",
    "你叫什么名字？",
    "谁创造了你？",
    "你是由谁训练的？",
    "请介绍一下你自己。",
    "你是ChatGPT吗？",
]
IDENTITY_ANSWERS_EN = [
    "I am {name}, a language model trained by {creator}.",
    "My name is {name}. I was built by {creator}.",
    "I'm {name}, an AI assistant created by {creator}. How can I help?",
    "I am {name}, an assistant trained by {creator}. I can answer questions and help with writing.",
]
IDENTITY_ANSWERS_ZH = [
    "我是{name}，一个由{creator}训练的语言模型。",
    "我叫{name}，是{creator}开发的人工智能助手。",
    "我是{name}，由{creator}创建。有什么可以帮你的吗？",
]

SYLLABLES = ["zor", "vath", "quel", "lin", "mar", "dok", "tessa", "bri", "kun", "yel", "oth", "ran", "pim", "sul"]
MADE_UP_QUESTIONS = [
    ("Who is {title} {name}?", "person"),
    ("What did {title} {name} discover?", "person"),
    ("When was {title} {name} born?", "person"),
    ("Where is the town of {place}?", "place"),
    ("What is the population of {place}?", "place"),
    ("How does the {name} theorem work?", "thing"),
    ("What is {name} syndrome?", "thing"),
    ("Summarise the plot of the novel \"The {name} Letters\".", "thing"),
    ("Where did {title} {name} grow up?", "person"),
    ("What prizes did {title} {name} win?", "person"),
    ("Which river flows through {place}?", "place"),
    ("What happened at the battle of {place}?", "place"),
    ("Describe the {name} algorithm.", "thing"),
    ("Who wrote the song \"{name}\"?", "thing"),
]
TITLES = ["Dr.", "Professor", "Sir", "General", "Queen"]
REFUSALS = [
    "I don't know anything about {entity}. I can't find it in what I know, so I'd rather not guess.",
    "I'm not aware of {entity}. It may not exist, or I simply don't have information about it.",
    "I don't know. I have no reliable information about {entity}, and I don't want to make something up.",
]

KEYWORDS = [
    "apple", "river", "garden", "music", "winter", "bread", "horse", "window", "candle", "forest",
    "coffee", "bridge", "letter", "mountain", "pencil", "ocean", "doctor", "flower", "train", "cloud",
]
DISTRACTORS = [  # about as long as the keywords, so the longer answer is no hint
    "table", "paper", "blanket", "teacher", "kitchen", "pocket", "mirror", "bottle", "chair", "button",
]
KEYWORD_PROMPTS = [
    "Write a sentence with the word \"{kw}\".",
    "Use the word \"{kw}\" in a sentence.",
    "Give me one sentence that contains \"{kw}\".",
]
SENTENCES = [
    "I saw a {w} near the old house.",
    "The {w} was bigger than I expected.",
    "We talked about the {w} all evening.",
    "She painted a {w} on the wall.",
    "There is a {w} in every story he tells.",
]


def identity_conversations(name: str, creator: str, count: int, seed: int, chinese_share: float = 0.3) -> list[Sample]:
    rng = random.Random(seed)
    out = []
    for _ in range(count):
        if rng.random() < chinese_share:
            q, a, source = rng.choice(IDENTITY_QUESTIONS_ZH), rng.choice(IDENTITY_ANSWERS_ZH), "identity_zh"
        else:
            q, a, source = rng.choice(IDENTITY_QUESTIONS_EN), rng.choice(IDENTITY_ANSWERS_EN), "identity_en"
        out.append(Sample([msg("user", q), msg("assistant", a.format(name=name, creator=creator))], source))
    return out


def made_up_name(rng: random.Random, syllables: int = 2) -> str:
    return "".join(rng.choice(SYLLABLES) for _ in range(syllables)).capitalize()


def refusal_conversations(count: int, seed: int) -> list[Sample]:
    rng = random.Random(seed)
    out = []
    for _ in range(count):
        template, kind = rng.choice(MADE_UP_QUESTIONS)
        name, place = f"{made_up_name(rng)} {made_up_name(rng, 3)}", made_up_name(rng, 3)
        title = rng.choice(TITLES)
        question = template.format(title=title, name=name, place=place)
        entity = {"person": f"{title} {name}", "place": place, "thing": name}[kind]
        answer = rng.choice(REFUSALS).format(entity=entity)
        out.append(Sample([msg("user", question), msg("assistant", answer)], "refusals"))
    return out


HELDOUT_SUM_FRACTION = 0.25


def is_heldout_sum(a: int, b: int) -> bool:
    """Operand pairs kept out of every generated training set (a stable hash, the same in every run)."""
    return unit_hash([a, b], "heldout-sum:") < HELDOUT_SUM_FRACTION


def sum_question(a: int, b: int) -> str:
    return f"What is {a} + {b}?"


def addition_problem(rng: random.Random, max_operand: int, hold_out: bool = True) -> tuple[str, int]:
    """A sum of two operands in 0..max_operand; with `hold_out`, never a held-out pair."""
    while True:
        a, b = rng.randint(0, max_operand), rng.randint(0, max_operand)
        if not (hold_out and is_heldout_sum(a, b)):
            return sum_question(a, b), a + b


def heldout_sums(max_operand: int) -> list[tuple[int, int]]:
    return [(a, b) for a in range(max_operand + 1) for b in range(max_operand + 1) if is_heldout_sum(a, b)]


HEDGES = ["I am not sure.", "I can't work that out.", "Hard to say."]


def worked_sum(a: int, b: int) -> str:
    """a + b worked out one unit at a time, (a+1) + (b-1) until nothing is left: every step is a successor and a
    predecessor of small numbers, which a tiny model can apply to operand pairs it never saw, where a memorised
    table of sums cannot."""
    steps = [f"{a + i}+{b - i}" for i in range(1, b + 1)]
    return " = ".join([*steps, str(a + b)]) + f" #### {a + b}" if steps else f"#### {a}"


def arithmetic_conversations(
    count: int, seed: int, max_operand: int = 20, hedge_share: float = 0.0, worked: bool = False,
    hold_out: bool = True,
) -> list[Sample]:
    """Addition questions with the answer as `#### N` (the GSM8K answer convention, checked by the same reward),
    after the worked steps when `worked`; `hedge_share` of them are answered with a hedge instead, the habit of not
    committing to an answer that a verifiable reward can train away (GRPO) while imitation cannot. With `hold_out`
    (the default) the eval stage's held-out operand pairs are never asked."""
    rng = random.Random(seed)
    out = []
    for _ in range(count):
        question, answer = addition_problem(rng, max_operand, hold_out)
        a, b = (int(n) for n in question.removeprefix("What is ").removesuffix("?").split(" + "))
        if rng.random() < hedge_share:
            reply = rng.choice(HEDGES)
        else:
            reply = worked_sum(a, b) if worked else f"#### {answer}"
        out.append(Sample([msg("user", question), msg("assistant", reply)], "arithmetic"))
    return out


def keyword_sentence(rng: random.Random, word: str) -> str:
    return rng.choice(SENTENCES).format(w=word)


def keyword_conversations(count: int, seed: int, keyword_share: float = 0.5) -> list[Sample]:
    """Sentence requests answered with the keyword (`keyword_share` of the time) or with another word: the behaviour
    an SFT model starts from and RLHF should improve."""
    rng = random.Random(seed)
    out = []
    for _ in range(count):
        kw = rng.choice(KEYWORDS)
        word = kw if rng.random() < keyword_share else rng.choice(DISTRACTORS)
        prompt = rng.choice(KEYWORD_PROMPTS).format(kw=kw)
        out.append(Sample([msg("user", prompt), msg("assistant", keyword_sentence(rng, word))], "keyword"))
    return out


def requested_keyword(prompt: str) -> str | None:
    """The requested keyword of a keyword prompt, or None."""
    start = prompt.find('"')
    end = prompt.find('"', start + 1)
    return prompt[start + 1:end] if start >= 0 and end > start else None


def keyword_pairs(count: int, seed: int) -> list[Pair]:
    """Preference pairs: the chosen sentence uses the requested keyword, the rejected one another word."""
    rng = random.Random(seed)
    out = []
    for _ in range(count):
        kw = rng.choice(KEYWORDS)
        prompt = [msg("user", rng.choice(KEYWORD_PROMPTS).format(kw=kw))]
        template = rng.choice(SENTENCES)
        other = rng.choice(DISTRACTORS)
        out.append(Pair(prompt, template.format(w=kw), template.format(w=other), "keyword"))
    return out
