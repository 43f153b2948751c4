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
* ``pos_tagger``: one of flair's own model names (:data:`FLAIR_MODELS`, ``upos-fast`` as
  TextAttack), ``fallback`` (a rule/lexicon tagger, see :func:`fallback_pos`), or a model file
  with ``trust_pickle=true``.

Untrusted files: TextAttack unpickles the embedding and HowNet files itself, and a pickle can
run any code. samat never lets it: :func:`load_counterfitted` and :func:`load_hownet` read them
(downloaded or given) with ``np.load(allow_pickle=False)`` and :func:`samat.unpickle.load`
(allowlists :data:`WORDLIST_GLOBALS`, :data:`DISTANCE_GLOBALS`, :data:`HOWNET_GLOBALS`), check
their structure, and hand TextAttack an in-memory ``WordEmbedding`` and a bank samat pickled
itself. These files are then safe from any source, so none is also checked against the
SHA-256 of the upstream file (those files could not be fetched to record their hashes, and a
hash would refuse re-packaged copies). A flair model file is a full ``torch`` pickle that cannot
be read safely: only flair's hub models load without ``trust_pickle``, and always from the hub
cache (:func:`load_tagger`), never from a local file that happens to carry a model's name.
"""

from __future__ import annotations

import os
import pickle
import tempfile
from collections import defaultdict
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from numbers import Integral, Real
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

from samat import unpickle
from samat.errors import MissingDataError, SamatError

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
_FLAIR_REPOS = ("flair/upos-english-fast", "flair/upos-english", "flair/pos-english-fast",
                "flair/pos-english")
FLAIR_MODELS = {
    "upos-fast": "flair/upos-english-fast", "upos": "flair/upos-english",
    "pos-fast": "flair/pos-english-fast", "pos": "flair/pos-english",
    **{repo: repo for repo in _FLAIR_REPOS},
}
"""``pos_tagger`` names that load without ``trust_pickle``: flair's short names (as in
``SequenceTagger._fetch_model``) and their Hugging Face hub repositories."""

_NUMPY_SCALARS = frozenset({(m, "scalar") for m in ("numpy.core.multiarray",
                                                    "numpy._core.multiarray")}
                           | {("numpy", "dtype")})
WORDLIST_GLOBALS = _NUMPY_SCALARS
"""What ``wordlist.pickle`` (``{word: index}``) may name: numpy integer scalars for indices."""
DISTANCE_GLOBALS = frozenset({("collections", "defaultdict"), ("builtins", "dict")}
                             | _NUMPY_SCALARS)
"""What ``mse_dist.p``/``cos_sim.p`` (``defaultdict(dict)`` of ``{i: {j: distance}}``) may
name."""
HOWNET_GLOBALS: frozenset[tuple[str, str]] = frozenset()
"""``word_candidates_sense.pkl`` is ``{word: {pos: [words]}}``: dicts, lists and str only."""

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
    "pos_tagger": "a flair SequenceTagger file (e.g. flair/upos-english-fast's pytorch_model.bin) "
                  "with trust_pickle=true (loading it runs code from it)",
}


def _fix(name: str) -> str:
    return (f"set {name}=<path> to {WHERE[name]}, or {name}=fallback (labelled as such in "
            "metrics.json)")


def missing(name: str, spec: str, why: str) -> MissingDataError:
    """One line: which resource, why it is unavailable, where to put it and the fallback."""
    return MissingDataError(f"{name}={spec}: {why}; {_fix(name)}")


def not_data(name: str, spec: str, path: Path, why: str) -> MissingDataError:
    """One line: the file of resource ``name`` is not what TextAttack's file holds."""
    return MissingDataError(f"{name}={spec}: {path}: {why}; {_hint(name, spec, path)}")


def _hint(name: str, spec: str, path: Path) -> str:
    again = f"delete {path} to download it again, or " if spec == "download" else ""
    return again + _fix(name)


@dataclass(frozen=True)
class ResourceSpec:
    """The four settings of one attack, checked for existence where they are paths, and
    ``trust_pickle``: whether ``pos_tagger`` may be a model file (which runs code from it)."""

    stopwords: str = "download"
    embedding: str = "download"
    hownet: str = "download"
    pos_tagger: str = FLAIR_SLOT
    trust_pickle: bool = False

    def __post_init__(self) -> None:
        if not isinstance(self.trust_pickle, bool):
            raise ValueError(f"trust_pickle must be true or false, got {self.trust_pickle!r}")
        check_tagger(self.pos_tagger, self.trust_pickle)
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


