"""Command line: ``samat run | validate | sweep | report | plugins | list``.

Every user error prints one line ``samat: error: ...`` and exits with code 2.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

from samat.errors import USAGE_EXIT, SamatError

LIST_KINDS = ("tasks", "attacks", "perturbations", "metrics")


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
    run.add_argument("--nproc", type=int, metavar="N",
                     help="train data-parallel in N processes on this machine (via torchrun)")

    validate = sub.add_parser("validate", help="check a recipe completely, train nothing")
    validate.add_argument("recipe")
    validate.add_argument("overrides", nargs="*", metavar="key.path=value")

    sweep = sub.add_parser(
        "sweep", help="run a grid of runs (the recipe's sweep: block and/or key=v1,v2 axes)")
    sweep.add_argument("recipe", help="path to a recipe YAML file")
    sweep.add_argument("axes", nargs="*", metavar="key.path=v1,v2|key.path=value",
                       help="grid axes (comma-separated values) or overrides for every point")
    sweep.add_argument("--output", metavar="DIR",
                       help="sweep directory (default: output_dir, else runs/<name>-sweep)")
    sweep.add_argument("--jobs", type=int, default=1,
                       help="points run at once, each in its own process (default 1)")
    sweep.add_argument("--dry-run", action="store_true",
                       help="list the points and their status, run nothing")

    report = sub.add_parser("report", help="paper-style tables and plots from run directories")
    report.add_argument("paths", nargs="+", metavar="RUN_OR_SWEEP_DIR")
    report.add_argument("--format", default="text", choices=("text", "markdown", "csv", "latex"),
                        help="what to print (default text); --out writes every format")
    report.add_argument("--metric", help="attack-result key for the attack columns, e.g. "
                        "attack_success_rate (default: the task's metric)")
    report.add_argument("--decimals", type=int, default=1)
    report.add_argument("--out", metavar="DIR",
                        help="write report.md, report.csv, report.tex and PNG plots here")
    report.add_argument("--curve", action="append", default=[], metavar="KEY",
                        help="also plot metrics against this config key, e.g. "
                        "train.weight_perturbation.rho (repeatable)")
    report.add_argument("--extra", action="append", default=[], metavar="KEY",
                        help="also show this number from the task's report in metrics.json, "
                        "e.g. w_r for the section 4 model (repeatable)")
    report.add_argument("--against", choices=("paper",),
                        help="add the paper's numbers beside matching rows")

    plugins = sub.add_parser("plugins", help="list plugins with version, hooks and load errors")
    plugins.add_argument("--json", action="store_true", help="print JSON")

    lister = sub.add_parser("list", help="list registered tasks, attacks, perturbations or "
                            "metrics")
    lister.add_argument("kind", choices=LIST_KINDS)
    return parser


def _cmd_run(args: argparse.Namespace) -> int:
    from samat.lifeline import die_with_parent
    from samat.results import results_table
    from samat.run import run

    die_with_parent()
    if args.nproc is not None:
        from samat.launch import launch

        return launch(args.nproc, args.recipe, args.overrides, args.resume)
    with _log_to_stderr():
        metrics = run(args.recipe, args.overrides, resume=args.resume)
    if os.environ.get("RANK", "0") == "0":  # under torchrun, rank 0 prints
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


@contextmanager
def _log_to_stderr() -> Iterator[None]:
    """samat's own progress on stderr (not libraries') for the duration of a command."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(message)s"))
    handler.addFilter(lambda record: not getattr(record, "samat_file_only", False))
    logger = logging.getLogger("samat")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        yield
    finally:
        logger.removeHandler(handler)


def _cmd_sweep(args: argparse.Namespace) -> int:
    from pathlib import Path

    from samat.results import format_table
    from samat.sweep import default_root, load_sweep, run_sweep

    sweep = load_sweep(args.recipe, args.axes)
    root = Path(args.output) if args.output else default_root(sweep)
    if args.dry_run:
        rows = [[p.name, p.status(root), " ".join(p.overrides)] for p in sweep.points]
        print(format_table(["point", "status", "overrides"], rows))
        print(f"{len(sweep.points)} point(s) under {root}")
        return 0
    from samat.report import write_report

    with _log_to_stderr():
        run_sweep(sweep, root, args.jobs)
    print(write_report([root]), end="")
    print(f"sweep directory: {root} ({len(sweep.points)} points; sweep.json, summary.md, "
          "summary.csv)")
    return 0


def _cmd_report(args: argparse.Namespace) -> int:
    from samat.report import write_report

    print(write_report(args.paths, fmt=args.format, attack_metric=args.metric,
                       decimals=args.decimals, out=args.out, curves=args.curve,
                       against=args.against, extras=args.extra), end="")
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
    elif args.kind == "metrics":
        rows = [[e.name, e.plugin, e.description,
                 "" if e.conflict else ("higher" if e.factory.higher_is_better else "lower")]
                for e in regs.metrics]
        print(format_table(["metric", "plugin", "title", "better"], rows))
    else:
        reg = getattr(regs, args.kind)
        rows = [[e.name, e.plugin, e.description] for e in reg]
        print(format_table([args.kind[:-1], "plugin", "description"], rows))
    return 0


COMMANDS = {"run": _cmd_run, "validate": _cmd_validate, "sweep": _cmd_sweep,
            "report": _cmd_report, "plugins": _cmd_plugins, "list": _cmd_list}


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``samat`` console script."""
    parser = _parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse's usage errors (printed already) and --help
        return exc.code if isinstance(exc.code, int) else USAGE_EXIT
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
        if os.environ.get("RANK", "0") == "0":  # under torchrun every rank has the same error
            print(f"samat: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("samat: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
