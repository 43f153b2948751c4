"""Import and use TextAttack without its side effects leaking into the process or the disk.

On import TextAttack downloads NLTK data unless a marker file exists in its cache, overwrites
``HF_HOME``/``XDG_CACHE_HOME``/... when ``TA_CACHE_DIR`` is set, sets ``TOKENIZERS_PARALLELISM``
and leaves ``*.lock`` files next to everything it looks up; its log lines and its dependencies'
warnings go straight to the console. :func:`textattack_session` points it at a samat-controlled
cache directory for the duration of a ``with`` block only, sends its log lines and warnings to
the run's ``log.txt`` meanwhile, and restores the environment exactly afterwards.
"""

from __future__ import annotations

import logging
import os
import warnings
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from types import ModuleType

DEFAULT_CACHE = Path("~/.cache/samat/textattack")
"""Where TextAttack's cache lives unless an attack's ``cache_dir`` says otherwise."""

MARKER = "post_install_check_3"
"""The file whose presence stops TextAttack from calling ``nltk.download`` on import."""

ENV_KEYS = (
    "TA_CACHE_DIR", "NLTK_DATA", "HF_HOME", "XDG_CACHE_HOME", "TFHUB_CACHE_DIR",
    "PYTORCH_TRANSFORMERS_CACHE", "TOKENIZERS_PARALLELISM", "TF_CPP_MIN_LOG_LEVEL",
    "WANDB_SILENT", "CUDA_VISIBLE_DEVICES", "MPLCONFIGDIR",
)
"""Every environment variable TextAttack writes (at import or while attacking)."""

RUN_LOG_ONLY = {"samat_file_only": True}
"""``extra`` of a samat log record that belongs in the run's log.txt, not on the console."""


class ToRunLog(logging.Handler):
    """TextAttack's log records, re-logged by samat to the run's log.txt only."""

    def emit(self, record: logging.LogRecord) -> None:
        logging.getLogger("samat.textattack").log(
            record.levelno, "textattack: %s", record.getMessage(), extra=RUN_LOG_ONLY)


def _log_warnings(caught: list[warnings.WarningMessage]) -> None:
    for message in caught:
        logging.getLogger("samat.textattack").warning(
            "%s:%s: %s: %s", message.filename, message.lineno, message.category.__name__,
            message.message, extra=RUN_LOG_ONLY)


def cache_dir(path: str | Path | None) -> Path:
    """The resolved cache directory (``None``: :data:`DEFAULT_CACHE`)."""
    return Path(path or DEFAULT_CACHE).expanduser().resolve()


def remove_stray_files(directory: Path) -> None:
    """Delete the ``*.lock`` and ``tmp*.zip`` files TextAttack leaves in its cache."""
    if not directory.is_dir():
        return
    for pattern in ("*.lock", "tmp*.zip"):
        for path in directory.rglob(pattern):
            path.unlink(missing_ok=True)


@contextmanager
def textattack_session(cache: Path, nltk_root: Path) -> Iterator[ModuleType]:
    """``import textattack`` with its cache in ``cache`` and NLTK data from ``nltk_root``.

    Yields the ``textattack`` module. Environment variables, ``nltk.data.path`` and TextAttack's
    cache-directory global are restored on exit, and stray lock files removed.
    """
    saved = {key: os.environ.get(key) for key in ENV_KEYS}
    cache.mkdir(parents=True, exist_ok=True)
    (cache / MARKER).touch()
    import nltk

    nltk.data.path.insert(0, str(nltk_root))
    os.environ["TA_CACHE_DIR"] = str(cache)
    os.environ["NLTK_DATA"] = str(nltk_root)
    os.environ["MPLCONFIGDIR"] = str(cache / "matplotlib")  # flair imports matplotlib
    install = None
    previous_cache = None
    try:
        with ExitStack() as quiet:
            caught = quiet.enter_context(warnings.catch_warnings(record=True))
            quiet.callback(_log_warnings, caught)
            import textattack
            from textattack.shared.utils import install

            previous_cache = install.TEXTATTACK_CACHE_DIR
            install.TEXTATTACK_CACHE_DIR = str(cache)
            handlers, install.logger.handlers = install.logger.handlers, [ToRunLog()]
            quiet.callback(setattr, install.logger, "handlers", handlers)
            yield textattack
    finally:
        if install is not None:
            install.TEXTATTACK_CACHE_DIR = previous_cache
        if str(nltk_root) in nltk.data.path:
            nltk.data.path.remove(str(nltk_root))
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        remove_stray_files(cache)
