"""Morphological attributes of cells (WBCAtt's cell size, nucleus shape, cytoplasm vacuole, ...), read from a CSV, as
integer targets for the images of a training set: auxiliary labels a model can learn beside its classes.

    table = read_attribute_table("pbc-dev-attributes.csv", columns=())   # every column but `path`
    table.columns      # ["cell_size", "cell_shape", ...];  table.values["cell_size"] == ["big", "small"]
    targets = table.targets(train_set.paths)   # N x A int64, -1 where a cell has no row (or an empty value)

Rows are matched to images by file name (``path``'s last component), so one table serves a dataset and any folder
rearranged from it (``OTHER_CELLS/monocyte_vacuolated/MO_1.jpg`` finds ``monocyte/MO_1.jpg``'s row). The values of each
column are sorted, so the same table always gives the same targets.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import torch

from neunn.errors import NeunnError

PATH_COLUMN = "path"


@dataclass(frozen=True)
class AttributeTable:
    """Each column's values (sorted) and each file name's value index per column (-1: not given)."""

    source: str
    columns: list[str]
    values: dict[str, list[str]]
    rows: dict[str, list[int]]

    def spec(self) -> dict[str, list[str]]:
        """The columns and their values: what the shape of a model's attribute heads depends on."""
        return {column: self.values[column] for column in self.columns}

    def targets(self, paths: list[str]) -> torch.Tensor:
        """N x A value indices for images given by path (any folder layout), -1 where the table says nothing."""
        missing = [-1] * len(self.columns)
        return torch.tensor([self.rows.get(PurePosixPath(p).name, missing) for p in paths],
                            dtype=torch.long).reshape(len(paths), len(self.columns))


def read_attribute_table(path: str | Path, columns: tuple[str, ...] | list[str] = ()) -> AttributeTable:
    """Read ``path`` (a CSV with a ``path`` column); keep ``columns`` (all but ``path`` when empty)."""
    path = Path(path)
    try:
        with path.open(newline="", encoding="utf-8") as fh:
            reader = csv.DictReader(fh)
            header = list(reader.fieldnames or [])
            records = list(reader)
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise NeunnError(f"The attribute table {path} cannot be read ({exc.__class__.__name__}).") from None
    if PATH_COLUMN not in header:
        raise NeunnError(f"The attribute table {path} has no '{PATH_COLUMN}' column naming each cell's image file.")
    available = [c for c in header if c != PATH_COLUMN]
    unknown = [c for c in columns if c not in available]
    if unknown:
        raise NeunnError(f"The attribute table {path} has no column {', '.join(map(repr, unknown))}; it has "
                         f"{', '.join(available)}.")
    kept = list(columns) or available
    if not kept:
        raise NeunnError(f"The attribute table {path} has no attribute column beside '{PATH_COLUMN}'.")
    values = {c: sorted({r[c].strip() for r in records if (r[c] or "").strip()}) for c in kept}
    index = {c: {v: i for i, v in enumerate(values[c])} for c in kept}
    rows: dict[str, list[int]] = {}
    for record in records:
        name = PurePosixPath((record[PATH_COLUMN] or "").strip().replace("\\", "/")).name
        row = [index[c].get((record[c] or "").strip(), -1) for c in kept]
        if name in rows and rows[name] != row:
            raise NeunnError(f"The attribute table {path} gives two different rows for the file name '{name}'; "
                             "rows are matched to images by file name, so each must be unique.")
        rows[name] = row
    return AttributeTable(str(path), kept, values, rows)
