"""TextAttack's PSO (Zang et al. 2020) and IGA (Wang et al. 2019) as samat attacks.

They act on raw texts, not tensors: the ``text_classification`` task's ``evaluate`` hands them
the evaluation set's ``(text, label)`` pairs through :meth:`TextAttackRecipe.attack_texts`.
"""

from __future__ import annotations

import csv
import math
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from samat import LossFn, TextAttack, check_int, rng_state, set_rng_state
from samat_text.fallbacks import fallback_embedding, fallback_hownet_bank
from samat_text.model import TextClassifier
from samat_text.resource_files import (
    CounterFitted,
    fetch,
    load_counterfitted,
    load_hownet,
    load_stopwords,
    load_tagger,
    nltk_root,
    write_bank,
)
from samat_text.resource_spec import FLAIR_SLOT, HOWNET_S3, ResourceSpec
from samat_text.textattack_env import cache_dir, textattack_session
from samat_text.textattack_patches import EMBEDDING_KEY, pos_source, resolved_downloads

CSV_FIELDS = ("index", "result_type", "ground_truth_output", "original_output",
              "perturbed_output", "num_queries", "original_text", "perturbed_text")


class TextAttackRecipe(TextAttack):
    """A TextAttack attack recipe run by ``textattack.Attacker`` on a samat text model."""

    def __init__(self, model: TextClassifier, name: str, recipe: str,
                 n_examples: int | None, query_budget: int | None, seed: int, pop_size: int,
                 max_iters: int, spec: dict[str, str], cache: str | None,
                 output_csv: str | None, trust_pickle: bool = False) -> None:
        if not isinstance(model, TextClassifier):
            raise TypeError(f"{name} attacks text_classification models, got "
                            f"{type(model).__name__}")
        self.model, self.name, self.recipe = model, name, recipe
        self.n_examples = check_int("n_examples", n_examples, optional=True)
        self.query_budget = check_int("query_budget", query_budget, optional=True)
        self.pop_size = check_int("pop_size", pop_size)
        self.max_iters = check_int("max_iters", max_iters)
        self.seed = check_int("seed", seed, 0)
        self.spec = ResourceSpec(**spec, trust_pickle=trust_pickle)
        self.used = tuple(spec)
        self.cache = cache_dir(cache)
        self.output_csv = output_csv
        self.run_output: Path | None = None
        self.stopwords = load_stopwords(self.spec.stopwords, self.cache)
        self.counterfitted: CounterFitted | None = None
        self.hownet_bank: dict[str, dict[str, list[str]]] | None = None
        self._load_resources()
        self.tagger = None
        if "pos_tagger" in self.used and self.spec.pos_tagger != "fallback":
            self.tagger = load_tagger(self.spec.pos_tagger, self.spec.trust_pickle)

    def _load_resources(self) -> None:
        """Read the embedding and HowNet bank now, before any training (fetching ``download``
        ones into the cache), with no code run from them: TextAttack gets only these."""
        wanted = [k for k in ("embedding", "hownet")
                  if k in self.used and getattr(self.spec, k) != "fallback"]
        paths = {k: Path(getattr(self.spec, k)).expanduser() for k in wanted
                 if getattr(self.spec, k) != "download"}
        if len(paths) < len(wanted):
            with textattack_session(self.cache, nltk_root(self.cache)) as ta:
                paths.update({k: fetch(ta, k) for k in wanted if k not in paths})
        if "embedding" in paths:
            self.counterfitted = load_counterfitted(paths["embedding"], self.spec.embedding)
        if "hownet" in paths:
            self.hownet_bank = load_hownet(paths["hownet"], self.spec.hownet)

    def attack_texts(self, texts: list[str], labels: list[int]) -> dict[str, Any]:
        """Attack the first ``n_examples`` pairs; TextAttack's summary fields, in percent."""
        examples = list(zip(texts, (int(label) for label in labels), strict=True))
        examples = examples[: self.n_examples]
        model, tokenizer = self.model, self.model.tokenizer
        saved_rng, was_training = rng_state(), model.training
        saved_max_length = tokenizer.model_max_length
        tokenizer.model_max_length = model.max_length
        model.eval()
        try:
            with ExitStack() as stack:
                ta = stack.enter_context(
                    textattack_session(self.cache, nltk_root(self.cache)))
                attack = self._build(ta, stack, [text for text, _ in examples])
                args = ta.AttackArgs(
                    num_examples=len(examples), query_budget=self.query_budget,
                    random_seed=self.seed, disable_stdout=True, silent=True,
                )
                dataset = ta.datasets.Dataset(examples)
                results = ta.Attacker(attack, dataset, args).attack_dataset()
                summary = summarize(ta, results)
        finally:
            tokenizer.model_max_length = saved_max_length
            model.train(was_training)
            set_rng_state(saved_rng)
        path = Path(self.output_csv) if self.output_csv else self.run_output
        if path is not None:
            write_csv(path, example_rows(results))
            summary["examples_csv"] = str(self.output_csv) if self.output_csv else path.name
        return summary

    def set_output(self, run_dir: Path, label: str) -> None:
        """Write the adversarial examples to ``run_dir/adversarial_<label>.csv`` (unless
        ``output_csv`` is set)."""
        self.run_output = run_dir / f"adversarial_{label.replace('/', '_')}.csv"

    def _build(self, ta: Any, stack: ExitStack, texts: list[str]) -> Any:
        """The recipe's ``textattack.Attack`` with this attack's resources and budgets;
        patches (embedding slot, POS source) stay active until ``stack`` closes."""
        wrapper = ta.models.wrappers.HuggingFaceModelWrapper(self.model.hf, self.model.tokenizer)
        objects = ta.shared.utils.GLOBAL_OBJECTS
        had, previous = EMBEDDING_KEY in objects, objects.pop(EMBEDDING_KEY, None)
        stack.callback(_restore, objects, EMBEDDING_KEY, had, previous)
        served: dict[str, Path] = {}
        if "embedding" in self.used:
            objects[EMBEDDING_KEY] = (
                self.counterfitted.word_embedding(ta) if self.counterfitted is not None
                else fallback_embedding(ta, self.model.hf, self.model.tokenizer))
        if "hownet" in self.used:
            served[HOWNET_S3] = self._bank_file(ta, stack, texts)
        if "pos_tagger" in self.used:
            stack.enter_context(pos_source(ta, self.tagger))
        with resolved_downloads(ta, served):
            attack = getattr(ta.attack_recipes, self.recipe).build(wrapper)
        for constraint in attack.pre_transformation_constraints:
            if hasattr(constraint, "stopwords"):
                constraint.stopwords = set(self.stopwords)
        attack.search_method.pop_size = self.pop_size
        attack.search_method.max_iters = self.max_iters
        return attack

    def _bank_file(self, ta: Any, stack: ExitStack, texts: list[str]) -> Path:
        """The HowNet bank (loaded, or the fallback built for ``texts``) pickled by samat to a
        fresh file, deleted when ``stack`` closes."""
        if self.hownet_bank is not None:
            bank, directory, prefix = self.hownet_bank, self.cache / "hownet", "hownet_"
        else:
            embedding = fallback_embedding(ta, self.model.hf, self.model.tokenizer)
            words = {w for text in texts for w in ta.shared.AttackedText(text).words}
            bank = fallback_hownet_bank(embedding, words)
            directory, prefix = self.cache / "fallback", "fallback_hownet_"
        bank_file = write_bank(bank, directory, prefix)
        stack.callback(bank_file.unlink, missing_ok=True)
        return bank_file

    def describe(self) -> dict[str, Any]:
        used = self.spec.describe()
        described = {
            "name": self.name, "textattack_recipe": self.recipe, "n_examples": self.n_examples,
            "query_budget": self.query_budget, "seed": self.seed, "pop_size": self.pop_size,
            "max_iters": self.max_iters, "max_length": self.model.max_length,
            "resources": {k: used[k] for k in self.used},
        }
        if "pos_tagger" in self.used:
            described["trust_pickle"] = self.spec.trust_pickle
        return described


