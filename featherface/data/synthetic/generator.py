"""Write a split of the synthetic set as JPEG files plus the canonical tables.

Each image is rendered by :func:`.render.render_image` from its own random generator, so the files
and tables are the same for any number of worker processes. The JPEG is saved under its event's
folder, and the keep lists come from :mod:`.difficulty`.
"""

from __future__ import annotations

import io
import multiprocessing
import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pandas as pd

from featherface.data.schema import (
    FACE_COLUMNS,
    IMAGE_COLUMNS,
    KEEP_COLUMNS,
    conform_faces,
    conform_images,
)
from featherface.data.synthetic.background import Event
from featherface.data.synthetic.difficulty import assign_keep_lists
from featherface.data.synthetic.render import render_image
from featherface.params import SyntheticConfig

CHUNKSIZE = 8


def image_name(event: Event, image_id: int) -> str:
    """``<event>/<number>_<Name>_synthetic_<image_id>.jpg``, e.g.
    ``3--Crowd/3_Crowd_synthetic_17.jpg``."""
    number, name = event.name.split("--")
    return f"{event.name}/{number}_{name}_synthetic_{image_id}.jpg"


def _write_image(task: tuple[SyntheticConfig, str, int, int, str]) -> tuple[dict, list[dict]]:
    """Render one image, write its JPEG atomically and return its ``images`` row and ``faces``
    rows (runs in a worker process)."""
    config, split, index, image_id, images_dir = task
    rendered = render_image(config, split, index)
    path = image_name(rendered.event, image_id)
    target = Path(images_dir) / path
    target.parent.mkdir(parents=True, exist_ok=True)
    buffer = io.BytesIO()
    rendered.image.save(buffer, "JPEG", quality=config.jpeg_quality, subsampling=2)
    temporary = target.with_suffix(".jpg.tmp")
    temporary.write_bytes(buffer.getvalue())
    os.replace(temporary, target)
    image_row = {
        "image_id": image_id,
        "path": path,
        "event": rendered.event.name,
        "width": rendered.image.width,
        "height": rendered.image.height,
        "split": split,
    }
    return image_row, [{"image_id": image_id, **row} for row in rendered.faces]


def _results(
    tasks: list[tuple[SyntheticConfig, str, int, int, str]], workers: int
) -> Iterator[tuple[dict, list[dict]]]:
    """Rows of every task in task order, from a spawn-started pool when ``workers > 1``."""
    if workers == 1 or len(tasks) <= 1:
        yield from map(_write_image, tasks)
        return
    context = multiprocessing.get_context("spawn")
    with context.Pool(min(workers, len(tasks))) as pool:
        yield from pool.imap(_write_image, tasks, chunksize=CHUNKSIZE)


def generate_split(
    images_dir: Path,
    split: str,
    config: SyntheticConfig,
    first_image_id: int = 0,
    progress: Callable[[int], None] | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Render ``config.num_<split>`` images as JPEG into ``images_dir/<event>/<name>.jpg``.

    Returns the canonical ``(images, faces)`` tables of :mod:`featherface.data.schema`, rows in
    image order; ``image_id = first_image_id + index``. Keep lists are filled for "val" by
    :func:`assign_keep_lists` and NA for "train". ``progress(n)`` is called in this process with
    the number of images finished so far. JPEGs use ``jpeg_quality``, 4:2:0 subsampling and no
    EXIF, and are written to a temporary name first. With ``workers > 1`` the images are
    rendered by a "spawn" process pool (safe in a process with threads), so a calling script
    needs the usual ``if __name__ == "__main__":`` guard.
    """
    count = config.num_images(split)
    tasks = [
        (config, split, index, first_image_id + index, str(images_dir)) for index in range(count)
    ]
    image_rows: list[dict] = []
    face_rows: list[dict] = []
    for image_row, rows in _results(tasks, config.workers):
        image_rows.append(image_row)
        face_rows.extend(rows)
        if progress is not None:
            progress(len(image_rows))
    images = conform_images(pd.DataFrame(image_rows, columns=list(IMAGE_COLUMNS)))
    faces = pd.DataFrame(face_rows, columns=[c for c in FACE_COLUMNS if c not in KEEP_COLUMNS])
    for column in KEEP_COLUMNS:
        faces[column] = pd.array([pd.NA] * len(faces), dtype="boolean")
    if split == "val":
        faces = assign_keep_lists(faces)
    return images, conform_faces(faces)
