"""Command line: ``samat run | eval | validate | sweep | report | plugins | list | completion``.

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
from pathlib import Path
from typing import Any

from samat.errors import DIVERGED_EXIT, STOPPED_EXIT, USAGE_EXIT, SamatError

LIST_KINDS = ("tasks", "attacks", "perturbations", "metrics", "measures", "loggers", "recipes")
BROKEN_PIPE_EXIT = 141  # 128 + SIGPIPE, what a shell reports for a tool stopped by a closed pipe


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # argparse already exits 2; keep it to one line
        self.exit(2, f"samat: error: {message} (see samat --help)\n")

    def parse_known_args(self, args: Sequence[str] | None = None,
                         namespace: argparse.Namespace | None = None) -> Any:
        """Positionals after flags (``samat run R --resume key=v``) join the command's list
        positional (its overrides, axes or paths); a leftover flag is still an error."""
        namespace, extras = super().parse_known_args(args, namespace)
        lists = [a for a in self._get_positional_actions() if a.nargs in ("*", "+")]
        if lists and extras and not any(e.startswith("-") for e in extras):
            action = lists[-1]
            late = [action.type(e) if callable(action.type) else e for e in extras]
            setattr(namespace, action.dest, [*(getattr(namespace, action.dest) or []), *late])
            extras = []
        return namespace, extras


def _user_path(text: str) -> str:
    """A path from the command line, ``~`` expanded (also in ``--output=~/x``, which shells
    leave alone)."""
    return os.path.expanduser(text)


EXAMPLES = {
    "run": """\
  samat run recipes/digits/sam.yaml
  samat run recipes/digits/sam.yaml train.weight_perturbation.rho=0.2 seed=1
  samat run recipes/digits/sam.yaml --resume train.epochs=5
  samat run digits/sam --output ~/runs/sam-rho0.1
  samat run --nproc 2 recipes/cifar10/sam.yaml task.root=~/data/cifar""",
    "eval": """\
  samat eval runs/cifar10_sam/20261130-101500 eval.n_examples=1000
  samat eval colleague.safetensors recipes/cifar10/sgd.yaml --output ~/evals/colleague
  samat eval timm:resnet18 recipes/cifar10/sgd.yaml --resume task.pretrained=true""",
    "validate": """\
  samat validate recipes/digits/sam.yaml
  samat validate recipes/cifar10/sam.yaml task.root=~/data/cifar train.epochs=1""",
    "sweep": """\
  samat sweep recipes/digits/sam.yaml train.weight_perturbation.rho=0.05,0.1,0.2 seed=0,1
  samat sweep recipes/toy_duality_sweep.yaml --dry-run
  samat sweep recipes/toy_duality_sweep.yaml --launcher slurm sweep.launcher.partition=gpu
  samat sweep runs/toy_duality_sweep-sweep --status""",
    "report": """\
  samat report runs/toy_duality_sweep-sweep
  samat report runs/digits_sgd runs/digits_sam runs/digits_at_linf --format markdown --out ~/report
  samat report runs/cifar10_sweep --against paper""",
    "plugins": """\
  samat plugins
  samat plugins --json | head""",
    "list": """\
  samat list tasks
  samat list attacks | head""",
    "completion": """\
  samat completion bash > ~/.local/share/bash-completion/completions/samat
  eval "$(samat completion zsh)"          # in ~/.zshrc""",
}
"""``--help`` examples of each command."""


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="samat", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="store_true", help="print the version and exit")
    sub = parser.add_subparsers(dest="command", parser_class=_Parser)

    run = sub.add_parser("run", help="train and evaluate a recipe")
    run.add_argument("recipe", type=_user_path, help="a recipe YAML file, or a shipped "
                     "recipe's name (samat list recipes), e.g. cifar10/sam")
    run.add_argument("overrides", nargs="*", metavar="key.path=value",
                     help="override recipe values (the command line wins)")
    run.add_argument("--resume", action="store_true",
                     help="continue the last run of this recipe (or of output_dir)")
    run.add_argument("--nproc", type=int, metavar="N",
                     help="train data-parallel in N processes on this machine (via torchrun)")
    run.add_argument("--output", metavar="DIR", type=_user_path,
                     help="run directory (the same as output_dir=DIR; default: "
                     "runs/<name>/<time>)")

    evaluate = sub.add_parser(
        "eval", help="evaluate a trained model: a run directory, a weights file, timm:NAME, "
        "torchvision:NAME or a Hugging Face model (docs/eval.md)")
    evaluate.add_argument("source", metavar="SOURCE", type=_user_path)
    evaluate.add_argument("rest", nargs="*", metavar="[RECIPE] key.path=value",
                          help="an eval recipe (needed unless SOURCE is a run directory), then "
                          "overrides")
    evaluate.add_argument("--resume", action="store_true",
                          help="continue the last evaluation of this recipe (or of --output)")
    evaluate.add_argument("--output", metavar="DIR", type=_user_path,
                          help="eval directory (default: runs/<name>-eval/<time>)")
    evaluate.add_argument("--label", help="the row label in samat report")

    validate = sub.add_parser("validate", help="check a recipe completely, train nothing")
    validate.add_argument("recipe", type=_user_path)
    validate.add_argument("overrides", nargs="*", metavar="key.path=value")
    validate.add_argument("--print", action="store_true",
                          help="print the resolved recipe (extends and overrides applied) as "
                          "YAML, as a run's config.yaml holds it; builds nothing, needs no data")

    sweep = sub.add_parser(
        "sweep", help="run a grid of runs (the recipe's sweep: block and/or key=v1,v2 axes)")
    sweep.add_argument("recipe", metavar="RECIPE_OR_SWEEP_DIR", type=_user_path,
                       help="a recipe YAML file, or a sweep directory (its sweep.json)")
    sweep.add_argument("axes", nargs="*", metavar="key.path=v1,v2|key.path=value",
                       help="grid axes (comma-separated values) or overrides for every point")
    sweep.add_argument("--output", metavar="DIR", type=_user_path,
                       help="sweep directory (default: output_dir, else runs/<name>-sweep)")
    sweep.add_argument("--launcher", choices=("local", "slurm", "ray"),
                       help="where points run (default: the recipe's sweep.launcher, else local)")
    sweep.add_argument("--jobs", type=int,
                       help="local launcher: points run at once, each in its own process "
                       "(default 1)")
    sweep.add_argument("--gpus-per-job", type=int, metavar="K",
                       help="local launcher with --jobs: CUDA devices each job gets (default 1 "
                       "when there are GPUs)")
    sweep.add_argument("--dry-run", action="store_true",
                       help="validate every point, list them and the launcher's plan; run nothing")
    sweep.add_argument("--json", action="store_true", help="with --dry-run or --status: JSON")
    sweep.add_argument("--point", type=int, metavar="K",
                       help="run exactly point K (0-based, as --dry-run lists them)")
    sweep.add_argument("--status", action="store_true",
                       help="each point's state: pending, running (job, host), done, failed, "
                       "diverged")
    sweep.add_argument("--wait", action="store_true",
                       help="slurm: wait for the submitted points, then print the table")

    report = sub.add_parser("report", help="paper-style tables and plots from run directories")
    report.add_argument("paths", nargs="+", metavar="RUN_OR_SWEEP_DIR", type=_user_path)
    report.add_argument("--format", default="text", choices=("text", "markdown", "csv", "latex"),
                        help="what to print (default text); --out writes every format")
    report.add_argument("--metric", help="attack-result key for the attack columns, e.g. "
                        "attack_success_rate (default: the task's metric)")
    report.add_argument("--decimals", type=int, default=1)
    report.add_argument("--out", metavar="DIR", type=_user_path,
                        help="write report.md, report.csv, report.tex and PNG plots here")
    report.add_argument("--curve", action="append", default=[], metavar="KEY",
                        help="also plot metrics against this config key, e.g. "
                        "train.weight_perturbation.rho (repeatable)")
    report.add_argument("--extra", action="append", default=[], metavar="KEY",
                        help="also show this number from the task's report in metrics.json, "
                        "e.g. w_r for the section 4 model (repeatable)")
    report.add_argument("--scatter", nargs=2, action="append", default=[],
                        metavar=("MEASURE", "ATTACK"),
                        help="a measure against the metric under an attack (or natural) over "
                        "the runs, with Spearman's rank correlation; a PNG with --out "
                        "(repeatable)")
    report.add_argument("--against", choices=("paper",),
                        help="add the paper's numbers beside matching rows")

    plugins = sub.add_parser("plugins", help="list plugins with version, hooks and load errors")
    plugins.add_argument("--json", action="store_true", help="print JSON")

    lister = sub.add_parser("list", help="list registered tasks, attacks, perturbations, "
                            "metrics, measures or loggers, or the shipped recipes")
    lister.add_argument("kind", choices=LIST_KINDS)

    completion = sub.add_parser("completion", help="print a shell completion script")
    completion.add_argument("shell", choices=("bash", "zsh"))
    for name, command in sub.choices.items():
        if name in EXAMPLES:
            command.epilog = "examples:\n" + EXAMPLES[name]
            command.formatter_class = argparse.RawDescriptionHelpFormatter
    return parser


