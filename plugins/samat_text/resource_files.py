"""Reading TextAttack's resource files (stopwords, ``paragramcf`` embedding, HowNet bank, flair
tagger) as data, fetching ``download`` ones into the cache first.

TextAttack unpickles the embedding and HowNet files itself, and a pickle can run any code.
samat never lets it: :func:`load_counterfitted` and :func:`load_hownet` read them (downloaded
or given) with ``np.load(allow_pickle=False)`` and :func:`samat.load_pickle` (allowlists
:data:`WORDLIST_GLOBALS`, :data:`DISTANCE_GLOBALS`, :data:`HOWNET_GLOBALS`), check their
structure, and hand TextAttack an in-memory ``WordEmbedding`` and a bank samat pickled itself.
These files are then safe from any source, so none is also checked against the SHA-256 of the
upstream file (those files could not be fetched to record their hashes, and a hash would refuse
re-packaged copies). A flair model file is a full ``torch`` pickle that cannot be read safely:
only flair's hub models load without ``trust_pickle``, and always from the hub cache
(:func:`load_tagger`), never from a local file that happens to carry a model's name.
"""

from __future__ import annotations

import os
import pickle
import tempfile
from collections import defaultdict
from dataclasses import dataclass
from numbers import Integral, Real
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

from samat import load_pickle
from samat_text.fallbacks import STOPWORDS_FILE
from samat_text.resource_spec import (
    EMBEDDING_FILES,
    EMBEDDING_S3,
    FLAIR_MODELS,
    HOWNET_S3,
    check_tagger,
    fix_hint,
    missing,
    not_data,
    stopwords_file,
)

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


def nltk_root(cache: Path) -> Path:
    """An NLTK data directory in the cache that holds at least the shipped stopword list
    (``import textattack`` reads NLTK's English stopwords)."""
    root = cache / "nltk_data"
    english = root / "corpora" / "stopwords" / "english"
    if not english.is_file():
        english.parent.mkdir(parents=True, exist_ok=True)
        english.write_text(STOPWORDS_FILE.read_text())
    return root


def load_stopwords(spec: str, cache: Path) -> set[str]:
    """The stopword set ``spec`` names (downloading NLTK's into the cache if asked)."""
    if spec == "fallback":
        return _read_words(STOPWORDS_FILE)
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


def load_hownet(path: Path, spec: str) -> dict[str, dict[str, list[str]]]:
    """The ``{word: {pos: [candidates]}}`` bank in ``path`` (``word_candidates_sense.pkl``),
    read with no code run; one-line :class:`MissingDataError` if it holds anything else."""
    bank = load_pickle(path, HOWNET_GLOBALS, what=f"hownet={spec}: {path}",
                         hint=fix_hint("hownet", spec, path))
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
    ``allow_pickle=False`` and pickles with :func:`samat.load_pickle`; shapes, types and
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
    return load_pickle(path, allowed, what=f"embedding={spec}: {path}",
                         hint=fix_hint("embedding", spec, path))


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


def write_bank(bank: dict[str, Any], directory: Path, prefix: str = "fallback_hownet_") -> Path:
    """Pickle a candidate bank (to a fresh file) where ``WordSwapHowNet`` can open it: the
    only pickle TextAttack reads is one samat wrote."""
    directory.mkdir(parents=True, exist_ok=True)
    handle, name = tempfile.mkstemp(prefix=prefix, suffix=".pkl", dir=directory)
    with os.fdopen(handle, "wb") as stream:
        pickle.dump(bank, stream)
    return Path(name)


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
