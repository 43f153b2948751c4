"""TextAttack resource files are data, never code: malicious embedding, HowNet and POS tagger
files are refused with one line and nothing from them runs (TextAttack is not imported in this
process; the ``download`` cases run ``samat validate`` in a subprocess)."""

from __future__ import annotations

import pickle
import shutil
import sys
import types
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from text_fixtures import MarkerPayload, write_data, write_model, write_payload, write_resources

from samat import create_attack, create_task
from samat.cli import main
from samat.errors import MissingDataError, SamatError
from samat.unpickle import ForbiddenGlobalError
from samat_text.resource_files import load_counterfitted, load_hownet, load_tagger
from samat_text.resource_spec import EMBEDDING_S3, HOWNET_S3

REFUSED = "refused to unpickle 'pathlib.Path.write_text'"


@pytest.fixture(scope="module")
def fixtures(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("text_resources")
    return {"root": root, "model": write_model(root / "model"), **write_data(root / "data"),
            **write_resources(root / "resources")}


@pytest.fixture(scope="module")
def model(fixtures: dict[str, Path]) -> tuple[Any, Any]:
    task = create_task("text_classification", model=str(fixtures["model"]), dataset="files",
                       train_file=str(fixtures["train_csv"]), eval_file=str(fixtures["eval_csv"]),
                       max_length=16, download=False, n_eval=4)
    return task, task.build_model()


def _attack(model: tuple[Any, Any], tmp_path: Path, name: str, **params: Any) -> Any:
    task, net = model
    fallbacks = {"stopwords": "fallback", "hownet": "fallback", "pos_tagger": "fallback"}
    if name == "iga":
        fallbacks = {"stopwords": "fallback", "embedding": "fallback"}
    return create_attack(name, net, task=task, cache_dir=str(tmp_path / "cache"),
                         **{**fallbacks, **params})


def _paragramcf(fixtures: dict[str, Path], tmp_path: Path) -> Path:
    folder = tmp_path / "paragramcf"
    shutil.copytree(fixtures["embedding"], folder)
    return folder


def _one_line(error: pytest.ExceptionInfo[Exception], *parts: str) -> str:
    message = str(error.value)
    assert "\n" not in message, message
    for part in parts:
        assert part in message, (part, message)
    return message


# ---------------------------------------------------------------- payloads: refused, never run

def test_hownet_user_file_payload(model, tmp_path: Path) -> None:
    marker = tmp_path / "marker"
    bank = write_payload(tmp_path / "word_candidates_sense.pkl", marker, inside=["good"])
    with pytest.raises(ForbiddenGlobalError) as info:
        _attack(model, tmp_path, "pso", hownet=str(bank))
    _one_line(info, f"hownet={bank}: {bank}: {REFUSED}", "may be malicious", "hownet=fallback")
    assert not marker.exists()


@pytest.mark.parametrize("file", ["wordlist.pickle", "mse_dist.p", "cos_sim.p"])
def test_embedding_pickle_payloads(fixtures, model, tmp_path: Path, file: str) -> None:
    folder, marker = _paragramcf(fixtures, tmp_path), tmp_path / "marker"
    write_payload(folder / file, marker)
    with pytest.raises(ForbiddenGlobalError) as info:
        _attack(model, tmp_path, "iga", embedding=str(folder))
    _one_line(info, f"embedding={folder}: {folder / file}: {REFUSED}", "embedding=fallback")
    assert not marker.exists()


@pytest.mark.parametrize("file", ["paragram.npy", "nn.npy"])
def test_embedding_object_array_payloads(fixtures, model, tmp_path: Path, file: str) -> None:
    folder, marker = _paragramcf(fixtures, tmp_path), tmp_path / "marker"
    np.save(folder / file, np.array([MarkerPayload(marker)], dtype=object), allow_pickle=True)
    with pytest.raises(MissingDataError) as info:
        _attack(model, tmp_path, "iga", embedding=str(folder))
    _one_line(info, f"embedding={folder}: {folder / file}: not a plain .npy array",
              "allow_pickle=False")
    assert not marker.exists()
    np.load(folder / file, allow_pickle=True)  # what TextAttack's loading would have done
    assert marker.exists()


def test_pos_tagger_file_needs_trust_pickle_under_validate(fixtures, tmp_path: Path, capsys,
                                                           root: Path) -> None:
    marker = tmp_path / "marker"
    tagger = write_payload(tmp_path / "pytorch_model.bin", marker)
    code = main(["validate", str(root / "recipes/rotten_tomatoes_sam.yaml"),
                 *_recipe_overrides(fixtures, tmp_path, {"pos_tagger": tagger})])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1, err
    assert err.startswith(f"samat: error: pos_tagger={tagger}: {tagger} is a flair model file")
    assert "runs code from that file" in err and "trust_pickle=true" in err
    assert not marker.exists()


# ------------------------------------------------------- downloads: the cached copy is checked

@pytest.mark.parametrize("resource", ["hownet", "embedding"])
def test_downloaded_payload_in_the_cache(fixtures, tmp_path: Path, run_cli, root: Path,
                                         resource: str) -> None:
    """``download`` finds the file in TextAttack's cache (as after a download) and refuses it."""
    cache, marker = tmp_path / "cache", tmp_path / "marker"
    if resource == "hownet":
        bad = cache / HOWNET_S3
        bad.parent.mkdir(parents=True)
        write_payload(bad, marker, inside=[])
        attacks = {"hownet": "download"}, {}
    else:
        folder = cache / EMBEDDING_S3
        shutil.copytree(fixtures["embedding"], folder)
        bad = write_payload(folder / "cos_sim.p", marker)
        attacks = {}, {"embedding": "download"}
    home = tmp_path / "home"
    home.mkdir()
    out = run_cli("validate", "recipes/rotten_tomatoes_sam.yaml",
                  *_recipe_overrides(fixtures, tmp_path, *attacks), cwd=root,
                  env={"HOME": str(home)}, timeout=120)
    err = out.stderr.strip()
    assert out.returncode == 2 and len(err.splitlines()) == 1, err
    assert err.startswith(f"samat: error: {resource}=download: {bad}: {REFUSED}")
    assert f"delete {bad} to download it again" in err
    assert not marker.exists()


def _recipe_overrides(fixtures: dict[str, Path], tmp_path: Path, pso: dict[str, Any],
                      iga: dict[str, Any] | None = None) -> list[str]:
    """The headline text recipe on the fixtures, every resource ``fallback`` unless given."""
    overrides = [
        f"task.model={fixtures['model']}", "task.dataset=files",
        f"task.train_file={fixtures['train_csv']}", f"task.eval_file={fixtures['eval_csv']}",
        "task.max_length=16", "task.download=false", "device=cpu",
    ]
    attacks = ({"hownet": "fallback", "pos_tagger": "fallback", **pso},
               {"embedding": "fallback", **(iga or {})})
    for i, settings in enumerate(attacks):
        settings = {"stopwords": "fallback", "cache_dir": tmp_path / "cache", **settings}
        overrides += [f"eval.attacks.{i}.{k}={v}" for k, v in settings.items()]
    return overrides


# ------------------------------------------------------------- real layouts still load, checked

def test_fixture_resources_load_as_written(fixtures: dict[str, Path]) -> None:
    bank = load_hownet(fixtures["hownet"], "x")
    assert bank == pickle.loads(fixtures["hownet"].read_bytes()) and "good" in bank
    loaded = load_counterfitted(fixtures["embedding"], "x")
    words = pickle.loads((fixtures["embedding"] / "wordlist.pickle").read_bytes())
    assert loaded.word2index == words and loaded.matrix.shape == (len(words), 16)
    assert loaded.nn.shape == (len(words), 10)
    assert isinstance(loaded.mse, defaultdict) and loaded.mse.default_factory is dict


def test_numpy_scalars_in_distance_tables_and_wordlist(fixtures, tmp_path: Path) -> None:
    folder = _paragramcf(fixtures, tmp_path)
    words = pickle.loads((folder / "wordlist.pickle").read_bytes())
    (folder / "wordlist.pickle").write_bytes(
        pickle.dumps({w: np.int64(i) for w, i in words.items()}, protocol=2))
    table = defaultdict(dict, {np.int64(0): {np.int64(3): np.float32(0.25)}, 1: {2: 0.5}})
    (folder / "mse_dist.p").write_bytes(pickle.dumps(table, protocol=2))
    loaded = load_counterfitted(folder, "x")
    assert loaded.mse == {0: {3: 0.25}, 1: {2: 0.5}} and loaded.word2index == words
    assert {type(k) for k in loaded.mse} == {int} and type(loaded.mse[0][3]) is float
    assert all(type(i) is int for i in loaded.word2index.values())
    loaded.mse[7][8] = 1.0  # TextAttack fills the cache as a defaultdict(dict)


@pytest.mark.parametrize(("file", "content", "message"), [
    ("paragram.npy", np.zeros(5, np.float32), "expected N x D floats"),
    ("paragram.npy", np.zeros((5, 3), np.int64), "expected N x D floats"),
    ("nn.npy", np.full((40, 3), 999), "rows of word indices in 0.."),
    ("wordlist.pickle", {"good": 10**6}, "dict of words to indices"),
    ("wordlist.pickle", ["good"], "dict of words to indices"),
    ("cos_sim.p", {0: {1: "near"}}, "{i: {j: distance}}"),
    ("mse_dist.p", {-1: {}}, "{i: {j: distance}}"),
])
def test_malformed_embedding_files(fixtures, tmp_path: Path, file: str, content: Any,
                                   message: str) -> None:
    folder = _paragramcf(fixtures, tmp_path)
    if file.endswith(".npy"):
        np.save(folder / file, content)
    else:
        (folder / file).write_bytes(pickle.dumps(content))
    with pytest.raises(MissingDataError) as info:
        load_counterfitted(folder, str(folder))
    _one_line(info, f"embedding={folder}: {folder / file}: ", message)


@pytest.mark.parametrize("content", [["good"], {"good": ["fine"]}, {"good": {"adj": "fine"}},
                                     {"good": {"adj": [1]}}, {3: {"adj": ["fine"]}}])
def test_malformed_hownet_bank(tmp_path: Path, content: Any) -> None:
    path = tmp_path / "bank.pkl"
    path.write_bytes(pickle.dumps(content))
    with pytest.raises(MissingDataError) as info:
        load_hownet(path, "download")
    _one_line(info, f"hownet=download: {path}: ", f"delete {path} to download it again")


# ----------------------------------------------------------------------------- the POS tagger

@pytest.fixture
def fake_flair(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """flair replaced by a recorder: the files ``SequenceTagger.load`` was given."""
    loaded: list[str] = []

    class SequenceTagger:
        @staticmethod
        def load(path: str) -> str:
            loaded.append(path)
            return "tagger"

    def hf_download(repo: str) -> str:
        return f"/hub/{repo}/pytorch_model.bin"

    flair = types.ModuleType("flair")
    models = types.ModuleType("flair.models")
    file_utils = types.ModuleType("flair.file_utils")
    models.SequenceTagger, file_utils.hf_download = SequenceTagger, hf_download
    for name, module in (("flair", flair), ("flair.models", models),
                         ("flair.file_utils", file_utils)):
        monkeypatch.setitem(sys.modules, name, module)
    return loaded


def test_hub_names_load_from_the_hub_never_a_local_namesake(fake_flair, tmp_path: Path,
                                                            monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)  # flair's own lookup would load these local files first
    (tmp_path / "flair").mkdir()
    for name in ("upos-fast", "flair/upos-english"):
        write_payload(tmp_path / name, tmp_path / "marker")
    assert load_tagger("upos-fast") == "tagger"
    load_tagger("flair/upos-english")
    assert fake_flair == ["/hub/flair/upos-english-fast/pytorch_model.bin",
                          "/hub/flair/upos-english/pytorch_model.bin"]
    assert not (tmp_path / "marker").exists()


def test_tagger_files_need_trust_and_existence(fake_flair, tmp_path: Path) -> None:
    tagger = write_payload(tmp_path / "tagger.pt", tmp_path / "marker")
    with pytest.raises(SamatError) as info:
        load_tagger(str(tagger))
    _one_line(info, f"pos_tagger={tagger}: ", "trust_pickle=true", "upos-fast")
    assert fake_flair == []
    assert load_tagger(str(tagger), trust_pickle=True) == "tagger"
    assert fake_flair == [str(tagger.resolve())]
    for spec in ("upos_fast", "ner-fast", str(tmp_path)):  # not a hub name, not a file
        with pytest.raises(MissingDataError, match="no such file, nor a flair model name"):
            load_tagger(spec, trust_pickle=True)


def test_trust_pickle_is_a_pso_parameter(model, tmp_path: Path) -> None:
    attack = _attack(model, tmp_path, "pso")
    assert attack.describe()["trust_pickle"] is False
    with pytest.raises(SamatError, match="trust_pickle must be true or false"):
        _attack(model, tmp_path, "pso", trust_pickle="yes")
    with pytest.raises(SamatError, match="Unknown key 'attack.trust_pickle'"):
        _attack(model, tmp_path, "iga", trust_pickle=True)
