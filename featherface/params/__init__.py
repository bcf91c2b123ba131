"""Typed access to ``params.yaml``: one frozen dataclass per section, unknown keys rejected.

Stages read only their own sections. A key that is missing takes the dataclass default; a key
that is unknown, of the wrong type or out of its range is a one-line
:class:`~featherface.errors.ParamsError` naming the file and the dotted key
(``params.yaml: teacher.epochs must be at least 1, got 0``), so a typo in
``dvc exp run -S data.synthetc.seed=1`` or an impossible value fails at loading instead of being
ignored or failing deep inside a stage.

The package is a leaf: it imports nothing of ``featherface`` but :mod:`featherface.errors`.
Sections live in :mod:`.data`, :mod:`.training` and :mod:`.deploy`, their range checks in
:mod:`.checks`; :mod:`.loading` holds :class:`Params` and the checked loading.
"""

from featherface.params.data import DataParams, ModelParams, SyntheticConfig
from featherface.params.deploy import (
    EvaluateParams,
    ExportParams,
    PostprocessSettings,
    TrackingParams,
)
from featherface.params.loading import Params, build, load_params, section_dict
from featherface.params.training import (
    DistillationWeights,
    DistillParams,
    FinetuneParams,
    LaunchParams,
    PruneParams,
    TrainParams,
)

__all__ = [
    "DataParams",
    "DistillParams",
    "DistillationWeights",
    "EvaluateParams",
    "ExportParams",
    "FinetuneParams",
    "LaunchParams",
    "ModelParams",
    "Params",
    "PostprocessSettings",
    "PruneParams",
    "SyntheticConfig",
    "TrackingParams",
    "TrainParams",
    "build",
    "load_params",
    "section_dict",
]
