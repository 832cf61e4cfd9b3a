"""The Hydra launcher of ``launcher=batched``: :func:`pyro_bnn.app.batched.launch_batched` behind Hydra's launcher
interface. Hydra imports this module whenever it looks for plugins, so it imports nothing of the library: the work is
imported when a sweep launches."""

from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence

from hydra.core.config_store import ConfigStore
from hydra.core.utils import JobReturn, configure_log, setup_globals
from hydra.plugins.launcher import Launcher
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig


@dataclass
class BatchedLauncherConf:
    _target_: str = "hydra_plugins.pyro_bnn_batched_launcher.batched_launcher.BatchedLauncher"
    #: Processes that write a trained batch's jobs' results (scores, figures, files): 0, one per core; 1, this one.
    finishers: int = 0


ConfigStore.instance().store(group="hydra/launcher", name="pyro_bnn_batched", node=BatchedLauncherConf,
                             provider="pyro_bnn")


class BatchedLauncher(Launcher):
    """Hydra's basic launcher (the jobs in this process), with the jobs that can be trained as one batch of models
    trained so (:mod:`pyro_bnn.app.batched`)."""

    def __init__(self, finishers: int = 0) -> None:
        super().__init__()
        self.finishers = finishers
        self.config: Optional[DictConfig] = None
        self.task_function: Optional[TaskFunction] = None
        self.hydra_context: Optional[HydraContext] = None

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig) -> None:
        from pyro_bnn.app.batched import remember_compositions

        self.config, self.hydra_context, self.task_function = config, hydra_context, task_function
        remember_compositions(hydra_context.config_loader)

    def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> Sequence[JobReturn]:
        from pyro_bnn.app.batched import launch_batched

        setup_globals()
        configure_log(self.config.hydra.hydra_logging, self.config.hydra.verbose)
        Path(str(self.config.hydra.sweep.dir)).mkdir(parents=True, exist_ok=True)
        returns = launch_batched(self.hydra_context, self.task_function, self.config, job_overrides, initial_job_idx,
                                 self.finishers)
        configure_log(self.config.hydra.hydra_logging, self.config.hydra.verbose)
        return returns
