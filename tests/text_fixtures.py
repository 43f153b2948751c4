"""Tiny offline text fixtures: a DistilBERT with a hand-written WordPiece vocabulary, a sentiment
set in csv and parquet, small TextAttack resources (stopwords, paragramcf, HowNet bank) and
malicious stand-ins for them (:class:`MarkerPayload`)."""

from __future__ import annotations

import json
import os
import pickle
import random
import sys
from collections import defaultdict
from pathlib import Path
from typing import Any

POSITIVE = ["good", "great", "fine", "nice", "excellent", "wonderful", "superb", "lovely"]
NEGATIVE = ["bad", "awful", "poor", "terrible", "dull", "boring", "weak", "dreadful"]
SUBJECTS = ["the movie", "this film", "the plot", "the acting", "the story", "the script"]
VERBS = ["was", "is", "felt", "seemed"]
SPECIAL = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]


class MarkerPayload:
    """Unpickling this calls ``Path.write_text(marker, "pwned")``: a malicious resource file."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, tuple[Path, str]]:
        return Path.write_text, (self.marker, "pwned")


def write_payload(path: Path, marker: Path, inside: Any = None) -> Path:
    """Pickle :class:`MarkerPayload` to ``path``, hidden as the last item of list ``inside``."""
    payload = MarkerPayload(marker)
    with path.open("wb") as handle:
        pickle.dump(payload if inside is None else [*inside, payload], handle)
    return path


def sentences() -> list[tuple[str, int]]:
    """Every ``subject verb adjective .`` sentence, labelled 1 for positive adjectives."""
    return [
        (f"{s} {v} {a} .", label)
        for label, adjectives in ((0, NEGATIVE), (1, POSITIVE))
        for a in adjectives for s in SUBJECTS for v in VERBS
    ]


def vocabulary() -> list[str]:
    words = sorted({w for text, _ in sentences() for w in text.split()} | {"a", "and"})
    return SPECIAL + words


def write_model(directory: Path) -> Path:
    """A randomly initialised 1-layer DistilBERT (dim 32) and its tokenizer, saved locally."""
    from transformers import (
        DistilBertConfig,
        DistilBertForSequenceClassification,
        DistilBertTokenizerFast,
    )

    directory.mkdir(parents=True, exist_ok=True)
    vocab = directory / "vocab.txt"
    vocab.write_text("\n".join(vocabulary()) + "\n")
    tokenizer = DistilBertTokenizerFast(vocab_file=str(vocab), do_lower_case=True)
    config = DistilBertConfig(vocab_size=len(vocabulary()), dim=32, n_layers=1, n_heads=2,
                              hidden_dim=64, max_position_embeddings=64, num_labels=2)
    import torch

    torch.manual_seed(0)
    DistilBertForSequenceClassification(config).save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return directory


def write_data(directory: Path) -> dict[str, Path]:
    """train/eval splits (every 4th sentence is eval) as csv and parquet."""
    import pandas as pd

    directory.mkdir(parents=True, exist_ok=True)
    rows = sentences()
    random.Random(0).shuffle(rows)
    splits = {"train": [r for i, r in enumerate(rows) if i % 4], "eval": rows[::4]}
    paths = {}
    for split, pairs in splits.items():
        frame = pd.DataFrame(pairs, columns=["text", "label"])
        paths[f"{split}_csv"] = directory / f"{split}.csv"
        paths[f"{split}_parquet"] = directory / f"{split}.parquet"
        frame.to_csv(paths[f"{split}_csv"], index=False)
        frame.to_parquet(paths[f"{split}_parquet"], index=False)
    return paths


def write_resources(directory: Path) -> dict[str, Path]:
    """An NLTK stopwords directory, a paragramcf directory and a HowNet-style bank over the
    fixture vocabulary, where every adjective is a "synonym" of every other (of either
    sentiment), so that attacks on the tiny model can succeed."""
    import numpy as np

    stopwords = directory / "nltk_data" / "corpora" / "stopwords" / "english"
    stopwords.parent.mkdir(parents=True, exist_ok=True)
    stopwords.write_text("\n".join(["the", "this", "a", "and", "is", "was"]) + "\n")
    words = [w for w in vocabulary()[len(SPECIAL):] if w.isalpha()]
    rng = np.random.default_rng(0)
    centre = rng.normal(size=16)
    vectors = []
    for w in words:
        adjective = w in POSITIVE + NEGATIVE
        v = centre + 0.3 * rng.normal(size=16) if adjective else rng.normal(size=16)
        vectors.append(v / np.linalg.norm(v))
    matrix = np.stack(vectors).astype(np.float32)
    nn = np.argsort(-(matrix @ matrix.T), axis=1)[:, :10]  # column 0 is the word itself
    paragramcf = directory / "paragramcf"
    paragramcf.mkdir(parents=True, exist_ok=True)
    np.save(paragramcf / "paragram.npy", matrix)
    np.save(paragramcf / "nn.npy", nn)
    with (paragramcf / "wordlist.pickle").open("wb") as handle:
        pickle.dump({w: i for i, w in enumerate(words)}, handle)
    for name in ("mse_dist.p", "cos_sim.p"):
        with (paragramcf / name).open("wb") as handle:
            pickle.dump(defaultdict(dict), handle)
    adjectives = POSITIVE + NEGATIVE
    bank = {w: {"adj": [s for s in adjectives if s != w]} for w in adjectives}
    hownet = directory / "word_candidates_sense.pkl"
    with hownet.open("wb") as handle:
        pickle.dump(bank, handle)
    return {"stopwords": directory / "nltk_data", "embedding": paragramcf, "hownet": hownet}


def train_briefly(model: object, task: object, steps: int = 60) -> None:
    """A few AdamW steps at a high learning rate: enough for the tiny model to learn sentiment."""
    import torch

    torch.manual_seed(0)
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    data = task.train_dataset()
    model.train()
    for step in range(steps):
        batch = [data[(step * 16 + i) % len(data)] for i in range(16)]
        x, y = task.collate_fn(batch)
        optimizer.zero_grad()
        task.loss(model(x), y).backward()
        optimizer.step()
    model.eval()


def attack_scenario(root: Path) -> dict:
    """Run in a fresh process (TextAttack import has side effects): trains the tiny model, runs
    PSO and IGA with local resources and a failing download; reports results and side effects."""
    from samat import create_attack, create_task
    from samat.errors import MissingDataError

    model_dir = write_model(root / "model")
    data = write_data(root / "data")
    res = write_resources(root / "resources")
    task = create_task("text_classification", model=str(model_dir), dataset="files",
                       train_file=str(data["train_csv"]), eval_file=str(data["eval_parquet"]),
                       max_length=16, download=False)
    model = task.build_model()
    env_before = dict(os.environ)  # after torch/transformers set theirs
    unpickled = []  # every file pickle.load (TextAttack's, numpy's) reads from now on
    plain_load = pickle.load

    def recording_load(file: Any, *args: Any, **kwargs: Any) -> Any:
        unpickled.append(str(getattr(file, "name", file)))
        return plain_load(file, *args, **kwargs)

    pickle.load = recording_load
    train_briefly(model, task)
    eval_pairs = task.eval_examples
    # A sentence with nothing to swap, labelled as predicted (the attack must fail) and
    # mislabelled (TextAttack skips it), ahead of six ordinary ones.
    x, _ = task.collate_fn([("the plot seemed .", 0)])
    predicted = int(model(x).argmax())
    texts = ["the plot seemed .", "the plot seemed ."] + [t for t, _ in eval_pairs]
    labels = [predicted, 1 - predicted] + [y for _, y in eval_pairs]
    cache = root / "cache"
    common = {"n_examples": 8, "query_budget": 60, "pop_size": 4, "max_iters": 2,
              "stopwords": str(res["stopwords"]), "cache_dir": str(cache)}
    out: dict = {"natural": task.evaluate(model, [task.collate_fn(eval_pairs)])}
    pso = create_attack("pso", model, task=task, hownet=str(res["hownet"]),
                        pos_tagger="fallback", output_csv=str(root / "pso.csv"), **common)
    out["pso"] = pso.attack_texts(texts, labels)
    out["pso_describe"] = pso.describe()
    iga = create_attack("iga", model, task=task, embedding=str(res["embedding"]),
                        output_csv=str(root / "iga.csv"), **common)
    out["iga"] = iga.attack_texts(texts, labels)
    try:
        create_attack("iga", model, task=task, embedding="download", stopwords="fallback",
                      cache_dir=str(root / "offline_cache"))
        out["download_error"] = None
    except MissingDataError as exc:
        out["download_error"] = str(exc)
    out["unpickled"] = unpickled
    out["stray"] = sorted(str(p.relative_to(root)) for p in root.rglob("*")
                          if p.suffix == ".lock" or p.name.startswith("tmp"))
    out["env_changed"] = sorted(k for k in set(env_before) | set(os.environ)
                                if env_before.get(k) != os.environ.get(k))
    out["textattack_imported"] = "textattack" in sys.modules
    return out


if __name__ == "__main__":
    result = attack_scenario(Path(sys.argv[1]))
    Path(sys.argv[1], "result.json").write_text(json.dumps(result, default=str))
