"""The settings of TextAttack's offline resources, checked, and the one-line errors naming them.

Each resource is set by a string:

* ``stopwords``: ``download`` (NLTK's list, fetched into the cache), a path (an NLTK data
  directory holding ``corpora/stopwords/english``, or that one-word-per-line file), or
  ``fallback`` (the same English list, shipped in this package).
* ``embedding``: ``download`` (TextAttack's counter-fitted ``paragramcf``), a ``paragramcf``
  directory, or ``fallback`` (the attacked model's own input embeddings, see
  :func:`~samat_text.fallbacks.fallback_embedding`).
* ``hownet``: ``download`` (``word_candidates_sense.pkl``), a path to that pickle, or
  ``fallback`` (a candidate bank built from the embedding, see
  :func:`~samat_text.fallbacks.fallback_hownet_bank`).
* ``pos_tagger``: one of flair's own model names (:data:`FLAIR_MODELS`, ``upos-fast`` as
  TextAttack), ``fallback`` (a rule/lexicon tagger, see
  :func:`~samat_text.fallbacks.fallback_pos`), or a model file with ``trust_pickle=true``.

Files are read by :mod:`samat_text.resource_files`; fallbacks are built by
:mod:`samat_text.fallbacks`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from samat import MissingDataError, SamatError
from samat_text.fallbacks import FALLBACK_LABELS

EMBEDDING_S3 = "word_embeddings/paragramcf"
HOWNET_S3 = "transformations/hownet/word_candidates_sense.pkl"
EMBEDDING_FILES = ("paragram.npy", "wordlist.pickle", "nn.npy", "mse_dist.p", "cos_sim.p")
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
    return MissingDataError(f"{name}={spec}: {path}: {why}; {fix_hint(name, spec, path)}")


def fix_hint(name: str, spec: str, path: Path) -> str:
    """How to replace the bad file ``path`` of resource ``name``."""
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