def _restore(objects: dict[str, Any], key: str, had: bool, previous: Any) -> None:
    objects.pop(key, None)
    if had:
        objects[key] = previous


def summarize(ta: Any, results: list[Any]) -> dict[str, Any]:
    """TextAttack's own summary numbers (``AttackLogManager.log_summary``), under samat names.

    ``accuracy`` is the accuracy under attack (higher is better for the model);
    ``attack_success_rate`` = successful / (successful + failed), skipped excluded (lower is
    better for the model). ``avg_perturbed_word_pct`` is ``None`` without a successful attack.
    """
    success = ta.metrics.AttackSuccessRate().calculate(results)
    words = ta.metrics.WordsPerturbed().calculate(results)
    queries = ta.metrics.AttackQueries().calculate(results)
    perturbed = float(words["avg_word_perturbed_perc"])
    return {
        "accuracy": float(success["attack_accuracy_perc"]),
        "original_accuracy": float(success["original_accuracy"]),
        "attack_success_rate": float(success["attack_success_rate"]),
        "avg_perturbed_word_pct": None if math.isnan(perturbed) else perturbed,
        "avg_words_per_input": float(words["avg_word_perturbed"]),
        "avg_queries": float(queries["avg_num_queries"]),
        "n_examples": len(results),
        "successful": int(success["successful_attacks"]),
        "failed": int(success["failed_attacks"]),
        "skipped": int(success["skipped_attacks"]),
    }


