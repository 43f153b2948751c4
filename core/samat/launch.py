"""``samat run --nproc N``: the recipe checked here, then torchrun (``--standalone``) runs
``samat run`` in N processes on this machine (docs/distributed.md)."""

from __future__ import annotations

import logging
import sys
from collections.abc import Sequence

from samat.distributed import check_train, launched, resolve_device
from samat.errors import DIVERGED_EXIT, USAGE_EXIT, SamatError
from samat.recipe import load_recipe


def launch(nproc: int, recipe_path: str, overrides: Sequence[str], resume: bool) -> int:
    """Check the recipe and that it can train on ``nproc`` replicas of its device, then start
    the workers. Returns 0, 2 (or 3) if the workers stopped on a user error (or a divergence;
    rank 0 printed it), else 1."""
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.run import parse_args
    from torch.distributed.run import run as torchrun

    if nproc < 1:
        raise SamatError(f"--nproc: must be >= 1, got {nproc}")
    if launched():
        raise SamatError("--nproc: already running under torchrun; drop --nproc")
    recipe = load_recipe(recipe_path, overrides)
    check_train(recipe.train, nproc, resolve_device(recipe.device))
    args = parse_args(["--standalone", f"--nproc_per_node={nproc}", "-m", "samat", "run",
                       recipe_path, *overrides, *(["--resume"] if resume else [])])
    agent_log = logging.getLogger("torch.distributed.elastic")
    level = agent_log.level
    agent_log.setLevel(logging.CRITICAL)  # the workers report their own errors
    try:
        torchrun(args)
    except ChildFailedError as exc:
        _, failure = exc.get_first_failure()
        if failure.exitcode in (USAGE_EXIT, DIVERGED_EXIT):
            return failure.exitcode
        print(f"samat: error: worker process failed with exit code {failure.exitcode} "
              "(its output is above)", file=sys.stderr)
        return 1
    finally:
        agent_log.setLevel(level)
    return 0
