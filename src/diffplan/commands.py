"""The subcommands one ``diffplan`` call runs, which a sweep's jobs may name: subcommand
name -> ``(options dataclass, function running it)``. ``diffplan sweep`` itself is added in
:mod:`diffplan.cli` (a sweep does not run sweeps)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from diffplan.agents.train_expert import TrainAgentConfig, train_agent
from diffplan.baselines.command import BaselineConfig, baseline
from diffplan.collect import CollectConfig, collect
from diffplan.data.sources import InfoConfig, show_info
from diffplan.evaluation.evaluate import EvaluateConfig, evaluate
from diffplan.evaluation.pooled import PoolConfig, pool_command
from diffplan.evaluation.results import ReportConfig, report_command
from diffplan.evaluation.selection import SelectCheckpointConfig, select_checkpoint
from diffplan.finetune import FinetuneConfig, finetune
from diffplan.make_datasets import MakeDatasetsConfig, make_datasets
from diffplan.run import RunConfig, run
from diffplan.training import (
    TrainConfig,
    TrainDynamicsConfig,
    TrainValueConfig,
    train,
    train_dynamics,
    train_value,
)

# Add new subcommands here.
JOB_COMMANDS: dict[str, tuple[type, Callable[[Any], Any]]] = {
    "run": (RunConfig, run),
    "train-agent": (TrainAgentConfig, train_agent),
    "collect": (CollectConfig, collect),
    "make-datasets": (MakeDatasetsConfig, make_datasets),
    "info": (InfoConfig, show_info),
    "train": (TrainConfig, train),
    "train-value": (TrainValueConfig, train_value),
    "train-dynamics": (TrainDynamicsConfig, train_dynamics),
    "evaluate": (EvaluateConfig, evaluate),
    "select-checkpoint": (SelectCheckpointConfig, select_checkpoint),
    "baseline": (BaselineConfig, baseline),
    "pool": (PoolConfig, pool_command),
    "report": (ReportConfig, report_command),
    "finetune": (FinetuneConfig, finetune),
}