def example_rows(results: list[Any]) -> list[dict[str, Any]]:
    """One CSV row per attacked example."""
    return [
        {
            "index": i,
            "result_type": type(r).__name__.replace("AttackResult", "").lower(),
            "ground_truth_output": r.original_result.ground_truth_output,
            "original_output": r.original_result.output,
            "perturbed_output": r.perturbed_result.output,
            "num_queries": r.perturbed_result.num_queries,
            "original_text": r.original_result.attacked_text.text,
            "perturbed_text": r.perturbed_result.attacked_text.text,
        }
        for i, r in enumerate(results)
    ]


def write_csv(path: Path, rows: list[dict[str, Any]]) -> None:
    """Write adversarial-example rows (:data:`CSV_FIELDS`)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=CSV_FIELDS)
        writer.writeheader()
        writer.writerows(rows)


def pso(model: TextClassifier, loss_fn: LossFn | None = None, n_examples: int | None = None,
        query_budget: int | None = None, seed: int = 0, pop_size: int = 60, max_iters: int = 20,
        stopwords: str = "download", hownet: str = "download",
        pos_tagger: str = FLAIR_SLOT, cache_dir: str | None = None,
        output_csv: str | None = None, trust_pickle: bool = False) -> TextAttackRecipe:
    """TextAttack PSOZang2020: HowNet sememe swaps searched by particle swarm optimisation.

    ``trust_pickle=true`` lets ``pos_tagger`` be a flair model file: that runs code from that
    file (flair unpickles it whole), so set it only for a file you trust. flair's own model
    names (:data:`samat_text.resource_spec.FLAIR_MODELS`) and ``fallback`` need no trust.
    """
    return TextAttackRecipe(
        model, "pso", "PSOZang2020", n_examples, query_budget, seed, pop_size, max_iters,
        {"stopwords": stopwords, "hownet": hownet, "pos_tagger": pos_tagger}, cache_dir,
        output_csv, trust_pickle,
    )


def iga(model: TextClassifier, loss_fn: LossFn | None = None, n_examples: int | None = None,
        query_budget: int | None = None, seed: int = 0, pop_size: int = 60, max_iters: int = 20,
        stopwords: str = "download", embedding: str = "download",
        cache_dir: str | None = None, output_csv: str | None = None) -> TextAttackRecipe:
    """TextAttack IGAWang2019: counter-fitted embedding swaps searched by an improved GA."""
    return TextAttackRecipe(
        model, "iga", "IGAWang2019", n_examples, query_budget, seed, pop_size, max_iters,
        {"stopwords": stopwords, "embedding": embedding}, cache_dir, output_csv,
    )