def _cmd_run(args: argparse.Namespace) -> int:
    from samat.lifeline import die_with_parent
    from samat.results import results_table
    from samat.runner import run

    die_with_parent()
    overrides = list(args.overrides)
    if args.output is not None:  # a JSON string is a YAML string: any path stays a path
        overrides.append(f"output_dir={json.dumps(args.output)}")
    if args.nproc is not None:
        from samat.launch import launch

        return launch(args.nproc, args.recipe, overrides, args.resume)
    with _log_to_stderr(), _graceful_stops():
        metrics = run(args.recipe, overrides, resume=args.resume)
    if os.environ.get("RANK", "0") == "0":  # under torchrun, rank 0 prints
        print(results_table(metrics))
    return 0


def _cmd_eval(args: argparse.Namespace) -> int:
    from samat.lifeline import die_with_parent
    from samat.model_eval import run_eval
    from samat.results import results_table

    die_with_parent()
    rest = list(args.rest)
    recipe = rest.pop(0) if rest and "=" not in rest[0] else None
    with _log_to_stderr(), _graceful_stops():
        _, metrics = run_eval(args.source, recipe, rest, resume=args.resume,
                              output=args.output, label=args.label)
    print(results_table(metrics))
    return 0


def _cmd_validate(args: argparse.Namespace) -> int:
    from samat.recipe import load_recipe
    from samat.runner import prepare

    recipe = load_recipe(args.recipe, args.overrides)
    if args.print:
        import yaml

        print(yaml.safe_dump(recipe.as_dict(), sort_keys=False), end="")
        return 0
    c, _ = prepare(recipe)
    n_params = sum(p.numel() for p in c.model.parameters())
    print(f"{args.recipe}: OK — task {recipe.task.name} ({n_params} parameters), "
          f"weight perturbation {c.weight.describe()}, input perturbation {c.input.describe()}, "
          f"{len(c.attacks)} attack(s): {', '.join(label for label, _ in c.attacks) or 'none'}"
          + (f", periodic evaluation under {c.eval_attack[0]}" if c.eval_attack else ""))
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


