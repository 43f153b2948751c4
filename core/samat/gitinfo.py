"""Which git commit a result came from, read from the on-disk git format, executing nothing.

``git status`` runs whatever a repository's config asks for (``core.fsmonitor``, ``filter.*``
drivers, ...), so samat never runs git: :func:`git_info` reads ``HEAD``, refs, the index and the
object store (loose objects and version-2 packfiles) itself.

Dirty means the index differs from HEAD's tree or the work tree differs from the index
(untracked files ignored), as ``git status --porcelain --untracked-files=no`` would report it.
A work tree file whose stat data (size, mtime, ctime, inode, owner) equals the index's is trusted
unread -- git's own shortcut, including its "racy git" rule -- otherwise it is hashed. Unlike
git, no clean filter or end-of-line conversion is applied before hashing: such a file whose stat
data changed reports dirty even if git would call it clean. SHA-256 repositories, split
indexes and other unknown required index extensions give ``dirty: None``; the config is read
only for ``core.fileMode`` (no includes); ``GIT_DIR``-style environment variables and reftable
ref storage are not supported.
"""

from __future__ import annotations

import contextlib
import hashlib
import mmap
import os
import re
import stat
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

_HEX = re.compile(r"[0-9a-f]{40}(?:[0-9a-f]{24})?")
_MAX_SYMREFS = 5
_ENTRY = struct.Struct(">10I20sH")  # ctime s/ns, mtime s/ns, dev, ino, mode, uid, gid, size, sha
_ASSUME_VALID, _EXTENDED = 0x8000, 0x4000
_SKIP_WORKTREE, _INTENT_TO_ADD = 0x4000, 0x2000
_GITLINK, _DIR = 0o160000, 0o040000
_PACK_TYPES = {1: "commit", 2: "tree", 3: "blob", 4: "tag"}
_OFS_DELTA, _REF_DELTA = 6, 7
_CHUNK = 1 << 16


class _Undetermined(Exception):
    """The repository uses something this reader does not understand."""


# What a malformed repository can make the readers raise; any of these means "unknown".
_MALFORMED = (_Undetermined, OSError, ValueError, LookupError, struct.error, zlib.error,
              RecursionError, OverflowError)


@dataclass(frozen=True)
class _Repo:
    worktree: Path
    gitdir: Path  # HEAD and index (per worktree)
    common: Path  # refs, objects and config (shared by all worktrees)


class _Entry(NamedTuple):
    path: bytes
    mode: int
    sha: bytes
    stat: tuple[int, ...]  # mtime s/ns, ctime s/ns, ino, uid, gid, size (32-bit, as git stores)
    flags: int
    ext_flags: int


class _Index(NamedTuple):
    entries: list[_Entry]
    tree: bytes | None  # the cache-tree's root: HEAD's tree if the index still matches it
    mtime: int  # seconds; entries modified at or after it are "racily clean"


def git_info(path: Path) -> dict[str, Any] | None:
    """{"commit": <40-hex HEAD commit>, "dirty": bool | None} of the git work tree holding `path`
    (None outside a work tree or on an unborn branch). dirty=True: a tracked file differs from
    HEAD (modified, deleted, or staged); None: could not be determined."""
    try:
        repo = _find_repo(Path(path).resolve())
    except (OSError, RuntimeError):  # RuntimeError: a symlink loop (Python < 3.13)
        return None
    return None if repo is None else _info(repo)


def _find_repo(start: Path) -> _Repo | None:
    """The repository of the nearest directory, from `start` up, that holds a `.git`."""
    for directory in (start, *start.parents):
        if (directory / ".git").exists():
            return _repo_at(directory)
    return None


def _info(repo: _Repo) -> dict[str, Any] | None:
    commit = _head_commit(repo)
    return None if commit is None else {"commit": commit, "dirty": _dirty(repo, commit)}


def _read_text(path: Path) -> str | None:
    try:
        return path.read_text()
    except (OSError, ValueError):
        return None


def _repo_at(directory: Path) -> _Repo | None:
    """The repository whose work tree is `directory`: a `.git` directory or `gitdir:` file."""
    dotgit = directory / ".git"
    gitdir = dotgit
    if dotgit.is_file():
        text = _read_text(dotgit) or ""
        if not text.startswith("gitdir:"):
            return None
        gitdir = directory / text[len("gitdir:"):].strip()
    common = _read_text(gitdir / "commondir")
    if not (gitdir / "HEAD").is_file():
        return None
    return _Repo(directory, gitdir, gitdir / common.strip() if common else gitdir)


