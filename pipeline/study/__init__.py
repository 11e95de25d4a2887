"""Studies: sweeps of trainings as MLflow child runs under one parent run, and the report that compares them.

:mod:`pipeline.study.config` reads a sweep YAML and expands it into children; :mod:`pipeline.study.runner` runs
them one after another (or a few at a time) as ``python -m pipeline train`` subprocesses and can resume;
:mod:`pipeline.study.report` reads the finished children back from MLflow and writes the comparison report.
"""

from .config import ChildSpec, SweepConfig, load_sweep_config
from .runner import SweepRunner, SweepSummary

__all__ = ["ChildSpec", "SweepConfig", "SweepRunner", "SweepSummary", "load_sweep_config"]