def _graceful_stops() -> Any:
    """SIGTERM and SIGUSR1 (a cluster's preemption or time-limit warning) make training
    checkpoint at the next step and stop with exit code 4, instead of dying mid-step."""
    import signal

    from samat.interrupts import stop_on

    return stop_on({signal.SIGTERM: "SIGTERM", signal.SIGUSR1: "SIGUSR1"})


def _cmd_sweep(args: argparse.Namespace) -> int:
    from samat.sweep import run_sweep

    if args.point is not None:
        from samat.lifeline import die_with_parent

        die_with_parent()
    sweep, root = _sweep_and_root(args)
    if args.point is not None:
        return _sweep_point(sweep, root, args.point)
    if args.status:
        return _sweep_status(sweep, root, args.json)
    launcher = _launcher(sweep, root, args)
    if args.dry_run:
        return _sweep_dry_run(sweep, root, launcher, args.json)
    with _log_to_stderr():
        run_sweep(sweep, root, launcher, wait=args.wait)
    if not launcher.blocking and not args.wait:
        if all(p.status(root) in ("done", "diverged") for p in sweep.points):
            print(f"nothing to submit: every point is done or diverged (results: samat report "
                  f"{root})")
        else:
            print(f"submitted to {launcher.name}; follow with: samat sweep {root} --status "
                  f"(results: samat report {root})")
        return 0
    from samat.report import write_report

    print(write_report([root]), end="")
    print(f"sweep directory: {root} ({len(sweep.points)} points; sweep.json, summary.md, "
          "summary.csv)")
    return 0


def _sweep_and_root(args: argparse.Namespace) -> tuple[Any, Path]:
    """The sweep of a recipe (with its axes) or of a sweep directory's manifest, and its
    output directory."""
    from samat.results import SWEEP_MANIFEST, is_run_dir
    from samat.sweep import default_root, load_sweep, sweep_from_manifest
    from samat.sweep.grid import launcher_settings, point_index

    source = Path(args.recipe)
    if source.is_dir() and (source / SWEEP_MANIFEST).is_file():
        if [a for a in args.axes if not a.startswith("sweep.launcher.")]:
            raise SamatError(f"{source} is a sweep directory: its points are fixed; pass only "
                             "sweep.launcher.KEY=value settings (or run the recipe instead)")
        sweep = sweep_from_manifest(source)
        sweep.launcher = launcher_settings(sweep.launcher, args.axes)
        if args.point is not None:
            point_index(sweep, args.point)
        return sweep, Path(args.output) if args.output else source
    if source.is_dir():
        what = ("a run directory (samat run's), not a sweep's" if is_run_dir(source)
                else f"a directory without {SWEEP_MANIFEST}")
        raise SamatError(f"{source} is {what}: give a sweep recipe (.yaml) or the directory "
                         f"of a sweep (the one holding {SWEEP_MANIFEST})")
    build = args.point if args.point is not None else not args.status
    sweep = load_sweep(source, args.axes, build=build)
    return sweep, Path(args.output) if args.output else default_root(sweep)