# --- HEAD and refs


def _head_commit(repo: _Repo) -> str | None:
    """HEAD's commit as hex, following symbolic refs through loose refs and packed-refs."""
    text = _read_text(repo.gitdir / "HEAD")
    for _ in range(_MAX_SYMREFS):
        if text is None:
            return None
        text = text.strip()
        if not text.startswith("ref:"):
            return text if _HEX.fullmatch(text) else None
        name = text[len("ref:"):].strip()
        parts = name.split("/")
        if parts[0] != "refs" or any(p in ("", ".", "..") for p in parts):
            return None
        text = _read_text(repo.common / name) or _packed_refs(repo.common).get(name)
    return None


def _packed_refs(common: Path) -> dict[str, str]:
    refs = {}
    for line in (_read_text(common / "packed-refs") or "").splitlines():
        if line and line[0] not in "#^":
            sha, _, name = line.partition(" ")
            refs[name] = sha
    return refs


def _config(path: Path) -> dict[str, str]:
    """`section.key` -> value of a git config file (no includes; subsections left unsplit)."""
    values, section = {}, ""
    for line in (_read_text(path) or "").splitlines():
        line = line.strip()
        if line.startswith("["):
            section = line[1:].partition("]")[0].strip().lower()
        elif line and line[0] not in "#;":
            key, _, value = line.partition("=")
            values[f"{section}.{key.strip().lower()}"] = value.strip()
    return values


# --- dirty


def _dirty(repo: _Repo, commit: str) -> bool | None:
    """Work tree vs index, then index vs HEAD; None if either cannot be read."""
    if len(commit) != 40:  # SHA-256 repository
        return None
    filemode = _config(repo.common / "config").get("core.filemode", "true").lower()
    try:
        index = _read_index(repo.gitdir / "index")
        if _worktree_differs(repo.worktree, index, filemode not in ("false", "no", "off", "0")):
            return True
        with _Objects(repo.common / "objects") as objects:
            return not _index_matches_head(objects, bytes.fromhex(commit), index)
    except _MALFORMED:
        return None


def _read_index(path: Path) -> _Index:
    """Parse an index file (versions 2-4); a missing one is empty, as for git."""
    try:
        with open(path, "rb") as f:  # the mtime of the very file read, even if replaced meanwhile
            data, mtime = f.read(), os.fstat(f.fileno()).st_mtime_ns // 10**9
    except FileNotFoundError:
        return _Index([], None, 0)
    version, count = struct.unpack_from(">4xII", data)
    if data[:4] != b"DIRC" or version not in (2, 3, 4):
        raise _Undetermined(f"index version {version}")
    if data[-20:] != bytes(20) and hashlib.sha1(data[:-20]).digest() != data[-20:]:
        raise ValueError("index checksum mismatch")
    entries, pos, path_bytes = [], 12, b""
    for _ in range(count):
        start = pos
        c_s, c_ns, m_s, m_ns, _dev, ino, mode, uid, gid, size, sha, flags = _ENTRY.unpack_from(
            data, pos)
        pos += _ENTRY.size
        ext_flags = 0
        if flags & _EXTENDED:
            (ext_flags,) = struct.unpack_from(">H", data, pos)
            pos += 2
        if version == 4:  # the previous path minus `strip` bytes, plus a suffix; no padding
            strip, pos = _varint(data, pos)
            if strip > len(path_bytes):
                raise ValueError("bad index path compression")
            end = data.index(b"\0", pos)
            path_bytes = path_bytes[:len(path_bytes) - strip] + data[pos:end]
            pos = end + 1
        else:  # NUL-terminated, padded to a multiple of 8 bytes
            end = data.index(b"\0", pos)
            path_bytes = data[pos:end]
            pos = start + ((end - start + 8) & ~7)
        stat_data = (m_s, m_ns, c_s, c_ns, ino, uid, gid, size)
        entries.append(_Entry(path_bytes, mode, sha, stat_data, flags, ext_flags))
    return _Index(entries, _read_extensions(data, pos), mtime)