def fetch(ta: ModuleType, name: str) -> Path:
    """Where TextAttack's cache holds resource ``name`` (``embedding`` or ``hownet``),
    downloading it first if absent; one-line :class:`MissingDataError` if that fails."""
    s3 = {"embedding": EMBEDDING_S3, "hownet": HOWNET_S3}[name]
    try:
        return Path(ta.shared.utils.download_from_s3(s3))
    except Exception as exc:  # TextAttack raises a bare Exception on HTTP errors
        raise missing(name, "download", f"download failed ({type(exc).__name__})") from None


@contextmanager
def resolved_downloads(ta: ModuleType, served: Mapping[str, Path]) -> Iterator[None]:
    """Within the block, TextAttack's ``download_from_s3`` answers only with ``served``
    (S3 name -> a file samat wrote): it never reaches a file samat has not checked."""
    utils = ta.shared.utils
    original = utils.download_from_s3

    def resolve(name: str, skip_if_cached: bool = True) -> str:
        if name not in served:
            raise MissingDataError(f"TextAttack asked for resource '{name}', which samat did not "
                                   "load (it reads TextAttack's files itself, safely)")
        return str(served[name])

    utils.download_from_s3 = resolve
    try:
        yield
    finally:
        utils.download_from_s3 = original


def load_hownet(path: Path, spec: str) -> dict[str, dict[str, list[str]]]:
    """The ``{word: {pos: [candidates]}}`` bank in ``path`` (``word_candidates_sense.pkl``),
    read with no code run; one-line :class:`MissingDataError` if it holds anything else."""
    bank = unpickle.load(path, HOWNET_GLOBALS, what=f"hownet={spec}: {path}",
                         hint=_hint("hownet", spec, path))
    if not isinstance(bank, dict):
        raise not_data("hownet", spec, path, f"expected a dict, got {type(bank).__name__}")
    checked: dict[str, dict[str, list[str]]] = {}
    for word, senses in bank.items():
        if not isinstance(word, str) or not isinstance(senses, dict) or not all(
                isinstance(pos, str) and isinstance(words, (list, tuple))
                and all(isinstance(w, str) for w in words) for pos, words in senses.items()):
            raise not_data("hownet", spec, path, f"entry {word!r} is not {{pos: [words]}}")
        checked[word] = {pos: list(words) for pos, words in senses.items()}
    return checked


@dataclass(frozen=True)
class CounterFitted:
    """TextAttack's ``paragramcf`` files, read with no code run: what its
    ``WordEmbedding.counterfitted_GLOVE_embedding`` would have loaded."""

    matrix: np.ndarray
    """N x D float vectors (``paragram.npy``)."""
    word2index: dict[str, int]
    """``wordlist.pickle``."""
    nn: np.ndarray
    """N x K neighbour ids, column 0 the word itself (``nn.npy``)."""
    mse: defaultdict[int, dict[int, float]]
    """Precomputed distances (``mse_dist.p``), filled further by TextAttack."""
    cos: defaultdict[int, dict[int, float]]
    """Precomputed cosine similarities (``cos_sim.p``)."""

    def word_embedding(self, ta: ModuleType) -> Any:
        """A ``textattack.shared.WordEmbedding`` of these arrays, distance caches set."""
        index2word = {index: word for word, index in self.word2index.items()}
        embedding = ta.shared.WordEmbedding(self.matrix, self.word2index, index2word, self.nn)
        embedding._mse_dist_mat, embedding._cos_sim_mat = self.mse, self.cos
        return embedding


def load_counterfitted(folder: Path, spec: str) -> CounterFitted:
    """The ``paragramcf`` directory ``folder`` (:data:`EMBEDDING_FILES`), arrays loaded with
    ``allow_pickle=False`` and pickles with :func:`samat.unpickle.load`; shapes, types and
    indices checked, one-line :class:`MissingDataError` naming the file otherwise."""
    absent = [f for f in EMBEDDING_FILES if not (folder / f).is_file()]
    if absent:
        raise missing("embedding", spec, f"{folder}: missing {', '.join(absent)}")
    matrix = _array(folder / "paragram.npy", spec, "f", "N x D floats")
    n = len(matrix)
    nn = _array(folder / "nn.npy", spec, "iu", "N x K word indices")
    if len(nn) < n or (nn.size and (nn.min() < 0 or nn.max() >= n)):
        raise not_data("embedding", spec, folder / "nn.npy",
                       f"expected {n} rows of word indices in 0..{n - 1}")
    words = _pickled(folder / "wordlist.pickle", spec, WORDLIST_GLOBALS)
    if not isinstance(words, dict) or not all(
            isinstance(w, str) and _is_index(i, n) for w, i in words.items()):
        raise not_data("embedding", spec, folder / "wordlist.pickle",
                       f"expected a dict of words to indices in 0..{n - 1}")
    mse, cos = (_distances(folder / name, spec, n) for name in ("mse_dist.p", "cos_sim.p"))
    return CounterFitted(matrix, {w: int(i) for w, i in words.items()}, nn, mse, cos)


