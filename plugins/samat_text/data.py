"""Labelled sentences: Rotten Tomatoes (HF datasets), local csv/parquet/json files, the demo set."""

from __future__ import annotations

from pathlib import Path

from torch.utils.data import Dataset

from samat import MissingDataError

DEMO_DIR = Path(__file__).with_name("demo_data")
DATASETS = ("rotten_tomatoes", "files", "demo")
Examples = list[tuple[str, int]]


class TextDataset(Dataset):
    """``(text, label)`` pairs."""

    def __init__(self, examples: Examples) -> None:
        self.examples = examples

    def __len__(self) -> int:
        return len(self.examples)

    def __getitem__(self, index: int) -> tuple[str, int]:
        return self.examples[index]


def read_file(path: str | Path, text_column: str = "text",
              label_column: str = "label") -> Examples:
    """``(text, label)`` pairs from a .csv, .tsv, .parquet, .json or .jsonl file."""
    import pandas as pd

    path = Path(path).expanduser()
    if not path.is_file():
        raise MissingDataError(f"{path.absolute()}: no such file (a csv/parquet/json file with "
                               f"'{text_column}' and '{label_column}' columns)")
    suffix = path.suffix.lower()
    readers = {
        ".csv": pd.read_csv, ".tsv": lambda p: pd.read_csv(p, sep="\t"),
        ".parquet": pd.read_parquet, ".jsonl": lambda p: pd.read_json(p, lines=True),
        ".json": lambda p: pd.read_json(p, lines=p.read_text().lstrip()[:1] != "["),
    }
    if suffix not in readers:
        raise ValueError(f"{path}: unsupported file type '{suffix}' (use one of "
                         f"{', '.join(readers)})")
    frame = readers[suffix](path)
    absent = [c for c in (text_column, label_column) if c not in frame.columns]
    if absent:
        raise ValueError(f"{path}: no column {', '.join(map(repr, absent))} (columns: "
                         f"{', '.join(map(str, frame.columns))})")
    return [(str(t), int(y)) for t, y in zip(frame[text_column], frame[label_column],
                                             strict=True)]


def load_rotten_tomatoes(eval_split: str) -> tuple[Examples, Examples]:
    """Rotten Tomatoes (Pang & Lee 2005) from the Hugging Face hub or its local cache."""
    import datasets

    try:
        splits = datasets.load_dataset("rotten_tomatoes")
    except Exception as exc:  # datasets raises ConnectionError, FileNotFoundError, ...
        raise MissingDataError(
            f"task.dataset=rotten_tomatoes: not in the Hugging Face datasets cache "
            f"({Path(datasets.config.HF_DATASETS_CACHE).absolute()}) and not "
            f"downloadable ({type(exc).__name__}); run `python -c \"import datasets; "
            "datasets.load_dataset('rotten_tomatoes')\"` with internet (or copy its cache, "
            "HF_DATASETS_CACHE), or export it to files and use dataset=files with "
            "train_file/eval_file"
        ) from None
    if eval_split not in splits:
        raise ValueError(f"eval_split: rotten_tomatoes has {', '.join(splits)}, not "
                         f"{eval_split!r}")
    return tuple(  # type: ignore[return-value]
        [(str(r["text"]), int(r["label"])) for r in splits[name]]
        for name in ("train", eval_split)
    )