def _read_extensions(data: bytes, pos: int) -> bytes | None:
    """The cache-tree's valid root tree, if any; refuses unknown required extensions."""
    tree = None
    while pos < len(data) - 20:
        sig, size = struct.unpack_from(">4sI", data, pos)
        body = data[pos + 8:pos + 8 + size]
        if sig == b"TREE":  # root entry: "" NUL "<entries> <subtrees>" LF [sha if entries >= 0]
            head, _, rest = body.partition(b"\n")
            if head[:1] == b"\0" and int(head[1:].split(b" ")[0]) >= 0:
                tree = rest[:20]
        elif sig[:1].islower() and sig != b"sdir":  # e.g. "link": a split index
            raise _Undetermined(f"index extension {sig!r}")
        pos += 8 + size
    return tree


def _varint(buf: bytes, pos: int) -> tuple[int, int]:
    """Git's offset varint (index v4 paths, OFS_DELTA bases) at `pos`: (value, next pos)."""
    byte = buf[pos]
    value = byte & 0x7F
    while byte & 0x80:
        pos += 1
        byte = buf[pos]
        value = ((value + 1) << 7) | (byte & 0x7F)
    return value, pos + 1


def _worktree_differs(worktree: Path, index: _Index, filemode: bool) -> bool:
    """Whether a tracked file differs from its index entry (or a path is unmerged)."""
    root, real_dirs = os.fsencode(worktree), {b""}
    for entry in index.entries:
        if (entry.flags >> 12) & 3 or entry.ext_flags & _INTENT_TO_ADD:  # unmerged or `add -N`
            return True
        if entry.flags & _ASSUME_VALID or entry.ext_flags & _SKIP_WORKTREE:
            continue
        if _entry_differs(root, entry, index.mtime, filemode, real_dirs):
            return True
    return False


def _entry_differs(root: bytes, entry: _Entry, index_mtime: int, filemode: bool,
                   real_dirs: set[bytes]) -> bool:
    """Missing, another type or executable bit, or (unless stat data vouches) other content."""
    parts = entry.path.split(b"/")
    if any(p in (b"", b".", b"..") or p.lower() == b".git" for p in parts):
        raise ValueError(f"unsafe index path {entry.path!r}")
    full = os.path.join(root, entry.path)
    try:
        if not _real_dirs(root, parts[:-1], real_dirs):  # git ignores files behind symlinks
            return True
        st = os.lstat(full)
    except (FileNotFoundError, NotADirectoryError):
        return True
    kind = entry.mode & 0o170000
    if kind == _GITLINK:
        return _submodule_differs(full, st, entry.sha)
    if kind != stat.S_IFMT(st.st_mode):
        return True
    if kind == stat.S_IFREG and filemode and (entry.mode ^ st.st_mode) & 0o100:
        return True
    if entry.stat == _stat_data(st) and entry.stat[0] < index_mtime:
        return False
    return _blob_sha(full, st) != entry.sha


def _real_dirs(root: bytes, parts: list[bytes], known: set[bytes]) -> bool:
    """Whether each leading directory of a path is a directory, not a symlink (memoized)."""
    for i in range(1, len(parts) + 1):
        directory = b"/".join(parts[:i])
        if directory not in known:
            if not stat.S_ISDIR(os.lstat(os.path.join(root, directory)).st_mode):
                return False
            known.add(directory)
    return True


def _stat_data(st: os.stat_result) -> tuple[int, ...]:
    values = (st.st_mtime_ns // 10**9, st.st_mtime_ns % 10**9, st.st_ctime_ns // 10**9,
              st.st_ctime_ns % 10**9, st.st_ino, st.st_uid, st.st_gid, st.st_size)
    return tuple(v & 0xFFFFFFFF for v in values)


def _blob_sha(path: bytes, st: os.stat_result) -> bytes:
    """Git's blob id of a file's content or a symlink's target."""
    if stat.S_ISLNK(st.st_mode):
        target = os.readlink(path)
        return hashlib.sha1(b"blob %d\0%s" % (len(target), target)).digest()
    digest = hashlib.sha1(b"blob %d\0" % st.st_size)
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            digest.update(chunk)
    return digest.digest()


def _submodule_differs(path: bytes, st: os.stat_result, sha: bytes) -> bool:
    """A submodule differs if checked out at another commit or dirty itself."""
    if not stat.S_ISDIR(st.st_mode):
        return True
    repo = _repo_at(Path(os.fsdecode(path)))
    if repo is None:  # not checked out
        return False
    info = _info(repo)
    if info is None or info["commit"] != sha.hex():
        return True
    if info["dirty"] is None:
        raise _Undetermined("submodule state unknown")
    return info["dirty"]


