"""samat.gitinfo against the real git CLI, in repositories each test creates.

Every ``git_info`` call runs with process creation patched to fail, so a test also proves that
nothing is executed; the expected answers come from ``git rev-parse HEAD`` and
``git status --porcelain --untracked-files=no`` (non-empty = dirty).
"""

from __future__ import annotations

import contextlib
import os
import random
import shutil
import struct
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from unittest import mock

import pytest

from samat import gitinfo
from samat.gitinfo import git_info

ENV = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")} | {
    "GIT_CONFIG_GLOBAL": os.devnull, "GIT_CONFIG_NOSYSTEM": "1",
    "GIT_AUTHOR_NAME": "Test", "GIT_AUTHOR_EMAIL": "test@example.com",
    "GIT_COMMITTER_NAME": "Test", "GIT_COMMITTER_EMAIL": "test@example.com",
}
SPAWNERS = ("subprocess.Popen", "os.system", "os.fork", "os.posix_spawn", "os.posix_spawnp",
            "os.execv", "os.execve")
FILES = {"a.txt": "alpha\n", "run.sh": "#!/bin/sh\n", "src/pkg/b.py": "beta\n",
         "src/pkg/c.py": "gamma\n", "src/d.py": "delta\n"}


def git(repo: Path, *args: str, check: bool = True) -> str:
    return subprocess.run(["git", "-C", str(repo), *args], env=ENV, capture_output=True,
                          text=True, check=check).stdout.strip()


def git_dirty(repo: Path) -> bool:
    """git's answer, without letting `git status` refresh (write) the index."""
    return bool(git(repo, "--no-optional-locks", "status", "--porcelain", "--untracked-files=no"))


def info(path: Path) -> dict[str, Any] | None:
    """git_info(path), with every way of starting a process made to fail."""
    with contextlib.ExitStack() as stack:
        for name in SPAWNERS:
            stack.enter_context(mock.patch(name, side_effect=AssertionError(f"{name} called")))
        return git_info(path)


def check(repo: Path, dirty: bool) -> None:
    """git_info and git agree on `repo`, and it is `dirty`."""
    assert info(repo) == {"commit": git(repo, "rev-parse", "HEAD"), "dirty": dirty}
    assert git_dirty(repo) is dirty


def write(root: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)


def commit(repo: Path, message: str = "change") -> None:
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", message)


def init(root: Path, *args: str) -> Path:
    root.mkdir(parents=True)
    git(root, "init", "-q", "-b", "main", *args)
    return root


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    root = init(tmp_path / "repo")
    write(root, FILES)
    (root / "link").symlink_to("a.txt")
    commit(root, "first")
    return root


def readd(repo: Path, name: str) -> None:
    """Re-stage an unchanged file: the index still equals HEAD but its cache-tree is invalid,
    so git_info must compare every entry with HEAD's trees."""
    git(repo, "rm", "-q", "--cached", name)
    git(repo, "add", name)
    assert gitinfo._read_index(repo / ".git" / "index").tree is None


def test_clean_right_after_commit(repo: Path) -> None:
    check(repo, False)
    for inner in (repo / "src" / "pkg", repo / "src" / "pkg" / "b.py", repo / "no" / "such"):
        assert info(inner) == info(repo)


def staged_then_restored(repo: Path) -> None:
    (repo / "a.txt").write_text("staged\n")
    git(repo, "add", "a.txt")
    (repo / "a.txt").write_text(FILES["a.txt"])


def file_to_directory(repo: Path) -> None:
    (repo / "a.txt").unlink()
    (repo / "a.txt").mkdir()


def assume_unchanged(repo: Path) -> None:
    git(repo, "update-index", "--assume-unchanged", "a.txt")
    (repo / "a.txt").write_text("hidden from git status\n")


def symlinked_directory(repo: Path) -> None:
    """Files behind a symlinked directory count as deleted, even with identical content."""
    elsewhere = repo.parent / "elsewhere"
    shutil.move(repo / "src" / "pkg", elsewhere)
    (repo / "src" / "pkg").symlink_to(elsewhere)


MUTATIONS: dict[str, tuple[Callable[[Path], Any], bool]] = {
    "modified": (lambda r: (r / "src/pkg/b.py").write_text("BETA, longer\n"), True),
    "deleted": (lambda r: (r / "src/d.py").unlink(), True),
    "staged then restored": (staged_then_restored, True),
    "new staged file": (lambda r: (write(r, {"new.txt": "new\n"}), git(r, "add", "new.txt")), True),
    "staged deletion": (lambda r: git(r, "rm", "-q", "--cached", "a.txt"), True),
    "intent to add": (lambda r: (write(r, {"new.txt": ""}), git(r, "add", "-N", "new.txt")), True),
    "chmod +x": (lambda r: (r / "run.sh").chmod(0o755), True),
    "symlink retargeted": (lambda r: ((r / "link").unlink(), (r / "link").symlink_to("run.sh")),
                           True),
    "file became a directory": (file_to_directory, True),
    "files behind a symlinked directory": (symlinked_directory, True),
    "index deleted": (lambda r: (r / ".git" / "index").unlink(), True),
    "untracked file": (lambda r: write(r, {"untracked.txt": "u\n", "new/dir/x": "x\n"}), False),
    "touched, same content": (lambda r: os.utime(r / "a.txt", (1, 1)), False),
    "assume-unchanged": (assume_unchanged, False),
    "re-staged unchanged file": (lambda r: readd(r, "src/pkg/b.py"), False),
}


