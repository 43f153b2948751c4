"""``text_classification``: fine-tune a Hugging Face sequence classifier; TextAttack attacks."""

from __future__ import annotations

import random
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from samat import Attack, Bounds, SamatError, Task, TextAttack, check_int, unknown_name_message
from samat_text import data
from samat_text.model import TextClassifier, load_pretrained, resolve_model


class TextClassificationTask(Task):
    """Sentence classification with a Hugging Face model (``model``: hub id, local directory,
    or ``embedded-minilm``), cross-entropy loss and accuracy.

    ``dataset``: ``rotten_tomatoes`` (HF datasets, hub or cache; ``eval_split`` test or
    validation), ``files`` (``train_file``/``eval_file``: csv, tsv, parquet, json or jsonl with
    ``text_column``/``label_column``) or ``demo`` (the project's own sentence set).
    ``n_train``: a seeded random training subset; ``n_eval``: the first evaluation examples.
    ``download=false`` never contacts the hub. Batches are ``({"input_ids", "attention_mask",
    "text"}, labels)``; the attacks ``pso`` and ``iga`` work on the raw texts.
    """

    metric = "accuracy"
    higher_is_better = True
    input_bounds: Bounds = None
    model_format = "transformers"

    def __init__(
        self,
        model: str = "distilbert-base-uncased",
        dataset: str = "rotten_tomatoes",
        train_file: str | None = None,
        eval_file: str | None = None,
        eval_split: str = "test",
        text_column: str = "text",
        label_column: str = "label",
        max_length: int = 128,
        num_labels: int = 2,
        n_train: int | None = None,
        n_eval: int | None = None,
        download: bool = True,
        seed: int = 0,
    ) -> None:
        if dataset not in data.DATASETS:
            raise ValueError(unknown_name_message("dataset", dataset, list(data.DATASETS)))
        if (dataset == "files") != (train_file is not None or eval_file is not None):
            raise ValueError("train_file/eval_file go with dataset=files (and only with it)")
        if dataset == "files" and (train_file is None or eval_file is None):
            raise ValueError("dataset=files needs both train_file and eval_file")
        max_length = check_int("max_length", max_length, 8)
        num_labels = check_int("num_labels", num_labels, 2)
        n_train = check_int("n_train", n_train, optional=True)
        n_eval = check_int("n_eval", n_eval, optional=True)
        self.model_name, self.dataset, self.eval_split = model, dataset, eval_split
        self.max_length, self.num_labels, self.seed = max_length, num_labels, int(seed)
        self.download = bool(download)
        if dataset == "rotten_tomatoes":
            train, test = data.load_rotten_tomatoes(eval_split)
        else:
            folder = data.DEMO_DIR
            paths = (train_file, eval_file) if dataset == "files" else (
                folder / "train.csv", folder / "test.csv")
            train, test = (data.read_file(p, text_column, label_column) for p in paths)
        for split, examples in (("train", train), ("eval", test)):
            bad = sorted({y for _, y in examples if not 0 <= y < self.num_labels})
            if bad:
                raise ValueError(f"{split} labels {bad[:5]} outside 0..{self.num_labels - 1} "
                                 "(set num_labels)")
        if n_train is not None and n_train < len(train):
            train = random.Random(self.seed).sample(train, n_train)
        self.train_examples, self.eval_examples = train, test[:n_eval]
        self.sources = {"train": str(train_file or dataset), "eval": str(eval_file or dataset)}
        self.hf_model, self.tokenizer = load_pretrained(model, self.num_labels, self.download)

    def train_dataset(self) -> data.TextDataset:
        return data.TextDataset(self.train_examples)

    def eval_dataset(self) -> data.TextDataset:
        return data.TextDataset(self.eval_examples)

    def build_model(self) -> TextClassifier:
        """The pretrained model with a fresh classifier head (seeded by the run)."""
        hf, self.hf_model = self.hf_model, None
        if hf is None:  # a second call: load again rather than share parameters
            hf, _ = load_pretrained(self.model_name, self.num_labels, self.download)
        return TextClassifier(hf, self.tokenizer, self.max_length)

    def input_embeddings(self, model: nn.Module) -> nn.Module:
        """The token embedding layer: input-gradient measures differentiate with respect to its
        output, the continuous stand-in for the token ids."""
        return model.hf.get_input_embeddings()

    def collate_fn(self, batch: list[tuple[str, int]]) -> tuple[dict[str, Any], torch.Tensor]:
        """Tokenise and pad a list of pairs; the raw texts ride along under ``text``."""
        texts = [text for text, _ in batch]
        encoded = self.tokenizer(texts, padding=True, truncation=True,
                                 max_length=self.max_length, return_tensors="pt")
        x = {"input_ids": encoded["input_ids"], "attention_mask": encoded["attention_mask"],
             "text": texts}
        return x, torch.tensor([label for _, label in batch])

    def evaluate(self, model: nn.Module, batches: Iterable[tuple[Any, torch.Tensor]],
                 attack: Attack | None = None) -> dict[str, float]:
        """Accuracy; with a text attack, its TextAttack summary on these batches' texts
        (``accuracy`` = accuracy under attack)."""
        if attack is None:
            return super().evaluate(model, batches)
        if not isinstance(attack, TextAttack):
            raise SamatError(f"text_classification: attack '{attack.name}' acts on tensors; "
                             "text models take the text attacks pso and iga")
        texts: list[str] = []
        labels: list[int] = []
        for x, y in batches:
            texts += x["text"]
            labels += [int(v) for v in y]
        return attack.attack_texts(texts, labels)

    def model_spec(self) -> dict[str, Any]:
        """The token length inputs are truncated to (the rest is the saved directory's)."""
        return {"architecture": {"max_length": self.max_length},
                "input_shape": None,
                "output": "logits over the labels; input: {'input_ids', 'attention_mask'} of "
                          "the saved tokenizer"}

    def save_pretrained(self, model: nn.Module, directory: Path) -> None:
        """The Hugging Face model and its tokenizer (``save_pretrained``, safetensors)."""
        if not isinstance(model, TextClassifier):
            raise TypeError(f"expected a TextClassifier, got {type(model).__name__}")
        model.save_pretrained(directory)

    def describe(self) -> dict[str, Any]:
        return {
            "model": self.model_name, "model_path": resolve_model(self.model_name),
            "dataset": self.dataset, "sources": self.sources, "max_length": self.max_length,
            "n_train": len(self.train_examples), "n_eval": len(self.eval_examples),
        }