def _index_matches_head(objects: _Objects, commit: bytes, index: _Index) -> bool:
    """Whether the index's entries are exactly the files of `commit`'s tree."""
    kind, data = objects.read(commit)
    if kind != "commit" or not data.startswith(b"tree ") or data[45:46] != b"\n":
        raise ValueError("malformed commit")
    tree = bytes.fromhex(data[5:45].decode())
    if tree == index.tree:
        return True
    staged = {e.path: (_canonical_mode(e.mode), e.sha) for e in index.entries}
    sparse = {path for path, (mode, _) in staged.items() if mode == _DIR}  # sparse-index dirs
    head: dict[bytes, tuple[int, bytes]] = {}
    _flatten(objects, tree, b"", sparse, head)
    return head == staged


def _flatten(objects: _Objects, tree: bytes, prefix: bytes, sparse: set[bytes],
             out: dict[bytes, tuple[int, bytes]]) -> None:
    """Add `tree`'s files (and sparse directories) to `out` as {path: (mode, sha)}."""
    kind, data = objects.read(tree)
    if kind != "tree":
        raise ValueError("malformed tree")
    pos = 0
    while pos < len(data):
        space = data.index(b" ", pos)
        nul = data.index(b"\0", space)
        mode, path = int(data[pos:space], 8), prefix + data[space + 1:nul]
        sha, pos = data[nul + 1:nul + 21], nul + 21
        if mode == _DIR and path + b"/" not in sparse:
            _flatten(objects, sha, path + b"/", sparse, out)
        else:
            out[path + b"/" if mode == _DIR else path] = (_canonical_mode(mode), sha)


def _canonical_mode(mode: int) -> int:
    if stat.S_ISREG(mode):
        return 0o100755 if mode & 0o100 else 0o100644
    return mode


# --- object store


class _Objects:
    """Objects by id from loose files and version-2 packs (with alternates); a context manager."""

    def __init__(self, objects_dir: Path) -> None:
        self._dirs = _object_dirs(objects_dir)
        self._packs: list[tuple[mmap.mmap, mmap.mmap]] = []
        self._cache: dict[tuple[int, int], tuple[str, bytes]] = {}
        self._maps = contextlib.ExitStack()

    def __enter__(self) -> _Objects:
        with contextlib.ExitStack() as maps:
            for directory in self._dirs:
                for idx_path in sorted(directory.glob("pack/*.idx")):
                    pack_path = idx_path.with_suffix(".pack")
                    if pack_path.is_file():
                        idx = maps.enter_context(_mapped(idx_path))
                        if idx[:8] != b"\377tOc\0\0\0\2":
                            raise _Undetermined(f"pack index format of {idx_path}")
                        self._packs.append((idx, maps.enter_context(_mapped(pack_path))))
            self._maps = maps.pop_all()
        return self

    def __exit__(self, *exc: object) -> None:
        self._maps.close()

    def read(self, sha: bytes) -> tuple[str, bytes]:
        """(type, content) of the object `sha` (20 raw bytes)."""
        for directory in self._dirs:
            loose = directory / sha.hex()[:2] / sha.hex()[2:]
            if loose.is_file():
                header, _, content = zlib.decompress(loose.read_bytes()).partition(b"\0")
                kind, size = header.decode().split(" ")
                if int(size) != len(content):
                    raise ValueError(f"truncated object {sha.hex()}")
                return kind, content
        for number, (idx, pack) in enumerate(self._packs):
            offset = _idx_offset(idx, sha)
            if offset is not None:
                return self._unpack(number, pack, offset)
        raise KeyError(f"object {sha.hex()} not found")

    def _unpack(self, number: int, pack: mmap.mmap, offset: int) -> tuple[str, bytes]:
        """The pack entry at `offset`: walk its delta chain to a base, then apply the deltas."""
        deltas: list[tuple[int, bytes]] = []
        base = self._cache.get((number, offset))
        while base is None:
            kind, size, pos = _entry_header(pack, offset)
            if kind == _OFS_DELTA:
                distance, pos = _varint(pack, pos)
                if not 0 < distance <= offset:
                    raise ValueError("bad delta base offset")
                deltas.append((offset, _inflate(pack, pos, size)))
                offset -= distance
                base = self._cache.get((number, offset))
            elif kind == _REF_DELTA:
                deltas.append((offset, _inflate(pack, pos + 20, size)))
                base = self.read(pack[pos:pos + 20])
            else:
                base = (_PACK_TYPES[kind], _inflate(pack, pos, size))
                self._cache[(number, offset)] = base
        kind, data = base
        for delta_offset, delta in reversed(deltas):
            data = _apply_delta(data, delta)
            self._cache[(number, delta_offset)] = (kind, data)
        return kind, data


