"""The MLflow model registry: register exported models, read them back, move the ``champion``.

:func:`register_version` (called by the export stage inside its MLflow run) logs one MLflow 3
*logged model* and registers it as a new version of ``featherface-v1`` or ``featherface-nano-b``:

- the ONNX graph through the ``mlflow.onnx`` flavour (``mlflow.onnx.load_model`` or
  ``mlflow.pyfunc.load_model`` on ``models:/<name>@champion``), its signature read from the
  graph's inputs and outputs;
- the PyTorch model as this package's checkpoint (weights plus builder name and config, never a
  pickled module) in the logged model's ``extra_files/``; :func:`load_registered_checkpoint`
  rebuilds the network from it.

Why not ``mlflow.pytorch.log_model``: its ``pickle`` format pickles the module, so loading runs
arbitrary code and needs the very classes that produced it (the checkpoint format exists to avoid
both); its ``pt2`` format (``torch.export`` with dynamic image sizes) cannot serialise these
detectors, whose feature sizes are ``ceil(H / s)`` of a symbolic ``H``.

Version tags: ``featherface.arch``, ``params_total`` and ``featherface.checkpoint`` (the
checkpoint's path inside the logged model) at registration; ``ap_hard``,
``featherface.promotion`` (``champion`` or ``refused``) and ``featherface.promotion_reason``
when :func:`promote_version` judges the version. The champion's ``ap_hard`` tag is the figure
later candidates are compared with.
"""

from __future__ import annotations

import importlib
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from featherface.errors import FeatherFaceError
from featherface.export.promotion import Decision, ModelRecord, ParamBudget, decide_promotion

CHAMPION_ALIAS = "champion"
TAG_ARCH = "featherface.arch"
TAG_CHECKPOINT = "featherface.checkpoint"
TAG_PARAMS = "params_total"
TAG_AP_HARD = "ap_hard"
TAG_PROMOTION = "featherface.promotion"
TAG_REASON = "featherface.promotion_reason"


def onnx_signature(model: Any) -> Any:
    """An MLflow ``ModelSignature`` of an ``onnx.ModelProto``: one ``TensorSpec`` per graph
    input and output, symbolic dimensions as ``-1``."""
    import numpy as np
    from mlflow.models import ModelSignature
    from mlflow.types import Schema, TensorSpec
    from onnx.helper import tensor_dtype_to_np_dtype

    initializers = {tensor.name for tensor in model.graph.initializer}

    def schema(values: Any) -> Schema:
        specs = []
        for value in values:
            if value.name in initializers:
                continue
            tensor = value.type.tensor_type
            shape = tuple(d.dim_value if d.HasField("dim_value") else -1 for d in tensor.shape.dim)
            dtype = np.dtype(tensor_dtype_to_np_dtype(tensor.elem_type))
            specs.append(TensorSpec(dtype, shape, value.name))
        return Schema(specs)

    return ModelSignature(inputs=schema(model.graph.input), outputs=schema(model.graph.output))


def _checkpoint_tags(checkpoint_path: Path) -> dict[str, str]:
    """``featherface.arch``, ``params_total`` and ``featherface.checkpoint`` of a checkpoint."""
    from featherface.models.checkpoint import checkpoint_arch, load_checkpoint
    from featherface.models.complexity import params_total

    model = load_checkpoint(checkpoint_path)
    arch = checkpoint_arch(checkpoint_path)
    return {
        TAG_ARCH: str(arch),
        TAG_PARAMS: str(params_total(model)),
        TAG_CHECKPOINT: f"extra_files/{checkpoint_path.name}",
    }


def register_version(
    name: str,
    onnx_path: str | Path,
    checkpoint_path: str | Path,
    tags: Mapping[str, str] | None = None,
) -> str:
    """Log ``onnx_path`` (``mlflow.onnx``) with ``checkpoint_path`` as an extra file, register
    the logged model as a new version of ``name`` and return the version number.

    Call this inside the stage's run (:func:`featherface.tracking.stage_run`) so the logged model
    and version link to it. The version is tagged with the
    checkpoint's ``featherface.arch``, true ``params_total`` and ``featherface.checkpoint``, plus
    ``tags``.
    """
    import mlflow
    import onnx

    onnx_path, checkpoint_path = Path(onnx_path), Path(checkpoint_path)
    for path in (onnx_path, checkpoint_path):
        if not path.is_file():
            raise FeatherFaceError(f"{path}: file to register not found")
    version_tags = {**_checkpoint_tags(checkpoint_path), **dict(tags or {})}
    graph = onnx.load(str(onnx_path))
    importlib.import_module("mlflow.onnx")
    info = mlflow.onnx.log_model(
        graph,
        name=name,
        signature=onnx_signature(graph),
        extra_files=[str(checkpoint_path)],
        save_as_external_data=False,
        # What a pyfunc needs to run the graph, pinned; also spares MLflow's import scan.
        pip_requirements=mlflow.onnx.get_default_pip_requirements(),
        tags={TAG_ARCH: version_tags[TAG_ARCH]},
    )
    version = mlflow.register_model(info.model_uri, name, tags=version_tags)
    return str(version.version)


