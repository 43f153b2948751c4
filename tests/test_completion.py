"""``samat completion bash|zsh`` completes in the real shells: bash through its ``complete``
protocol, zsh interactively (a pseudo-terminal driven by zsh's own zpty module)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from samat.cli import main

# Types each line then TAB in an interactive zsh (zsh -f: no user files), and a key bound to a
# widget that appends the edited line to OUT; one line at a time, as completion may discard
# typeahead. $1 OUT, $2 the completion script, $3 what runs before it, then the lines.
ZSH_DRIVER = r"""
zmodload zsh/zpty
out=$1; script=$2; before=$3; shift 3
zpty z zsh -f -i
zpty -w z "PS1='> '; $before; source ${(q)script}"
zpty -w z "dump() { print -r -- \"[\$BUFFER]\" >> ${(q)out}; BUFFER=''; }; zle -N dump"
zpty -w z "bindkey '^X' dump"
n=0
for line in "$@"; do
  zpty -w -n z "$line"$'\t\C-x'
  (( n++ ))
  for i in {1..300}; do
    [[ -f $out && $(wc -l < $out) -ge $n ]] && break
    while zpty -r -t z chunk; do :; done
    sleep 0.1
  done
done
zpty -d z
"""

TYPED = {  # what is typed before TAB -> the line after it
    "samat sw": "samat sweep",
    "samat list p": "samat list perturbations",
    "samat sweep r.yaml --la": "samat sweep r.yaml --launcher",
    "samat sweep r.yaml --launcher s": "samat sweep r.yaml --launcher slurm",
    "samat run recipes/": "samat run recipes/sam.yaml",  # .yaml files only, not notes.txt
}


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    (tmp_path / "recipes").mkdir()
    (tmp_path / "recipes" / "sam.yaml").touch()
    (tmp_path / "recipes" / "notes.txt").touch()
    return tmp_path


def _script(shell: str, directory: Path, capsys: pytest.CaptureFixture) -> Path:
    assert main(["completion", shell]) == 0
    script = directory / f"samat.{shell}"
    script.write_text(capsys.readouterr().out)
    return script


def test_bash_completion_script_is_valid_and_completes(workdir: Path, capsys) -> None:
    bash = shutil.which("bash")
    if bash is None:
        pytest.skip("no bash on this machine")
    script = _script("bash", workdir, capsys)
    assert subprocess.run([bash, "-n", str(script)]).returncode == 0

    def complete(typed: str) -> str:
        words = typed.split(" ")
        call = (f"source {script}; COMP_WORDS=({typed}); COMP_CWORD={len(words) - 1}; "
                "_samat; printf '%s\\n' \"${COMPREPLY[@]}\"")
        out = subprocess.run([bash, "-c", call], cwd=workdir, capture_output=True, text=True)
        replies = out.stdout.split()
        assert len(replies) == 1, (typed, replies)
        return " ".join([*words[:-1], replies[0]])

    assert {typed: complete(typed) for typed in TYPED} == TYPED


@pytest.mark.parametrize("before", [
    "autoload -U compinit && compinit -u",  # as a ~/.zshrc with completion loaded
    "true",  # a bare zsh: the script loads the completion system itself
])
def test_zsh_completion_completes_in_an_interactive_zsh(workdir: Path, capsys, before: str
                                                        ) -> None:
    zsh = shutil.which("zsh")
    if zsh is None:
        pytest.skip("no zsh on this machine (make test installs it with apt-get when root)")
    script = _script("zsh", workdir, capsys)
    driver, out = workdir / "drive.zsh", workdir / "lines"
    driver.write_text(ZSH_DRIVER)
    subprocess.run([zsh, "-f", str(driver), str(out), str(script), before, *TYPED],
                   cwd=workdir, timeout=120, check=True)
    lines = out.read_text().splitlines() if out.exists() else []
    assert lines == [f"[{line}]" for line in TYPED.values()]
