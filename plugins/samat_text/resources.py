"""TextAttack's offline resources as explicit settings, with labelled embedded fallbacks.

Each resource is set by a string:

* ``stopwords``: ``download`` (NLTK's list, fetched into the cache), a path (an NLTK data
  directory holding ``corpora/stopwords/english``, or that one-word-per-line file), or
  ``fallback`` (the same English list, shipped in this package).
* ``embedding``: ``download`` (TextAttack's counter-fitted ``paragramcf``), a ``paragramcf``
  directory, or ``fallback`` (the attacked model's own input embeddings, see
  :func:`fallback_embedding`).
* ``hownet``: ``download`` (``word_candidates_sense.pkl``), a path to that pickle, or
  ``fallback`` (a candidate bank built from the embedding, see :func:`fallback_hownet_bank`).
* ``pos_tagger``: a flair model name or path (``upos-fast`` as TextAttack), or ``fallback`` (a
  rule/lexicon tagger, see :func:`fallback_pos`).
"""

from __future__ import annotations

import os
import pickle
import tempfile
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

from samat.errors import MissingDataError

PACKAGE_DATA = Path(__file__).with_name("resources_data")
EMBEDDING_KEY = "textattack_counterfitted_GLOVE_embedding"
"""The ``GLOBAL_OBJECTS`` slot TextAttack's counter-fitted embedding lives in."""
EMBEDDING_S3 = "word_embeddings/paragramcf"
HOWNET_S3 = "transformations/hownet/word_candidates_sense.pkl"
EMBEDDING_FILES = ("paragram.npy", "wordlist.pickle", "nn.npy", "mse_dist.p", "cos_sim.p")
FALLBACK_MIN_COS = 0.4
"""Cosine similarity the fallback treats as "synonym": the HowNet fallback's threshold, and the
cosine that IGA's ``max_mse_dist=0.5`` admits in the (scaled) fallback embedding."""
FALLBACK_SCALE = (0.5 / (2 - 2 * FALLBACK_MIN_COS)) ** 0.5
FLAIR_SLOT = "upos-fast"
"""The tag type TextAttack asks flair for (its tagger cache key)."""

FALLBACK_LABELS = {
    "stopwords": "fallback: NLTK's English stopword list shipped with samat_text",
    "embedding": f"fallback: the attacked model's input embeddings (whole-word vocabulary, "
                 f"scaled so that MSE 0.5 = cosine {FALLBACK_MIN_COS}; NOT the counter-fitted "
                 "paragramcf embedding: antonyms can be neighbours)",
    "hownet": f"fallback: nearest neighbours in the model's input embeddings (cosine >= "
              f"{FALLBACK_MIN_COS}, top 8), under every POS (NOT the HowNet sememe bank)",
    "pos_tagger": "fallback: samat_text's rule/lexicon tagger (NOT flair upos-fast)",
}
WHERE = {
    "stopwords": "an NLTK data directory holding corpora/stopwords/english (e.g. from "
                 "`python -m nltk.downloader -d DIR stopwords`)",
    "embedding": "TextAttack's paragramcf directory (" + ", ".join(EMBEDDING_FILES) + ") from "
                 "https://textattack.s3.amazonaws.com/" + EMBEDDING_S3,
    "hownet": "word_candidates_sense.pkl from https://textattack.s3.amazonaws.com/" + HOWNET_S3,
    "pos_tagger": "a flair SequenceTagger file (e.g. flair/upos-english-fast's pytorch_model.bin)",
}


def missing(name: str, spec: str, why: str) -> MissingDataError:
    """One line: which resource, why it is unavailable, where to put it and the fallback."""
    return MissingDataError(
        f"{name}={spec}: {why}; set {name}=<path> to {WHERE[name]}, or {name}=fallback "
        f"(labelled as such in metrics.json)"
    )


@dataclass(frozen=True)
class ResourceSpec:
    """The four settings of one attack, checked for existence where they are paths."""

    stopwords: str = "download"
    embedding: str = "download"
    hownet: str = "download"
    pos_tagger: str = FLAIR_SLOT

    def __post_init__(self) -> None:
        for name in ("stopwords", "embedding", "hownet"):
            spec = getattr(self, name)
            if not isinstance(spec, str) or not spec:
                raise ValueError(f"{name} must be 'download', 'fallback' or a path, got {spec!r}")
            if spec not in ("download", "fallback") and not Path(spec).expanduser().exists():
                raise missing(name, spec, "no such file or directory")
        if self.embedding not in ("download", "fallback"):
            folder = Path(self.embedding).expanduser()
            absent = [f for f in EMBEDDING_FILES if not (folder / f).is_file()]
            if absent:
                raise missing("embedding", self.embedding, f"missing {', '.join(absent)}")
        if self.stopwords not in ("download", "fallback"):
            stopwords_file(Path(self.stopwords).expanduser())

    def describe(self) -> dict[str, str]:
        """What each resource is, fallbacks spelled out."""
        return {
            name: FALLBACK_LABELS[name] if spec == "fallback" else spec
            for name, spec in (("stopwords", self.stopwords), ("embedding", self.embedding),
                               ("hownet", self.hownet), ("pos_tagger", self.pos_tagger))
        }


