"""Temporary patches of TextAttack's globals, undone when their ``with`` block ends: its
resource downloads answered only with files samat checked, and its POS tagger replaced."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from types import ModuleType
from typing import Any

from samat import MissingDataError
from samat_text.fallbacks import fallback_pos
from samat_text.resource_spec import FLAIR_SLOT

EMBEDDING_KEY = "textattack_counterfitted_GLOVE_embedding"
"""The ``GLOBAL_OBJECTS`` slot TextAttack's counter-fitted embedding lives in."""


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


@contextmanager
def pos_source(ta: ModuleType, tagger: Any | None) -> Iterator[None]:
    """Within the block, ``AttackedText.pos_of_word_index`` answers from the flair ``tagger``,
    or from :func:`~samat_text.fallbacks.fallback_pos` when ``tagger`` is ``None``."""
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
