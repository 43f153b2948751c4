"""``samat completion bash|zsh``: a shell completion script generated from the argument parser
itself, so that every command, flag and choice it offers is the parser's own."""

from __future__ import annotations

import argparse
import shlex
from collections.abc import Iterable

RECIPE, DIRECTORY, FILE, NOTHING = "recipe", "dir", "file", "none"
"""What a word completes to, besides a fixed list of choices."""

_COMPLETE = {
    RECIPE: "compgen -d -- \"$cur\"; compgen -f -X '!*.yaml' -- \"$cur\"; "
            "compgen -f -X '!*.yml' -- \"$cur\"",
    DIRECTORY: "compgen -d -- \"$cur\"",
    FILE: "compgen -f -- \"$cur\"",
    NOTHING: "true",
}


ZSH_PRELUDE = """\
# zsh: the completion system first if ~/.zshrc has not loaded it (compdef is its), then its
# emulation of bash's complete/compgen, which runs the function below
(( $+functions[compdef] )) || { autoload -U compinit && compinit; }
autoload -U +X bashcompinit && bashcompinit
"""


def completion_script(parser: argparse.ArgumentParser, shell: str) -> str:
    """The completion script of ``parser``'s program for ``shell`` (``bash`` or ``zsh``; zsh
    runs the bash function through ``bashcompinit``)."""
    prog = parser.prog
    commands = _subcommands(parser)
    top = [*commands, *_flags(parser)]
    cases = "\n".join(_case(name, command) for name, command in commands.items())
    script = f"""\
# {prog} completion for {shell}, generated from {prog}'s own argument parser
_{prog}() {{
    local cur=${{COMP_WORDS[COMP_CWORD]}} prev=${{COMP_WORDS[COMP_CWORD-1]}}
    if (( COMP_CWORD == 1 )); then
        COMPREPLY=($(compgen -W {_words(top)} -- "$cur"))
        return
    fi
    local flags="" choices="" kind={FILE}
    case ${{COMP_WORDS[1]}} in
{cases}
        *) return ;;
    esac
    if [[ $cur == -* ]]; then
        COMPREPLY=($(compgen -W "$flags" -- "$cur"))
    elif [[ -n $choices ]]; then
        COMPREPLY=($(compgen -W "$choices" -- "$cur"))
    else
        case $kind in
{_kinds()}
        esac
    fi
}}
complete -o filenames -F _{prog} {prog}
"""
    if shell == "zsh":
        return ZSH_PRELUDE + script
    return script


def _subcommands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def _flags(parser: argparse.ArgumentParser) -> list[str]:
    return [s for a in parser._actions for s in a.option_strings if s.startswith("--")]


def _case(name: str, command: argparse.ArgumentParser) -> str:
    """The ``case`` branch of one command: its flags, the values its flags take, and what its
    positional arguments complete to."""
    positionals = [a for a in command._actions if not a.option_strings]
    choices = next((list(a.choices) for a in positionals if a.choices), [])
    kind = _kind(positionals[0]) if positionals else NOTHING
    values = []
    for action in command._actions:
        if action.option_strings and action.nargs != 0:
            pattern = "|".join(action.option_strings)
            if action.choices:
                values.append(f"{pattern}) COMPREPLY=($(compgen -W {_words(action.choices)} "
                              "-- \"$cur\")); return ;;")
            else:
                values.append(f"{pattern}) COMPREPLY=($({_COMPLETE[_kind(action)]})); return ;;")
    value_case = (f"\n            case $prev in {' '.join(values)} esac" if values else "")
    return (f"        {name}) flags={_words(_flags(command))}; choices={_words(choices)}; "
            f"kind={kind}{value_case} ;;")


def _kind(action: argparse.Action) -> str:
    """What the value of ``action`` completes to, read from its metavar, name and type."""
    if action.type is int or action.type is float:
        return NOTHING
    name = f"{action.metavar or ''} {action.dest}".upper()
    if "RECIPE" in name:
        return RECIPE
    if "DIR" in name or "OUT" in name:
        return DIRECTORY
    if action.option_strings and "PATH" not in name and "FILE" not in name:
        return NOTHING  # a free value: a label, a metric, a config key
    return FILE


def _kinds() -> str:
    return "\n".join(f"            {kind}) COMPREPLY=($({command})) ;;"
                     for kind, command in _COMPLETE.items())


def _words(words: Iterable[object]) -> str:
    return shlex.quote(" ".join(map(str, words)))