def _array(path: Path, spec: str, kinds: str, what: str) -> np.ndarray:
    """A 2-D numpy array of dtype kind in ``kinds`` from ``path``, never unpickling."""
    try:
        array = np.load(path, allow_pickle=False)
    except Exception as exc:  # ValueError for pickled/object data; a bad header raises anything
        raise not_data("embedding", spec, path, f"not a plain .npy array of {what} "
                       f"({type(exc).__name__}: {' '.join(str(exc).split())})") from None
    if not isinstance(array, np.ndarray) or array.ndim != 2 or not len(array) or (
            array.dtype.kind not in kinds):
        raise not_data("embedding", spec, path, f"expected {what}")
    return array


def _pickled(path: Path, spec: str, allowed: frozenset[tuple[str, str]]) -> Any:
    return unpickle.load(path, allowed, what=f"embedding={spec}: {path}",
                         hint=_hint("embedding", spec, path))


def _is_index(value: Any, n: int) -> bool:
    return isinstance(value, (Integral, np.integer)) and not isinstance(value, bool) and (
        0 <= value < n)


def _distances(path: Path, spec: str, n: int) -> defaultdict[int, dict[int, float]]:
    """``{i: {j: distance}}`` from ``path`` as the ``defaultdict(dict)`` TextAttack fills."""
    table = _pickled(path, spec, DISTANCE_GLOBALS)
    if not isinstance(table, dict) or not all(
            _is_index(i, n) and isinstance(row, dict) and all(
                _is_index(j, n) and isinstance(d, (Real, np.floating, np.integer))
                and not isinstance(d, bool) for j, d in row.items())
            for i, row in table.items()):
        raise not_data("embedding", spec, path,
                       f"expected {{i: {{j: distance}}}} with word indices in 0..{n - 1}")
    return defaultdict(dict, {int(i): {int(j): float(d) for j, d in row.items()}
                              for i, row in table.items()})


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


def write_bank(bank: dict[str, Any], directory: Path, prefix: str = "fallback_hownet_") -> Path:
    """Pickle a candidate bank (to a fresh file) where ``WordSwapHowNet`` can open it: the
    only pickle TextAttack reads is one samat wrote."""
    directory.mkdir(parents=True, exist_ok=True)
    handle, name = tempfile.mkstemp(prefix=prefix, suffix=".pkl", dir=directory)
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


def check_tagger(spec: str, trust_pickle: bool) -> None:
    """``spec`` is ``fallback``, a name of :data:`FLAIR_MODELS`, or (only with
    ``trust_pickle``) an existing model file; one-line error otherwise."""
    if not isinstance(spec, str) or not spec:
        raise ValueError(f"pos_tagger must be a flair model name, a file or 'fallback', "
                         f"got {spec!r}")
    if spec == "fallback" or spec in FLAIR_MODELS:
        return
    path = Path(spec).expanduser()
    if not path.is_file():
        raise missing("pos_tagger", spec, f"no such file, nor a flair model name "
                      f"({', '.join(FLAIR_MODELS)})")
    if not trust_pickle:
        raise SamatError(
            f"pos_tagger={spec}: {path.resolve()} is a flair model file, a pickle that runs "
            f"code from that file when loaded; set trust_pickle=true on this attack if you "
            f"trust it, or pos_tagger=fallback or a flair model name ({', '.join(FLAIR_MODELS)})")


def load_tagger(spec: str, trust_pickle: bool = False) -> Any:
    """The flair ``SequenceTagger`` ``spec`` names (see :func:`check_tagger`); one-line
    :class:`MissingDataError` if it cannot be loaded.

    A model name is fetched from (or found in) flair's Hugging Face hub cache and loaded from
    there by absolute path: flair itself would load a local file of that name first. A file
    (with ``trust_pickle``) is a full torch pickle: loading it runs code from it.
    """
    check_tagger(spec, trust_pickle)
    from flair.models import SequenceTagger

    try:
        if spec in FLAIR_MODELS:
            model_file = _hub_file(FLAIR_MODELS[spec])
        else:
            model_file = str(Path(spec).expanduser().resolve())
        return SequenceTagger.load(model_file)
    except Exception as exc:  # flair raises many kinds when a model cannot be fetched
        raise missing("pos_tagger", spec, f"cannot load ({type(exc).__name__})") from None


def _hub_file(repo: str) -> str:
    """The absolute path of flair hub model ``repo``'s weights (downloaded if not cached)."""
    from flair.file_utils import hf_download

    return str(Path(hf_download(repo)).resolve())


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
