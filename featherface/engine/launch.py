"""Re-launch a training stage under ``torchrun`` when ``launch`` asks for more than one process.

A training command (``featherface teacher``, ``distill``, ``finetune``) calls
:func:`torchrun_command` first. With ``launch.nproc_per_node == 1`` and ``launch.nnodes == 1``, or
inside a process that torchrun started (``LOCAL_RANK`` is set), it returns ``None`` and the
command trains in this process. Otherwise the command runs

    python -m torch.distributed.run --nproc_per_node P --nnodes N <rendezvous>
        -m featherface <the same command and options>

and exits with its status. One node (``nnodes == 1``) uses ``--standalone``. Several nodes meet
at ``launch.rdzv_endpoint`` (``host:port`` on the node of rank 0) with fixed node ranks: this
node's is ``$FEATHERFACE_NODE_RANK`` (0 when unset). Node 0 runs ``dvc repro``; every other node
runs the same stage command with its own rank when the stage starts. Each process trains on its
shard of every epoch; global rank 0 (on node 0) alone writes files and logs to MLflow
(:mod:`featherface.engine.distributed`), so the outputs land where DVC expects them.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence

from featherface.errors import FeatherFaceError
from featherface.params import LaunchParams

NODE_RANK_ENV = "FEATHERFACE_NODE_RANK"


def under_torchrun() -> bool:
    """Whether torchrun started this process."""
    return "LOCAL_RANK" in os.environ


def torchrun_command(
    launch: LaunchParams, stage: str, arguments: Sequence[str]
) -> list[str] | None:
    """The command that re-runs ``featherface <arguments>`` under torchrun, or ``None`` when
    this process should train itself (module doc). ``stage`` is for messages."""
    if (launch.nproc_per_node == 1 and launch.nnodes == 1) or under_torchrun():
        return None
    command = [sys.executable, "-m", "torch.distributed.run"]
    command += [f"--nproc_per_node={launch.nproc_per_node}", f"--nnodes={launch.nnodes}"]
    if launch.nnodes == 1:
        command.append("--standalone")
    else:
        rank = os.environ.get(NODE_RANK_ENV, "0")
        if not rank.isdigit() or int(rank) >= launch.nnodes:
            raise FeatherFaceError(
                f"{stage}: ${NODE_RANK_ENV} must be a node rank from 0 to {launch.nnodes - 1}, "
                f"got {rank!r}"
            )
        host, _, port = launch.rdzv_endpoint.rpartition(":")
        command += [f"--node_rank={rank}", f"--master_addr={host}", f"--master_port={port}"]
    return [*command, "-m", "featherface", *arguments]