def _launcher(sweep: Any, root: Path, args: argparse.Namespace) -> Any:
    from samat.sweep import make_launcher

    extra = {key: value for key, value in (("jobs", args.jobs),
                                           ("gpus_per_job", args.gpus_per_job))
             if value is not None}
    return make_launcher(sweep, root, args.launcher, **extra)


def _sweep_point(sweep: Any, root: Path, index: int) -> int:
    """``--point K``: run exactly that point; the exit code says how it ended."""
    from samat.results import make_dirs
    from samat.sweep import MANIFEST, run_point
    from samat.sweep.grid import check_same_sweep, write_manifest

    check_same_sweep(sweep, root)
    if not (root / MANIFEST).is_file():  # a user's own array script: the first point writes it
        make_dirs(root, "--output")
        write_manifest(sweep, root)
    job = {"launcher": os.environ.get("SAMAT_LAUNCHER", "point")}
    if os.environ.get("SLURM_JOB_ID"):
        array = os.environ.get("SLURM_ARRAY_JOB_ID")
        job["job_id"] = (f"{array}_{os.environ.get('SLURM_ARRAY_TASK_ID')}" if array
                         else os.environ["SLURM_JOB_ID"])
    with _log_to_stderr(), _graceful_stops():
        outcome = run_point(sweep, root, index, job=job)
    return {"diverged": DIVERGED_EXIT, "failed": USAGE_EXIT, "stopped": STOPPED_EXIT}.get(
        outcome, 0)


def _sweep_status(sweep: Any, root: Path, as_json: bool) -> int:
    from samat.results import format_table
    from samat.sweep import make_launcher, point_states

    try:
        launcher = make_launcher(sweep, root)
    except SamatError:
        launcher = None  # e.g. an uninstalled launcher: the run directories still tell
    states = point_states(sweep, root, launcher)
    if as_json:
        print(json.dumps(list(states.values()), indent=2))
        return 0
    rows = [[s["index"], s["name"], s["state"], s["job_id"] or "", s["host"] or "", s["detail"]]
            for s in states.values()]
    print(format_table(["#", "point", "state", "job", "host", "detail"], rows))
    counts: dict[str, int] = {}
    for s in states.values():
        counts[s["state"]] = counts.get(s["state"], 0) + 1
    print(f"{len(states)} point(s) under {root}: "
          + ", ".join(f"{n} {state}" for state, n in sorted(counts.items())))
    return 0


def _sweep_dry_run(sweep: Any, root: Path, launcher: Any, as_json: bool) -> int:
    from samat.results import format_table
    from samat.sweep.point import SKIPPED

    entries = [{"index": i, "name": p.name, "status": p.status(root),
                "overrides": p.overrides, "run_dir": str(root / p.name)}
               for i, p in enumerate(sweep.points)]
    todo = [e["index"] for e in entries if e["status"] not in SKIPPED]
    if as_json:
        print(json.dumps({"root": str(root), "launcher": launcher.name,
                          "plan": launcher.plan(todo), "points": entries}, indent=2))
        return 0
    rows = [[e["index"], e["name"], e["status"], " ".join(e["overrides"])] for e in entries]
    print(format_table(["#", "point", "status", "overrides"], rows))
    print(f"{len(sweep.points)} point(s) under {root}")
    for line in launcher.plan(todo):
        print(line)
    return 0


def _cmd_report(args: argparse.Namespace) -> int:
    from samat.report import write_report

    print(write_report(args.paths, fmt=args.format, attack_metric=args.metric,
                       decimals=args.decimals, out=args.out, curves=args.curve,
                       against=args.against, extras=args.extra, scatter=args.scatter),
          end="")
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

    if args.kind == "recipes":
        from samat.recipe import shipped_recipes

        print(format_table(["recipe", "description"], [list(r) for r in shipped_recipes()]))
        return 0
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


def _cmd_completion(args: argparse.Namespace) -> int:
    from samat.completion import completion_script

    print(completion_script(_parser(), args.shell), end="")
    return 0


COMMANDS = {"run": _cmd_run, "eval": _cmd_eval, "validate": _cmd_validate, "sweep": _cmd_sweep,
            "report": _cmd_report, "plugins": _cmd_plugins, "list": _cmd_list,
            "completion": _cmd_completion}


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``samat`` console script. Output into a pipe closed early (``samat
    list tasks | head``) ends quietly with 141, as a tool killed by SIGPIPE."""
    try:
        code = _main(argv)
        sys.stdout.flush()
    except BrokenPipeError:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # exit's flush: quiet
        return BROKEN_PIPE_EXIT
    return code


def _main(argv: Sequence[str] | None) -> int:
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