def _mapped(path: Path) -> mmap.mmap:
    """`path` mapped read-only (an mmap is its own context manager)."""
    with open(path, "rb") as f:
        return mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)


def _object_dirs(objects: Path) -> list[Path]:
    """`objects` and the directories its `info/alternates` name, transitively (at most 6)."""
    dirs, todo = [], [objects]
    while todo and len(dirs) < 6:
        directory = todo.pop(0)
        if directory not in dirs:
            dirs.append(directory)
            lines = (_read_text(directory / "info" / "alternates") or "").splitlines()
            todo += [directory / line for line in lines if line and not line.startswith("#")]
    return dirs


def _idx_offset(idx: mmap.mmap | bytes, sha: bytes) -> int | None:
    """Offset of `sha` in the pack of a version-2 `.idx` (fan-out, then binary search)."""
    (count,) = struct.unpack_from(">I", idx, 8 + 4 * 255)
    lo = struct.unpack_from(">I", idx, 8 + 4 * (sha[0] - 1))[0] if sha[0] else 0
    (hi,) = struct.unpack_from(">I", idx, 8 + 4 * sha[0])
    names = 8 + 4 * 256
    while lo < hi:
        mid = (lo + hi) // 2
        name = idx[names + 20 * mid:names + 20 * mid + 20]
        if name == sha:
            offsets = names + 24 * count  # after the names and their CRC-32s
            (offset,) = struct.unpack_from(">I", idx, offsets + 4 * mid)
            if offset & 0x80000000:  # an index into the table of 8-byte offsets that follows
                large = offsets + 4 * count + 8 * (offset & 0x7FFFFFFF)
                (offset,) = struct.unpack_from(">Q", idx, large)
            return offset
        lo, hi = (mid + 1, hi) if name < sha else (lo, mid)
    return None


def _entry_header(pack: mmap.mmap, offset: int) -> tuple[int, int, int]:
    """(type, inflated size, data position) of the pack entry at `offset`."""
    byte = pack[offset]
    kind, size, shift = (byte >> 4) & 7, byte & 0x0F, 4
    while byte & 0x80:
        offset += 1
        byte = pack[offset]
        size |= (byte & 0x7F) << shift
        shift += 7
    return kind, size, offset + 1


def _inflate(buf: mmap.mmap, pos: int, size: int) -> bytes:
    """The zlib stream at `pos`, which must inflate to `size` bytes."""
    stream, parts = zlib.decompressobj(), []
    while not stream.eof:
        chunk = buf[pos:pos + _CHUNK]
        if not chunk:
            raise ValueError("truncated zlib stream")
        parts.append(stream.decompress(chunk))
        pos += _CHUNK
    data = b"".join(parts)
    if len(data) != size:
        raise ValueError("object size mismatch")
    return data


def _apply_delta(base: bytes, delta: bytes) -> bytes:
    """Apply a git delta: sizes, then copy-from-base and insert-literal instructions."""
    base_size, pos = _size_varint(delta, 0)
    size, pos = _size_varint(delta, pos)
    if base_size != len(base):
        raise ValueError("delta base size mismatch")
    out = bytearray()
    while pos < len(delta):
        op = delta[pos]
        pos += 1
        if op & 0x80:  # copy: bits 0-3 select offset bytes, bits 4-6 size bytes
            offset = length = 0
            for i in range(4):
                if op & (1 << i):
                    offset |= delta[pos] << (8 * i)
                    pos += 1
            for i in range(3):
                if op & (0x10 << i):
                    length |= delta[pos] << (8 * i)
                    pos += 1
            length = length or 0x10000
            if offset + length > len(base):
                raise ValueError("delta copy out of range")
            out += base[offset:offset + length]
        elif op:  # insert the next `op` bytes
            out += delta[pos:pos + op]
            pos += op
        else:
            raise ValueError("reserved delta opcode 0")
    if len(out) != size:
        raise ValueError("delta result size mismatch")
    return bytes(out)


def _size_varint(buf: bytes, pos: int) -> tuple[int, int]:
    """A little-endian base-128 size (delta headers): (value, next pos)."""
    value = shift = 0
    while True:
        byte = buf[pos]
        value |= (byte & 0x7F) << shift
        shift += 7
        pos += 1
        if not byte & 0x80:
            return value, pos
