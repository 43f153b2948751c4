"""Labelled stand-ins for TextAttack's resources (``stopwords``, ``embedding``, ``hownet``,
``pos_tagger`` set to ``fallback``): built from what samat_text ships or from the attacked model,
for machines without internet. Each is labelled in ``metrics.json`` (:data:`FALLBACK_LABELS`);
results obtained with them are not the paper's attacks.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from types import ModuleType
from typing import Any

STOPWORDS_FILE = Path(__file__).with_name("resources_data") / "stopwords_english.txt"
"""NLTK's English stopword list, shipped with samat_text."""
FALLBACK_MIN_COS = 0.4
"""Cosine similarity the fallback treats as "synonym": the HowNet fallback's threshold, and the
cosine that IGA's ``max_mse_dist=0.5`` admits in the (scaled) fallback embedding."""
FALLBACK_SCALE = (0.5 / (2 - 2 * FALLBACK_MIN_COS)) ** 0.5
FALLBACK_LABELS = {
    "stopwords": "fallback: NLTK's English stopword list shipped with samat_text",
    "embedding": f"fallback: the attacked model's input embeddings (whole-word vocabulary, "
                 f"scaled so that MSE 0.5 = cosine {FALLBACK_MIN_COS}; NOT the counter-fitted "
                 "paragramcf embedding: antonyms can be neighbours)",
    "hownet": f"fallback: nearest neighbours in the model's input embeddings (cosine >= "
              f"{FALLBACK_MIN_COS}, top 8), under every POS (NOT the HowNet sememe bank)",
    "pos_tagger": "fallback: samat_text's rule/lexicon tagger (NOT flair upos-fast)",
}
"""How ``describe()`` names each fallback."""


def whole_word_vocabulary(tokenizer: Any) -> dict[str, int]:
    """Tokenizer vocabulary entries that are whole lowercase alphabetic words (no ``##``
    pieces, no special tokens), word -> token id."""
    special = set(tokenizer.all_special_tokens)
    return {
        token: index for token, index in sorted(tokenizer.get_vocab().items(), key=lambda kv: kv[1])
        if token.isascii() and token.isalpha() and token.islower() and len(token) > 1
        and token not in special
    }


def fallback_embedding(ta: ModuleType, model: Any, tokenizer: Any) -> Any:
    """A ``textattack.shared.WordEmbedding`` of the model's input embedding rows for whole
    words, normalised to length :data:`FALLBACK_SCALE`, so that TextAttack's MSE distance is
    ``FALLBACK_SCALE**2 * (2 - 2 cos)`` and IGA's ``max_mse_dist=0.5`` admits cosine >=
    :data:`FALLBACK_MIN_COS` (input embeddings are far less tight than counter-fitted vectors);
    nearest neighbours (by cosine) computed on demand."""
    import torch

    vocabulary = whole_word_vocabulary(tokenizer)
    words = list(vocabulary)
    weight = model.get_input_embeddings().weight.detach()
    ids = torch.tensor([vocabulary[w] for w in words], device=weight.device)
    unit = torch.nn.functional.normalize(weight[ids].float(), dim=1).cpu()

    class ModelInputEmbedding(ta.shared.WordEmbedding):
        """TextAttack's on-demand neighbour search is broken (``topk`` tuple); this one works."""

        def nearest_neighbours(self, index: int | str, topn: int) -> list[int]:
            if isinstance(index, str):
                index = self._word2index[index]
            if index not in self._nn_cache:
                similarity = unit @ unit[index]
                similarity[index] = -2.0
                k = min(topn, len(unit) - 1)
                self._nn_cache[index] = similarity.topk(k).indices.tolist()
            return self._nn_cache[index][:topn]

    return ModelInputEmbedding((FALLBACK_SCALE * unit).numpy(),
                               {w: i for i, w in enumerate(words)}, dict(enumerate(words)), None)


def fallback_hownet_bank(embedding: Any, words: Iterable[str], k: int = 8,
                         min_cos: float = FALLBACK_MIN_COS) -> dict[str, dict[str, list[str]]]:
    """HowNet-like ``{word: {pos: candidates}}`` for ``words`` and their candidates (a swapped
    word can be swapped again): each word's ``k`` nearest neighbours in ``embedding`` with
    cosine >= ``min_cos``, listed under every content POS."""
    bank: dict[str, dict[str, list[str]]] = {}
    pending = sorted({w.lower() for w in words})
    for depth in range(2):
        found: set[str] = set()
        for word in pending:
            try:
                index = embedding.word2index(word)
            except KeyError:
                continue
            neighbours = [embedding.index2word(int(n))
                          for n in embedding.nearest_neighbours(index, k)]
            candidates = [n for n in neighbours if embedding.get_cos_sim(word, n) >= min_cos]
            if candidates:
                bank[word] = {pos: list(candidates) for pos in ("adj", "noun", "adv", "verb")}
                found.update(candidates)
        pending = sorted(found - set(bank)) if depth == 0 else []
    return bank


_CLOSED = {
    "DET": "a an the this that these those each every some any no another either neither all "
           "both",
    "PRON": "i me my mine myself we us our ours you your yours he him his she her hers it its "
            "they them their theirs who whom whose what which itself themselves yourself",
    "ADP": "of in on at by for with about against between into through during before after "
           "above below to from up down over under around without within among across like",
    "CCONJ": "and or but nor yet so",
    "SCONJ": "if because as until while than though although whether since unless once",
    "AUX": "is are was were be been being am has have had do does did will would shall should "
           "can could may might must",
    "PART": "not n't 's to",
    "ADV": "very really too quite just only also even still never ever always often rather "
           "almost here there now then again well much more most less least so",
    "ADJ": "good bad great best worst better worse fine poor awful terrible wonderful funny dull "
           "boring smart silly clever lovely nice new old long short big small little real "
           "true false sweet bitter sharp flat warm cold hot rich thin thick slow fast loud "
           "quiet dark bright fresh stale weak strong cheap bland brilliant superb",
}
_LEXICON = {word: tag for tag, words in _CLOSED.items() for word in words.split()}
_SUFFIXES = (
    ("ly", "ADV"), ("ous", "ADJ"), ("ful", "ADJ"), ("ive", "ADJ"), ("able", "ADJ"),
    ("ible", "ADJ"), ("less", "ADJ"), ("ish", "ADJ"), ("ic", "ADJ"), ("al", "ADJ"),
    ("est", "ADJ"), ("ing", "VERB"), ("ed", "VERB"), ("ize", "VERB"), ("ise", "VERB"),
    ("ate", "VERB"), ("ify", "VERB"),
)


def fallback_pos(word: str) -> str:
    """Universal POS tag of a word out of context: closed-class lexicon, then suffixes,
    else NOUN (numbers NUM, non-words PUNCT)."""
    lower = word.lower()
    if lower in _LEXICON:
        return _LEXICON[lower]
    if lower.isdigit():
        return "NUM"
    if not any(c.isalpha() for c in lower):
        return "PUNCT"
    for suffix, tag in _SUFFIXES:
        if lower.endswith(suffix) and len(lower) > len(suffix) + 2:
            return tag
    return "NOUN"