@pytest.mark.parametrize("name", MUTATIONS)
def test_dirty_like_git(repo: Path, name: str) -> None:
    mutate, dirty = MUTATIONS[name]
    mutate(repo)
    check(repo, dirty)


def test_core_filemode_false_ignores_the_executable_bit(repo: Path) -> None:
    git(repo, "config", "core.fileMode", "false")
    (repo / "run.sh").chmod(0o755)
    check(repo, False)


def test_unmerged_paths_are_dirty(repo: Path) -> None:
    git(repo, "checkout", "-q", "-b", "other")
    write(repo, {"a.txt": "other\n"})
    commit(repo)
    git(repo, "checkout", "-q", "main")
    write(repo, {"a.txt": "main\n"})
    commit(repo)
    assert git(repo, "merge", "-q", "other", check=False) != "Already up to date."
    check(repo, True)


def test_stat_shortcut(repo: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A file whose stat data equals the index's is not read (git's shortcut). An edit keeping
    the size, with the mtime forced back to the index's, still changes the ctime, which git
    compares too (core.trustCtime) -- but in whole seconds (git is built without USE_NSEC), so
    git misses such an edit made within the second of the index's refresh. git_info compares
    nanoseconds and catches it; a second later git catches it too."""
    old_ns = 1_000_000_000 * 10**9 + 123_456_789  # 2001: older than the index, so not "racy"
    for name in [*FILES, "link"]:
        os.utime(repo / name, ns=(old_ns, old_ns), follow_symlinks=False)
    git(repo, "update-index", "--refresh")
    with monkeypatch.context() as patch:
        patch.setattr(gitinfo, "_blob_sha", mock.Mock(side_effect=AssertionError("file read")))
        check(repo, False)

    path = repo / "a.txt"
    (entry,) = [e for e in gitinfo._read_index(repo / ".git" / "index").entries
                if e.path == b"a.txt"]
    for content in ("alphA\n", "alphB\n"):  # same size, other content
        if content == "alphB\n":
            time.sleep(1.01 - time.time() % 1)  # into the next second
        path.write_text(content)
        os.utime(path, ns=(old_ns, old_ns))
        now = gitinfo._stat_data(os.lstat(path))
        changed = {i for i, (a, b) in enumerate(zip(now, entry.stat, strict=True)) if a != b}
        assert changed and changed <= {2, 3}  # only the ctime (seconds, nanoseconds) differs
        assert info(repo)["dirty"] is True
    check(repo, True)


def pack_entry_kinds(repo: Path) -> set[int]:
    kinds = set()
    for idx_path in (repo / ".git" / "objects" / "pack").glob("*.idx"):
        idx, pack = idx_path.read_bytes(), idx_path.with_suffix(".pack").read_bytes()
        (count,) = struct.unpack_from(">I", idx, 8 + 4 * 255)
        for i in range(count):
            offset = gitinfo._idx_offset(idx, idx[1032 + 20 * i:1052 + 20 * i])
            kinds.add(gitinfo._entry_header(pack, offset)[0])
    return kinds


def all_objects(repo: Path) -> dict[bytes, tuple[str, bytes]]:
    """Every object of `repo` as `git cat-file --batch` prints it."""
    out = subprocess.run(["git", "-C", str(repo), "cat-file", "--batch-all-objects", "--batch"],
                         env=ENV, capture_output=True, check=True).stdout
    objects, pos = {}, 0
    while pos < len(out):
        newline = out.index(b"\n", pos)
        sha, kind, size = out[pos:newline].split()
        start = newline + 1
        objects[bytes.fromhex(sha.decode())] = (kind.decode(), out[start:start + int(size)])
        pos = start + int(size) + 1
    return objects


@pytest.mark.parametrize("repack, delta_kind", [
    (["gc", "-q", "--aggressive", "--prune=now"], gitinfo._OFS_DELTA),
    (["repack", "-q", "-adf"], gitinfo._OFS_DELTA),
    (["-c", "repack.useDeltaBaseOffset=false", "repack", "-q", "-adf"], gitinfo._REF_DELTA),
], ids=["gc --aggressive", "repack -adf", "repack -adf with REF_DELTA"])
def test_packed_objects_and_deltas(repo: Path, repack: list[str], delta_kind: int) -> None:
    lines = [f"line {i}: " + "lorem ipsum " * 4 for i in range(6000)]  # ~330 KB
    for version in range(5):
        lines[-1 - version] = f"changed in version {version}"
        write(repo, {"big.txt": "\n".join(lines), "src/pkg/b.py": f"beta {version}\n"})
        commit(repo, f"version {version}")
    git(repo, *repack)
    assert not list((repo / ".git" / "objects").glob("??/*"))
    assert delta_kind in pack_entry_kinds(repo)
    with gitinfo._Objects(repo / ".git" / "objects") as objects:
        for sha, expected in all_objects(repo).items():
            assert objects.read(sha) == expected

    check(repo, False)
    readd(repo, "big.txt")
    check(repo, False)
    write(repo, {"src/pkg/c.py": "staged\n"})
    git(repo, "add", "src/pkg/c.py")
    check(repo, True)


def test_refs_packed_symbolic_and_detached(repo: Path) -> None:
    write(repo, {"a.txt": "second\n"})
    commit(repo)
    git(repo, "tag", "-a", "-m", "annotated", "v1")
    git(repo, "gc", "-q")
    assert not (repo / ".git" / "refs" / "heads" / "main").exists()
    assert "refs/heads/main" in (repo / ".git" / "packed-refs").read_text()
    check(repo, False)

    git(repo, "symbolic-ref", "refs/heads/alias", "refs/heads/main")
    git(repo, "symbolic-ref", "HEAD", "refs/heads/alias")
    check(repo, False)

    git(repo, "checkout", "-q", "--detach", "HEAD~1")
    assert (repo / ".git" / "HEAD").read_text().strip() == git(repo, "rev-parse", "HEAD~0")
    check(repo, False)


def test_unborn_branch_and_outside_git(tmp_path: Path) -> None:
    assert info(init(tmp_path / "unborn")) is None
    plain = tmp_path / "plain"
    plain.mkdir()
    assert git(plain, "rev-parse", "--git-dir", check=False) == ""  # not inside a repository
    assert info(plain) is None


def test_linked_worktree(repo: Path) -> None:
    write(repo, {"a.txt": "second\n"})
    commit(repo)
    worktree = repo.parent / "worktree"
    git(repo, "worktree", "add", "-q", "-b", "feature", str(worktree), "HEAD~1")
    assert (worktree / ".git").is_file()
    check(worktree, False)
    assert info(worktree)["commit"] == git(repo, "rev-parse", "HEAD~1")
    write(worktree, {"src/d.py": "changed\n"})
    check(worktree, True)
    check(repo, False)


@pytest.mark.parametrize("version", [2, 3, 4])
def test_index_versions(repo: Path, version: int) -> None:
    if version > 2:  # extended flags, which need version 3 or 4
        git(repo, "update-index", "--skip-worktree", "src/pkg/c.py")
        (repo / "src" / "pkg" / "c.py").unlink()
    git(repo, "update-index", "--index-version", str(version))
    assert (repo / ".git" / "index").read_bytes()[4:8] == struct.pack(">I", version)
    check(repo, False)
    readd(repo, "src/pkg/b.py")
    check(repo, False)
    write(repo, {"src/pkg/b.py": "changed\n"})
    check(repo, True)


def test_sparse_index(repo: Path) -> None:
    git(repo, "sparse-checkout", "set", "--cone", "--sparse-index", "keep")
    assert not (repo / "src").exists()
    entries = gitinfo._read_index(repo / ".git" / "index").entries
    assert (b"src/", gitinfo._DIR) in [(e.path, e.mode) for e in entries]
    check(repo, False)
    readd(repo, "a.txt")
    check(repo, False)
    write(repo, {"a.txt": "changed\n"})
    check(repo, True)


def test_submodule(repo: Path, tmp_path: Path) -> None:
    library = init(tmp_path / "library")
    write(library, {"lib.py": "lib\n"})
    commit(library)
    git(repo, "-c", "protocol.file.allow=always", "submodule", "add", "-q", str(library),
        "libs/lib")
    commit(repo, "add a submodule")
    sub = repo / "libs" / "lib"
    assert (sub / ".git").is_file()
    check(sub, False)
    check(repo, False)
    write(sub, {"lib.py": "changed\n"})
    check(sub, True)
    check(repo, True)
    commit(sub)  # the submodule is clean but at a commit the superproject does not record
    check(sub, False)
    check(repo, True)


def test_shared_clone_reads_alternates(repo: Path, tmp_path: Path) -> None:
    clone = tmp_path / "clone"
    git(repo, "clone", "-q", "--shared", str(repo), str(clone))
    assert (clone / ".git" / "objects" / "info" / "alternates").is_file()
    readd(clone, "a.txt")
    check(clone, False)


def test_sha256_repository_has_unknown_dirtiness(tmp_path: Path) -> None:
    root = init(tmp_path / "sha256", "--object-format=sha256")
    write(root, FILES)
    commit(root)
    commit_id = git(root, "rev-parse", "HEAD")
    assert len(commit_id) == 64
    assert info(root) == {"commit": commit_id, "dirty": None}


def rewrite_index(repo: Path, edit: Callable[[bytes], bytes]) -> None:
    path = repo / ".git" / "index"
    path.write_bytes(edit(path.read_bytes()))


@pytest.mark.parametrize("edit", [
    lambda d: d[:100] + bytes([d[100] ^ 0x40]) + d[101:],  # checksum mismatch
    lambda d: d[:50],
    lambda d: b"",
    lambda d: d[:4] + struct.pack(">I", 5) + d[8:-20] + bytes(20),  # unknown version
], ids=["bit flip", "truncated", "empty", "version 5"])
def test_corrupted_index_gives_unknown_dirtiness(repo: Path, edit: Callable[[bytes], bytes]
                                                 ) -> None:
    rewrite_index(repo, edit)
    assert info(repo) == {"commit": git(repo, "rev-parse", "HEAD"), "dirty": None}


def test_split_index_gives_unknown_dirtiness(repo: Path) -> None:
    git(repo, "update-index", "--split-index")
    assert info(repo)["dirty"] is None


def test_random_corruption_never_raises(repo: Path) -> None:
    """Corrupt bytes of an unchecksummed index, and of a pack, many times over."""
    git(repo, "gc", "-q", "--aggressive")
    readd(repo, "a.txt")  # so that HEAD's trees are read from the pack
    rng = random.Random(0)
    index = (repo / ".git" / "index").read_bytes()[:-20] + bytes(20)  # as with index.skipHash
    (pack,) = (repo / ".git" / "objects" / "pack").glob("*.pack")
    pack.chmod(0o644)
    packed = pack.read_bytes()
    for _ in range(150):
        data = bytearray(index)
        for _ in range(rng.randint(1, 4)):
            data[rng.randrange(12, len(data))] = rng.randrange(256)
        (repo / ".git" / "index").write_bytes(bytes(data))
        assert info(repo)["dirty"] in (True, False, None)
    (repo / ".git" / "index").write_bytes(index)
    for _ in range(150):
        data = bytearray(packed)
        data[rng.randrange(12, len(data))] = rng.randrange(256)
        pack.write_bytes(bytes(data))
        assert info(repo)["dirty"] in (True, False, None)


def test_idx_large_offsets() -> None:
    names = [b"\x10" + bytes(19), b"\x80" + b"\x01" * 19]
    fanout = [sum(name[0] <= byte for name in names) for byte in range(256)]
    idx = (b"\377tOc" + struct.pack(">I", 2) + struct.pack(">256I", *fanout) + b"".join(names)
           + bytes(8) + struct.pack(">II", 12, 0x80000000) + struct.pack(">Q", 5 << 32))
    assert gitinfo._idx_offset(idx, names[0]) == 12
    assert gitinfo._idx_offset(idx, names[1]) == 5 << 32
    assert gitinfo._idx_offset(idx, b"\x80" + bytes(19)) is None
    assert gitinfo._idx_offset(idx, bytes(20)) is None


def test_never_runs_what_the_repository_configures(repo: Path, tmp_path: Path) -> None:
    marker = tmp_path / "payload-ran"
    write(repo, {".gitattributes": "*.txt filter=evil\n"})
    commit(repo, "attributes")
    hook = tmp_path / "fsmonitor.sh"
    hook.write_text(f"#!/bin/sh\necho fsmonitor >> {marker}\n")
    hook.chmod(0o755)
    git(repo, "config", "core.fsmonitor", str(hook))
    git(repo, "config", "filter.evil.clean", f"echo filter >> {marker}; cat")
    write(repo, {"a.txt": "ALPHA\n"})
    assert info(repo)["dirty"] is True
    assert not marker.exists()
    git_dirty(repo)  # the payloads are live: git itself runs both
    assert set(marker.read_text().split()) == {"fsmonitor", "filter"}


def test_agrees_with_git_on_this_checkout() -> None:
    root = Path(__file__).resolve().parents[1]
    if not (root / ".git").exists():
        pytest.skip("not a git checkout")
    for _ in range(3):  # others may be editing this checkout meanwhile
        before = git(root, "rev-parse", "HEAD"), git_dirty(root)
        result = info(root / "core" / "samat")
        if (git(root, "rev-parse", "HEAD"), git_dirty(root)) == before:
            break
    assert result == {"commit": before[0], "dirty": before[1]}
