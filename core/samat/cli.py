"""Command line: ``samat run | validate | plugins | list``.

Every user error prints one line ``samat: error: ...`` and exits with code 2.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Sequence

from samat.errors import SamatError

LIST_KINDS = ("tasks", "attacks", "perturbations")


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # argparse already exits 2; keep it to one line
        self.exit(2, f"samat: error: {message} (see samat --help)\n")


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="samat", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="store_true", help="print the version and exit")
    sub = parser.add_subparsers(dest="command", parser_class=_Parser)

    run = sub.add_parser("run", help="train and evaluate a recipe")
    run.add_argument("recipe", help="path to a recipe YAML file")
    run.add_argument("overrides", nargs="*", metavar="key.path=value",
                     help="override recipe values (the command line wins)")
    run.add_argument("--resume", action="store_true",
                     help="continue the last run of this recipe (or of output_dir)")

    validate = sub.add_parser("validate", help="check a recipe completely, train nothing")
    validate.add_argument("recipe")
    validate.add_argument("overrides", nargs="*", metavar="key.path=value")

    plugins = sub.add_parser("plugins", help="list plugins with version, hooks and load errors")
    plugins.add_argument("--json", action="store_true", help="print JSON")

    lister = sub.add_parser("list", help="list registered tasks, attacks or perturbations")
    lister.add_argument("kind", choices=LIST_KINDS)
    return parser


def _cmd_run(args: argparse.Namespace) -> int:
    from samat.results import results_table
    from samat.run import run

    handler = logging.StreamHandler(sys.stderr)  # samat's own progress only, not libraries'
    handler.setFormatter(logging.Formatter("%(message)s"))
    logger = logging.getLogger("samat")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    metrics = run(args.recipe, args.overrides, resume=args.resume)
    print(results_table(metrics))
    return 0


def _cmd_validate(args: argparse.Namespace) -> int:
    from samat.recipe import load_recipe
    from samat.run import prepare

    recipe = load_recipe(args.recipe, args.overrides)
    c, _ = prepare(recipe)
    n_params = sum(p.numel() for p in c.model.parameters())
    print(f"{args.recipe}: OK — task {recipe.task.name} ({n_params} parameters), "
          f"weight perturbation {c.weight.describe()}, input perturbation {c.input.describe()}, "
          f"{len(c.attacks)} attack(s): {', '.join(label for label, _ in c.attacks) or 'none'}")
    return 0


def _cmd_plugins(args: argparse.Namespace) -> int:
    from samat.plugins import plugin_infos
    from samat.results import format_table

    infos = plugin_infos()
    if args.json:
        print(json.dumps([i.as_dict() for i in infos], indent=2))
        return 0
    rows = [[i.name, i.version, i.source, ", ".join(h.removeprefix("samat_") for h in i.hooks),
             "disabled" if i.disabled else (i.error or "ok")] for i in infos]
    print(format_table(["plugin", "version", "source", "hooks", "status"], rows))
    return 0


def _cmd_list(args: argparse.Namespace) -> int:
    from samat.plugins import registries
    from samat.results import format_table

    regs = registries()
    if args.kind == "perturbations":
        groups = [("weight", regs.weight_perturbations), ("input", regs.input_perturbations)]
        rows = [[e.name, kind, e.plugin, e.description] for kind, reg in groups for e in reg]
        print(format_table(["perturbation", "acts on", "plugin", "description"], rows))
    else:
        reg = getattr(regs, args.kind)
        rows = [[e.name, e.plugin, e.description] for e in reg]
        print(format_table([args.kind[:-1], "plugin", "description"], rows))
    return 0


COMMANDS = {"run": _cmd_run, "validate": _cmd_validate, "plugins": _cmd_plugins,
            "list": _cmd_list}


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``samat`` console script."""
    parser = _parser()
    args = parser.parse_args(argv)
    if args.version:
        import samat

        print(f"samat {samat.__version__}")
        return 0
    if args.command is None:
        parser.print_help()
        return 2
    try:
        return COMMANDS[args.command](args)
    except SamatError as exc:
        print(f"samat: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("samat: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
