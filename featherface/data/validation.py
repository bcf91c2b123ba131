"""Great Expectations checks over the canonical tables, and the policy that acts on them.

The suite (GX Core 1.x, ephemeral context: nothing is written to a GX project folder) checks:

images
    ``image_id`` present and unique; ``(split, path)`` unique; ``width``/``height`` >= 1;
    ``split`` in ``train``/``val``; the file decodes with the recorded size (a file that does
    not decode at all is an error of its own, ``<image>: cannot decode image (<reason>)``).
faces
    ``image_id`` present and belonging to an image; ``(image_id, face_index)`` unique;
    ``negative_size``: neither ``w`` nor ``h`` below 0 (a corrupt box: WIDER has boxes with a zero
    side, never a negative one); the box inside the image within ``box_tolerance_px``
    (``x >= -tol``, ``y >= -tol``, ``x + w - width <= tol``, ``y + h - height <= tol``);
    landmarks missing or near their box (the largest distance of a landmark outside the box,
    divided by ``max(w, h)``, at most ``landmark_tolerance``); every WIDER attribute within its
    range (:data:`~featherface.data.schema.ATTRIBUTE_RANGES`).

Policy (:func:`validate_tables`): faces marked ``invalid`` by WIDER and boxes with a zero side
(``w == 0`` or ``h == 0``, none negative) are dropped and counted (``invalid``, ``zero_size``)
before the suite runs, as the RetinaFace training code does. A failed *structural* expectation
(ids, files, sizes) is always an error naming the first offending file and line; a failed *row*
expectation (negative size, box, landmark, attribute range) is an error too, unless
``on_bad_rows="drop"``, in which case the failing faces are dropped and counted under the check's
:attr:`Check.name`. Either way the report keeps, for every failing row, the file and line it came
from (:attr:`CheckResult.failing_sources`, :meth:`ValidationReport.failure_lines`).
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from PIL import Image

from featherface.data.layout import image_error
from featherface.data.schema import ATTRIBUTE_RANGES, LANDMARK_COLUMNS, SPLITS
from featherface.errors import AnnotationError

os.environ.setdefault("GX_ANALYTICS_ENABLED", "False")


@dataclass(frozen=True)
class Check:
    """One expectation: the table it runs on, whether it is structural, and a description.

    ``key`` names the check in :attr:`ValidationReport.dropped` (default: the description).
    """

    table: str
    structural: bool
    description: str
    expectation: Any
    key: str = ""

    @property
    def name(self) -> str:
        return self.key or self.description


@dataclass(frozen=True)
class RowSource:
    """Where a table row came from: a file and its 1-based line (``None`` when unknown)."""

    file: str
    line: int | None

    def __str__(self) -> str:
        return f"{self.file}:{self.line}" if self.line is not None else self.file


@dataclass
class CheckResult:
    """Outcome of one :class:`Check`: failing row positions (0-based, in the checked table) and,
    in the same order, the source file and line of each (``"<table>"`` without source columns).
    """

    check: Check
    success: bool
    element_count: int
    failing_rows: list[int]
    failing_sources: list[RowSource] = field(default_factory=list)


@dataclass
class ValidationReport:
    """All check results plus the counts of rows the policy dropped."""

    results: list[CheckResult]
    dropped: dict[str, int] = field(default_factory=dict)

    @property
    def success(self) -> bool:
        return all(result.success for result in self.results)

    def failure_lines(self, limit: int | None = None) -> list[str]:
        """One line per failing row, ``<file>:<line>: <table>: <check>``, checks in suite order
        and rows in table order; with ``limit``, at most that many per check followed by
        ``<table>: <check>: ... and N more rows``."""
        lines: list[str] = []
        for result in self.results:
            where = f"{result.check.table}: {result.check.description}"
            sources = result.failing_sources
            shown = sources if limit is None else sources[:limit]
            lines += [f"{source}: {where}" for source in shown]
            if len(sources) > len(shown):
                lines.append(f"{where}: ... and {len(sources) - len(shown)} more rows")
        return lines

    def to_dict(self) -> dict[str, Any]:
        checks = []
        for r in self.results:
            entry = {
                "table": r.check.table,
                "structural": r.check.structural,
                "check": r.check.description,
                "expectation": r.check.expectation.expectation_type,
                "success": r.success,
                "rows": r.element_count,
                "failing": len(r.failing_rows),
            }
            if r.failing_sources:
                entry["failing_at"] = [str(source) for source in r.failing_sources]
            checks.append(entry)
        return {"success": self.success, "dropped": self.dropped, "checks": checks}


def _decode(path: Path) -> tuple[int, int] | AnnotationError:
    try:
        with Image.open(path) as image:
            image.load()
            return image.size
    except FileNotFoundError:
        return AnnotationError(path, "image not found")
    except Exception as error:  # decoders raise OSError, ValueError, SyntaxError, bomb errors...
        return image_error(path, error)


def decode_images(
    paths: list[Path], workers: int = 4
) -> tuple[np.ndarray, list[AnnotationError | None]]:
    """Fully decode each image: ``int64[n, 2]`` of (width, height) (``-1`` where it fails) and,
    per image, ``None`` or the error ``<path>: cannot decode image (<reason>)``."""
    with ThreadPoolExecutor(max_workers=workers) as pool:
        outcomes = list(pool.map(_decode, paths))
    errors = [item if isinstance(item, AnnotationError) else None for item in outcomes]
    sizes = [(-1, -1) if isinstance(item, AnnotationError) else item for item in outcomes]
    return np.array(sizes, dtype=np.int64).reshape(-1, 2), errors


def decoded_sizes(paths: list[Path], workers: int = 4) -> np.ndarray:
    """Fully decode each image; ``int64[n, 2]`` of (width, height), ``-1`` where it fails."""
    return decode_images(paths, workers)[0]


def face_checks_frame(faces: pd.DataFrame, images: pd.DataFrame) -> pd.DataFrame:
    """Faces with the derived columns the suite checks: overflow past each image edge and the
    relative landmark distance outside the box (NaN when the face has no landmarks)."""
    sizes = images.drop_duplicates("image_id").set_index("image_id")[["width", "height"]]
    width = faces["image_id"].map(sizes["width"]).to_numpy(float)
    height = faces["image_id"].map(sizes["height"]).to_numpy(float)
    x, y = faces["x"].to_numpy(float), faces["y"].to_numpy(float)
    w, h = faces["w"].to_numpy(float), faces["h"].to_numpy(float)
    points = faces[list(LANDMARK_COLUMNS)].to_numpy(float).reshape(-1, 5, 2)
    outside_x = np.maximum(x[:, None] - points[..., 0], points[..., 0] - (x + w)[:, None])
    outside_y = np.maximum(y[:, None] - points[..., 1], points[..., 1] - (y + h)[:, None])
    outside = np.maximum(np.maximum(outside_x, outside_y), 0.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        scale = np.maximum(np.maximum(w, h), 1.0)
        offset = np.where(np.isnan(points).any(axis=(1, 2)), np.nan, outside.max(axis=1) / scale)
    return faces.assign(
        smallest_side=np.minimum(w, h),
        image_width=width,
        overflow_right=x + w - width,
        overflow_bottom=y + h - height,
        landmark_offset=offset,
    )


def build_checks(box_tolerance_px: float, landmark_tolerance: float) -> list[Check]:
    """The expectations described in the module docstring."""
    import great_expectations as gx

    e = gx.expectations
    tol = box_tolerance_px
    checks = [
        Check(
            "images", True, "image_id present", e.ExpectColumnValuesToNotBeNull(column="image_id")
        ),
        Check("images", True, "image_id unique", e.ExpectColumnValuesToBeUnique(column="image_id")),
        Check(
            "images",
            True,
            "path unique within a split",
            e.ExpectCompoundColumnsToBeUnique(column_list=["split", "path"]),
        ),
        Check(
            "images",
            True,
            "width >= 1",
            e.ExpectColumnValuesToBeBetween(column="width", min_value=1),
        ),
        Check(
            "images",
            True,
            "height >= 1",
            e.ExpectColumnValuesToBeBetween(column="height", min_value=1),
        ),
        Check(
            "images",
            True,
            "split is known",
            e.ExpectColumnValuesToBeInSet(column="split", value_set=list(SPLITS)),
        ),
        Check(
            "images",
            True,
            "image decodes with the recorded width",
            e.ExpectColumnPairValuesToBeEqual(column_A="width", column_B="decoded_width"),
        ),
        Check(
            "images",
            True,
            "image decodes with the recorded height",
            e.ExpectColumnPairValuesToBeEqual(column_A="height", column_B="decoded_height"),
        ),
        Check(
            "faces", True, "image_id present", e.ExpectColumnValuesToNotBeNull(column="image_id")
        ),
        Check(
            "faces",
            True,
            "face belongs to a known image",
            e.ExpectColumnValuesToNotBeNull(column="image_width"),
        ),
        Check(
            "faces",
            True,
            "(image_id, face_index) unique",
            e.ExpectCompoundColumnsToBeUnique(column_list=["image_id", "face_index"]),
        ),
        Check(
            "faces",
            False,
            "negative_size: w >= 0 and h >= 0",
            e.ExpectColumnValuesToBeBetween(column="smallest_side", min_value=0),
            key="negative_size",
        ),
        Check(
            "faces",
            False,
            f"box left edge >= -{tol:g} px",
            e.ExpectColumnValuesToBeBetween(column="x", min_value=-tol),
        ),
        Check(
            "faces",
            False,
            f"box top edge >= -{tol:g} px",
            e.ExpectColumnValuesToBeBetween(column="y", min_value=-tol),
        ),
        Check(
            "faces",
            False,
            f"box right edge within {tol:g} px of the image",
            e.ExpectColumnValuesToBeBetween(column="overflow_right", max_value=tol),
        ),
        Check(
            "faces",
            False,
            f"box bottom edge within {tol:g} px of the image",
            e.ExpectColumnValuesToBeBetween(column="overflow_bottom", max_value=tol),
        ),
        Check(
            "faces",
            False,
            f"landmarks within {landmark_tolerance:g} x box size of the box",
            e.ExpectColumnValuesToBeBetween(column="landmark_offset", max_value=landmark_tolerance),
        ),
    ]
    for name, (low, high) in ATTRIBUTE_RANGES.items():
        checks.append(
            Check(
                "faces",
                False,
                f"{name} in {low}..{high}",
                e.ExpectColumnValuesToBeBetween(column=name, min_value=low, max_value=high),
            )
        )
    return checks


def run_checks(checks: list[Check], tables: dict[str, pd.DataFrame]) -> list[CheckResult]:
    """Validate each table with its checks in one ephemeral GX context."""
    import great_expectations as gx
    from great_expectations.data_context.types.base import ProgressBarsConfig

    context = gx.get_context(mode="ephemeral")
    context.variables.progress_bars = ProgressBarsConfig(globally=False, metric_calculations=False)
    source = context.data_sources.add_pandas("featherface")
    results: list[CheckResult] = []
    for name, frame in tables.items():
        table_checks = [check for check in checks if check.table == name]
        suite = gx.ExpectationSuite(name=f"featherface_{name}")
        for position, check in enumerate(table_checks):
            check.expectation.meta = {"featherface_check": position}
            suite.add_expectation(check.expectation)
        batch_definition = source.add_dataframe_asset(name).add_batch_definition_whole_dataframe(
            name
        )
        batch = batch_definition.get_batch(
            batch_parameters={"dataframe": frame.reset_index(drop=True)}
        )
        outcome = batch.validate(suite, result_format="COMPLETE")
        by_position = {r.expectation_config.meta["featherface_check"]: r for r in outcome.results}
        for position, check in enumerate(table_checks):
            result = by_position[position]
            failing = _failing_rows(result.result)
            results.append(CheckResult(check, bool(result.success), len(frame), failing))
    return results


def _failing_rows(result: dict[str, Any]) -> list[int]:
    rows = result.get("unexpected_index_list") or []
    return sorted({int(row if not isinstance(row, dict) else row.get("index", -1)) for row in rows})


def _location(frame: pd.DataFrame, row: int) -> tuple[str, int | None]:
    if "source_file" in frame.columns:
        return str(frame["source_file"].iloc[row]), int(frame["source_line"].iloc[row])
    return "<table>", None


def _sources(frame: pd.DataFrame, rows: list[int]) -> list[RowSource]:
    return [RowSource(*_location(frame, row)) for row in rows]


def _raise_for(result: CheckResult, frame: pd.DataFrame, hint: str = "") -> None:
    path, line = (
        _location(frame, result.failing_rows[0]) if result.failing_rows else ("<table>", None)
    )
    count = len(result.failing_rows)
    problem = f"{result.check.table}: check failed: {result.check.description} ({count} rows){hint}"
    raise AnnotationError(path, problem, line)


def drop_unusable_faces(faces: pd.DataFrame) -> tuple[pd.DataFrame, dict[str, int]]:
    """Remove faces WIDER marks ``invalid`` and boxes with a zero side (and no negative one);
    count both. Negative sizes stay for the ``negative_size`` check."""
    w, h = faces["w"].to_numpy(), faces["h"].to_numpy()
    invalid = faces["invalid"].to_numpy() == 1
    empty = ~invalid & ((w == 0) | (h == 0)) & (w >= 0) & (h >= 0)
    counts = {"invalid": int(invalid.sum()), "zero_size": int(empty.sum())}
    return faces[~(invalid | empty)].reset_index(drop=True), counts


def validate_tables(
    images: pd.DataFrame,
    faces: pd.DataFrame,
    image_paths: list[Path],
    box_tolerance_px: float = 2.0,
    landmark_tolerance: float = 0.5,
    on_bad_rows: str = "fail",
) -> tuple[pd.DataFrame, pd.DataFrame, ValidationReport]:
    """Apply the policy of the module docstring; return the kept tables and the report.

    Args:
        images, faces: canonical tables, optionally with ``source_file``/``source_line``.
        image_paths: the file of each row of ``images``, decoded to check its size.
    Raises:
        AnnotationError: for an image that does not decode (``<image>: cannot decode image
            (<reason>)``), a structural failure, or a row failure when ``on_bad_rows="fail"``.
    """
    faces, dropped = drop_unusable_faces(faces)
    sizes, errors = decode_images(image_paths)
    first_error = next((error for error in errors if error is not None), None)
    if first_error is not None:
        raise first_error
    checked_images = images.reset_index(drop=True).assign(
        decoded_width=sizes[:, 0], decoded_height=sizes[:, 1]
    )
    checked_faces = face_checks_frame(faces, images)
    tables = {"images": checked_images, "faces": checked_faces}
    results = run_checks(build_checks(box_tolerance_px, landmark_tolerance), tables)
    for result in results:
        result.failing_sources = _sources(tables[result.check.table], result.failing_rows)
    for result in results:
        if not result.success and result.check.structural:
            _raise_for(result, tables[result.check.table])
    bad_rows: set[int] = set()
    for result in results:
        if not result.success:
            if on_bad_rows != "drop":
                _raise_for(result, checked_faces, hint="; set data.on_bad_rows: drop to skip them")
            dropped[result.check.name] = len(result.failing_rows)
            bad_rows.update(result.failing_rows)
    keep = np.ones(len(faces), dtype=bool)
    keep[sorted(bad_rows)] = False
    return images, faces[keep].reset_index(drop=True), ValidationReport(results, dropped)