def stopwords_file(path: Path) -> Path:
    """The ``english`` stopword file at ``path`` (itself, or inside an NLTK data layout)."""
    for candidate in (path, path / "english", path / "corpora" / "stopwords" / "english"):
        if candidate.is_file():
            return candidate
    raise missing("stopwords", str(path), "no corpora/stopwords/english there")


def nltk_root(cache: Path) -> Path:
    """An NLTK data directory in the cache that holds at least the shipped stopword list
    (``import textattack`` reads NLTK's English stopwords)."""
    root = cache / "nltk_data"
    english = root / "corpora" / "stopwords" / "english"
    if not english.is_file():
        english.parent.mkdir(parents=True, exist_ok=True)
        english.write_text((PACKAGE_DATA / "stopwords_english.txt").read_text())
    return root


def load_stopwords(spec: str, cache: Path) -> set[str]:
    """The stopword set ``spec`` names (downloading NLTK's into the cache if asked)."""
    if spec == "fallback":
        return _read_words(PACKAGE_DATA / "stopwords_english.txt")
    if spec != "download":
        return _read_words(stopwords_file(Path(spec).expanduser()))
    target = cache / "nltk_download"
    english = target / "corpora" / "stopwords" / "english"
    if not english.is_file():
        import nltk

        try:
            ok = nltk.download("stopwords", download_dir=str(target), quiet=True,
                               raise_on_error=True)
        except Exception as exc:  # nltk raises whatever its HTTP layer raised
            raise missing("stopwords", spec, f"download failed ({type(exc).__name__})") from None
        if not ok or not english.is_file():
            raise missing("stopwords", spec, "download failed")
    return _read_words(english)


def _read_words(path: Path) -> set[str]:
    return {line.strip() for line in path.read_text().splitlines() if line.strip()}


@contextmanager
def resolved_downloads(ta: ModuleType, spec: ResourceSpec, hownet_file: Path | None) -> Iterator[
        None]:
    """Within the block, TextAttack's ``download_from_s3`` serves the configured paths, and
    downloads (``download``) failing offline raise one-line :class:`MissingDataError`."""
    utils = ta.shared.utils
    original = utils.download_from_s3

    def resolve(name: str, skip_if_cached: bool = True) -> str:
        if name == EMBEDDING_S3:
            resource, value = "embedding", spec.embedding
        elif name == HOWNET_S3:
            resource, value = "hownet", spec.hownet
            if value == "fallback" and hownet_file is not None:
                return str(hownet_file)
        else:
            raise MissingDataError(f"TextAttack asked for an unexpected resource '{name}'")
        if value != "download":
            return str(Path(value).expanduser())
        try:
            return original(name, skip_if_cached)
        except Exception as exc:  # TextAttack raises a bare Exception on HTTP errors
            raise missing(resource, value, f"download failed ({type(exc).__name__})") from None

    utils.download_from_s3 = resolve
    try:
        yield
    finally:
        utils.download_from_s3 = original


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


def write_bank(bank: dict[str, Any], directory: Path) -> Path:
    """Pickle a candidate bank (to a fresh file) where ``WordSwapHowNet`` can open it."""
    directory.mkdir(parents=True, exist_ok=True)
    handle, name = tempfile.mkstemp(prefix="fallback_hownet_", suffix=".pkl", dir=directory)
    with os.fdopen(handle, "wb") as stream:
        pickle.dump(bank, stream)
    return Path(name)


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


def load_tagger(spec: str) -> Any:
    """The flair ``SequenceTagger`` ``spec`` names (a model name or file); one-line
    :class:`MissingDataError` if it cannot be loaded."""
    from flair.models import SequenceTagger

    try:
        return SequenceTagger.load(spec)
    except Exception as exc:  # flair raises many kinds when a model cannot be fetched
        raise missing("pos_tagger", spec, f"cannot load ({type(exc).__name__})") from None


@contextmanager
def pos_source(ta: ModuleType, tagger: Any | None) -> Iterator[None]:
    """Within the block, ``AttackedText.pos_of_word_index`` answers from the flair ``tagger``,
    or from :func:`fallback_pos` when ``tagger`` is ``None``."""
    attacked_text = ta.shared.AttackedText
    original = attacked_text.pos_of_word_index
    taggers = ta.shared.utils.strings._flair_taggers
    previous = taggers.get(FLAIR_SLOT)
    if tagger is None:
        attacked_text.pos_of_word_index = lambda self, index: fallback_pos(self.words[index])
    else:
        taggers[FLAIR_SLOT] = tagger
    try:
        yield
    finally:
        attacked_text.pos_of_word_index = original
        if previous is None:
            taggers.pop(FLAIR_SLOT, None)
        else:
            taggers[FLAIR_SLOT] = previous