def registry_client(uri: str | None = None) -> Any:
    """An ``MlflowClient`` on ``uri`` (default: :func:`featherface.tracking.tracking_uri`) for
    both tracking and registry; a missing sqlite file is an error, not a new empty store."""
    from mlflow import MlflowClient

    from featherface.tracking import tracking_uri

    uri = uri or tracking_uri()
    if uri.startswith("sqlite:///") and not Path(uri.removeprefix("sqlite:///")).is_file():
        raise FeatherFaceError(f"{uri}: no MLflow store there (run the pipeline first)")
    return MlflowClient(tracking_uri=uri, registry_uri=uri)


def _registered(client: Any, name: str) -> Any:
    from mlflow.exceptions import MlflowException

    try:
        return client.get_registered_model(name)
    except MlflowException:
        raise FeatherFaceError(f"no registered model {name!r} in {client.tracking_uri}") from None


def resolve_version(client: Any, name: str, version: str | None = None) -> Any:
    """The ``ModelVersion`` ``version`` of ``name``, or its latest version when ``None``."""
    from mlflow.exceptions import MlflowException

    _registered(client, name)
    if version is None:
        versions = client.search_model_versions(f"name = '{name}'")
        if not versions:
            raise FeatherFaceError(f"registered model {name!r} has no versions")
        return max(versions, key=lambda entry: int(entry.version))
    try:
        return client.get_model_version(name, str(version))
    except MlflowException:
        raise FeatherFaceError(f"registered model {name!r} has no version {version}") from None


def champion_version(client: Any, name: str) -> Any | None:
    """The version of ``name`` holding the ``champion`` alias, or ``None``."""
    aliases = _registered(client, name).aliases
    if CHAMPION_ALIAS not in aliases:
        return None
    return client.get_model_version(name, str(aliases[CHAMPION_ALIAS]))


def _tag_number(version: Any, key: str) -> float | None:
    value = version.tags.get(key)
    if value is None:
        return None
    try:
        return float(value)
    except ValueError:
        raise FeatherFaceError(
            f"{version.name} version {version.version}: tag {key}={value!r} is not a number"
        ) from None


def version_record(version: Any, figures: tuple[float, int] | None = None) -> ModelRecord:
    """The :class:`ModelRecord` of a ``ModelVersion``: ``figures`` = ``(ap_hard,
    params_total)`` when given, else its ``ap_hard`` and ``params_total`` tags."""
    if figures is not None:
        return ModelRecord(str(version.version), figures[0], figures[1])
    ap_hard, params = _tag_number(version, TAG_AP_HARD), _tag_number(version, TAG_PARAMS)
    for key, value in ((TAG_AP_HARD, ap_hard), (TAG_PARAMS, params)):
        if value is None:
            raise FeatherFaceError(
                f"{version.name} version {version.version} has no {key} tag; "
                "give the evaluate stage's metrics (--metrics)"
            )
    return ModelRecord(str(version.version), float(ap_hard), int(params))


def promote_version(
    client: Any,
    name: str,
    tolerance: float,
    budget: ParamBudget,
    version: str | None = None,
    figures: tuple[float, int] | None = None,
) -> Decision:
    """Judge a version of ``name`` (default: the latest) against the current champion with
    :func:`~featherface.export.promotion.decide_promotion`; on acceptance move the ``champion``
    alias to it. Either way the version is tagged with its ``ap_hard``, ``params_total`` and
    the decision. ``figures``: ``(ap_hard, params_total)`` from the evaluate stage, else the
    version's tags."""
    candidate_version = resolve_version(client, name, version)
    candidate = version_record(candidate_version, figures)
    current = champion_version(client, name)
    champion = None if current is None else version_record(current)
    decision = decide_promotion(candidate, champion, tolerance, budget)
    tags = {
        TAG_AP_HARD: repr(candidate.ap_hard),
        TAG_PARAMS: str(candidate.params_total),
        TAG_PROMOTION: CHAMPION_ALIAS if decision.promote else "refused",
        TAG_REASON: decision.reason,
    }
    for key, value in tags.items():
        client.set_model_version_tag(name, candidate.version, key, value)
    if decision.promote:
        client.set_registered_model_alias(name, CHAMPION_ALIAS, candidate.version)
    return decision


def load_registered_checkpoint(
    client: Any, name: str, reference: str = CHAMPION_ALIAS, **overrides: Any
) -> Any:
    """Rebuild the PyTorch network of a registered version from its checkpoint.

    ``reference``: an alias (default ``champion``) or a version number; ``overrides`` go to the
    model builder as in :func:`featherface.models.checkpoint.load_checkpoint`.
    """
    from mlflow.artifacts import download_artifacts

    from featherface.models.checkpoint import load_checkpoint

    if reference.isdigit():
        version = resolve_version(client, name, reference)
    else:
        aliases = _registered(client, name).aliases
        if reference not in aliases:
            raise FeatherFaceError(f"registered model {name!r} has no alias {reference!r}")
        version = client.get_model_version(name, str(aliases[reference]))
    inside = version.tags.get(TAG_CHECKPOINT)
    if inside is None:
        raise FeatherFaceError(f"{name} version {version.version} has no {TAG_CHECKPOINT} tag")
    model_id = version.model_id or version.source.removeprefix("models:/")
    location = client.get_logged_model(model_id).artifact_location
    with tempfile.TemporaryDirectory() as folder:
        local = download_artifacts(artifact_uri=f"{location}/{inside}", dst_path=folder)
        return load_checkpoint(local, **overrides)
