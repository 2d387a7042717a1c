"""Tables of real-valued features, ``(N, D)``, as a data kind beside images, with a per-feature scaler that is
fit on the training split only, saved with the run and applied to every raw table given to the run later.

Readers: ``.csv`` (header row optional, cells parsed one by one so errors name the line and column),
``.npy`` (a 2-D numeric array), ``.parquet`` (pyarrow), ``.mat`` (the ODDS benchmark files: ``X``, ``y``),
numpy arrays and data frames (pandas, polars: anything with ``.columns`` whose columns convert to numpy).
Missing values (empty cells, ``NA``, ``nan``, nulls) are refused with their column and row named, or imputed
with the training split's mean or median when asked; infinities are refused, naming the column. Text columns
are refused, naming the column, or one-hot encoded when asked (``categorical: onehot``, :class:`OneHot`): the
categories are those of the training split, saved with the run, the features become ``column=value``, and a
category the training split did not have is refused at apply time (one line naming the column and the value:
an all-zero row would score as "none of the known kinds" without saying so).

Representation (why): a table becomes a :class:`aekit.data.TableData`, an ``ImageData`` whose "images" are
float32 ``(N, 1, 1, D)`` already scaled into the model's space. The dense families flatten ``C*H*W`` so they
see the D features as they are; the trainer's batch loader passes non-uint8 tensors through untouched; and
every front end that takes model inputs (encode, anomaly scores, evaluation) works on them unchanged. Tables
stay float32 (a uint8 copy would lose the resolution the scaler keeps), which is small for tables.

The scaler's target is [0, 1]: every family's decoder ends in a sigmoid (the model contract: ``decode`` gives
values in [0, 1]), so the training data must land there for a reconstruction to be able to reach it.

- ``standard``: z-scores (mean and population standard deviation of the training split), mapped affinely so
  that ±4 standard deviations span [0, 1] (``0.5 + z / 8``). MSE in this space is the z-score MSE / 64, a
  Gaussian likelihood; a value beyond 4 standard deviations cannot be reconstructed, which only adds to the
  score of what is an outlier anyway.
- ``minmax``: the training split's per-feature minimum and maximum map to 0 and 1 (new data may fall
  outside; it is not clipped, so the distance counts in an anomaly score). Fits MSE, or BCE (Bernoulli).
- ``none``: values as they are (already in [0, 1]).

Both are one affine map per feature, ``model = (x - offset) / scale``, which is what the run records.
"""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from aekit.data.sources import Raw, Request, source
from aekit.errors import ConfigError, DataError
from aekit.options import opt

SCALERS = ("standard", "minmax", "none")
IMPUTE = ("none", "mean", "median")
CATEGORICAL = ("none", "onehot")
NOT_NUMERIC_FIX = "drop it, or one-hot encode it (categorical: onehot)"
STANDARD_SPAN = 4.0  # standard scaling: ±4 standard deviations span [0, 1]
MISSING = frozenset({"", "na", "nan", "n/a", "null", "none", "?"})
KIND = "table"  # the data section's "kind" in a run's config.json
TABLE_SUFFIXES = (".csv", ".npy", ".parquet", ".mat")


# ---- a table read from somewhere -----------------------------------------------------------------------


@dataclass
class Table:
    """Raw features as read: float64 (N, D) with NaN where a value is missing; the column names (``named``:
    they came from a header or a frame, not made up); the label column's raw values, if any; and for each row
    where it came from (a file line), for messages."""

    values: np.ndarray
    features: list[str]
    what: str
    named: bool = False
    labels: np.ndarray | None = None
    label_column: str | None = None
    lines: np.ndarray | None = None  # file line of each row (1-based); None: rows are counted from 0
    # text columns read as categories: name -> (N,) object array of stripped strings, None where missing; their
    # column in ``values`` is NaN (filled by OneHot.transform)
    text: dict[str, np.ndarray] = field(default_factory=dict)

    def row(self, i: int) -> str:
        return f"line {int(self.lines[i])}" if self.lines is not None else f"row {int(i)}"


def _column_error(t: Table, j: int, problem: str, fix: str) -> DataError:
    return DataError(f"{t.what}: column {t.features[j]!r} {problem}; {fix}")


def _label_index(names: list[str], label_column: str | None, what: str) -> int | None:
    """Index of the label column: ``label_column`` when given (it must exist), else a column named "label"."""
    if label_column is not None:
        if label_column not in names:
            raise DataError(f"{what}: no column {label_column!r} for the labels; columns: {', '.join(names[:20])}")
        return names.index(label_column)
    return next((i for i, n in enumerate(names) if n.strip().lower() == "label"), None)


def _number(cell: str) -> float:
    """A CSV cell as a float; NaN for a missing-value marker; ValueError for text."""
    s = cell.strip()
    if s.lower() in MISSING:
        return math.nan
    return float(s)


def _text_allowed(text: bool | frozenset, name: str) -> bool:
    return text is True or (isinstance(text, frozenset) and name in text)


def _text_cells(cells) -> np.ndarray:
    """Cells of a text column: stripped strings, None for the missing-value markers, nulls and NaN."""
    out = []
    for v in cells:
        if v is None or (isinstance(v, float) and math.isnan(v)):
            out.append(None)
            continue
        v = str(v).strip()
        out.append(None if v.lower() in MISSING else v)
    return np.array(out, dtype=object)


def read_csv(path: Path, label_column: str | None = None, text: bool | frozenset = False) -> Table:
    """A comma-separated table: a header row (any non-numeric cell in the first row makes it one) names the
    columns, else they are f0..f{D-1}. Every row must have as many cells as the first. ``text``: False refuses
    text columns; True reads any column that is not numbers as text; a set of names reads those as text."""
    what = str(path)
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            rows = list(csv.reader(f))
    except (OSError, UnicodeDecodeError, csv.Error) as e:
        raise DataError(f"cannot read {path}: {e}; expected a UTF-8 comma-separated table") from None
    lines = [(i + 1, r) for i, r in enumerate(rows) if any(c.strip() for c in r)]
    if not lines:
        raise DataError(f"{what}: the file has no rows; expected a header and one sample per row")
    first = lines[0][1]
    named = any(_is_text(c) for c in first)
    names = [c.strip() or f"f{j}" for j, c in enumerate(first)] if named else [f"f{j}" for j in range(len(first))]
    if named:
        lines = lines[1:]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise DataError(f"{what}: column name {dup[0]!r} appears more than once; name every column once")
    if not lines:
        raise DataError(f"{what}: the file has a header but no data rows")
    width = len(names)
    for line, r in lines:
        if len(r) != width:
            raise DataError(f"{what}: line {line} has {len(r)} cells, expected {width} (as {'the header' if named else 'line 1'})")
    li = _label_index(names, label_column, what)
    cols = [j for j in range(width) if j != li]
    if not cols:
        raise DataError(f"{what}: no feature columns besides the label")
    values = np.empty((len(lines), len(cols)), dtype=np.float64)
    texts: dict[str, np.ndarray] = {}
    for k, j in enumerate(cols):
        if isinstance(text, frozenset) and names[j] in text:
            texts[names[j]], values[:, k] = _text_cells(r[j] for _, r in lines), math.nan
            continue
        for i, (line, r) in enumerate(lines):
            try:
                values[i, k] = _number(r[j])
            except ValueError:
                if text is True:
                    texts[names[j]], values[:, k] = _text_cells(r[j] for _, r in lines), math.nan
                    break
                raise DataError(f"{what}: column {names[j]!r} is not numeric (line {line}: {r[j].strip()!r}); "
                                f"{NOT_NUMERIC_FIX}") from None
    labels = np.array([r[li].strip() for _, r in lines]) if li is not None else None
    return Table(values, [names[j] for j in cols], what, named, labels, names[li] if li is not None else None,
                 np.array([line for line, _ in lines], dtype=np.int64), texts)


def _is_text(cell: str) -> bool:
    s = cell.strip()
    if s.lower() in MISSING:
        return False
    try:
        float(s)
    except ValueError:
        return True
    return False


def _numeric_column(a: np.ndarray, name: str, what: str) -> np.ndarray:
    """One column as float64; numbers, booleans and None/NaN (missing) only."""
    a = np.asarray(a)
    if a.dtype.kind in "biuf":
        return a.astype(np.float64)
    if a.dtype.kind == "c":
        raise DataError(f"{what}: column {name!r} holds complex numbers; give real-valued features")
    out = np.empty(len(a), dtype=np.float64)
    for i, v in enumerate(a.tolist()):
        if v is None:
            out[i] = math.nan
            continue
        try:
            out[i] = _number(v) if isinstance(v, str) else float(v)
        except ValueError:
            raise DataError(f"{what}: column {name!r} is not numeric (row {i}: {v!r}); {NOT_NUMERIC_FIX}") from None
    return out


def _column(a: Any, name: str, what: str, text: bool | frozenset, texts: dict[str, np.ndarray]) -> np.ndarray:
    """One column as float64, or, where ``text`` allows it, as text (kept in ``texts``; NaN in the values)."""
    a = np.asarray(a)
    if isinstance(text, frozenset) and name in text:
        texts[name] = _text_cells(a.tolist())
        return np.full(len(a), math.nan)
    try:
        return _numeric_column(a, name, what)
    except DataError:
        if text is not True:
            raise
        texts[name] = _text_cells(a.tolist())
        return np.full(len(a), math.nan)


def from_frame(frame: Any, what: str = "X", label_column: str | None = None, text: bool | frozenset = False) -> Table:
    """A data frame (pandas, polars, or anything with ``.columns`` and ``frame[name]``) as a table."""
    names = [str(c) for c in frame.columns]
    li = _label_index(names, label_column, what)
    cols = [c for j, c in enumerate(frame.columns) if j != li]
    if not cols:
        raise DataError(f"{what}: no feature columns")
    texts: dict[str, np.ndarray] = {}
    values = np.stack([_column(np.asarray(frame[c]), str(c), what, text, texts) for c in cols], axis=1) \
        if len(frame) else np.empty((0, len(cols)))
    labels = np.asarray(frame[frame.columns[li]]) if li is not None else None
    return Table(values, [str(c) for c in cols], what, True, labels, names[li] if li is not None else None, None, texts)


def from_array(x: Any, what: str = "X", features: list[str] | None = None, text: bool | frozenset = False) -> Table:
    """A 2-D array-like (numpy, list of rows, torch tensor) as a table; columns f0..f{D-1} unless named."""
    try:
        import scipy.sparse as sp

        if sp.issparse(x):
            raise DataError(f"{what} is a sparse matrix; sparse input is not supported: pass X.toarray()")
    except ImportError:  # pragma: no cover - scipy is a dependency
        pass
    if hasattr(x, "detach"):
        x = x.detach().cpu().numpy()
    if isinstance(x, (list, tuple)) and x and all(isinstance(r, (list, tuple, np.ndarray)) for r in x):
        widths = {len(r) for r in x}
        if len(widths) > 1:
            raise DataError(f"{what}: rows have different lengths ({', '.join(map(str, sorted(widths)[:4]))}); "
                            "every row needs one value per feature")
    a = np.asarray(x)  # a dict in an object array raises TypeError here, as numpy does everywhere
    if a.ndim != 2:
        raise DataError(f"{what} must be a table (N, D) of features, got an array of shape {a.shape}. Reshape your "
                        "data: X.reshape(1, -1) for one sample, X.reshape(-1, 1) for one feature")
    if a.dtype.kind == "c":
        raise DataError(f"{what}: Complex data not supported (complex values); give real-valued features")
    texts: dict[str, np.ndarray] = {}
    if a.dtype.kind in "biuf":
        values = a.astype(np.float64)
    elif a.dtype.kind == "O" and not any(isinstance(v, str) or v is None for v in a.ravel().tolist()):
        values = a.astype(np.float64)  # numbers in an object array; anything else raises numpy's TypeError
    else:  # text cells: parsed column by column, so an error names the column
        names = features or [f"f{j}" for j in range(a.shape[1])]
        values = np.stack([_column(a[:, j], names[j], what, text, texts) for j in range(a.shape[1])], axis=1) \
            if len(a) else np.empty(a.shape)
    names = list(features) if features is not None else [f"f{j}" for j in range(values.shape[1])]
    return Table(values, names, what, features is not None, text=texts)


def read_npy(path: Path) -> Table:
    from aekit.limits import require_memory

    try:
        # memory-mapped first: a header that declares more than the file holds fails here, before any allocation
        a = np.load(path, mmap_mode="r", allow_pickle=False)
    except (ValueError, OSError, EOFError) as e:
        raise DataError(f"cannot read {path}: {type(e).__name__}: {e}; check the file is a complete NumPy file") from None
    require_memory(8.0 * a.size, f"{path} as float64 values", "use a smaller table", DataError)
    return from_array(np.array(a), str(path))


def read_parquet(path: Path, label_column: str | None = None, text: bool | frozenset = False) -> Table:
    try:
        import pyarrow.parquet as pq
    except ImportError:
        raise DataError(f"{path}: reading .parquet needs pyarrow (pip install pyarrow); or save the table as .csv") from None
    try:
        t = pq.read_table(path)
    except Exception as e:  # pyarrow raises its own error types on damaged files
        raise DataError(f"cannot read {path}: {str(e).splitlines()[0][:200]}; check it is a complete Parquet file") from None
    return from_arrow(t, str(path), label_column, text)


def from_arrow(t: Any, what: str = "X", label_column: str | None = None, text: bool | frozenset = False) -> Table:
    """A pyarrow Table: numeric (integer, floating, boolean, decimal) columns, nulls as missing values; other
    columns as text where ``text`` allows it (see :func:`read_csv`)."""
    import pyarrow.types as pat

    names = list(t.column_names)
    li = _label_index(names, label_column, what)
    cols, texts = [], {}
    for j, name in enumerate(names):
        if j == li:
            continue
        typ = t.schema.field(name).type
        numeric = pat.is_integer(typ) or pat.is_floating(typ) or pat.is_boolean(typ) or pat.is_decimal(typ)
        if (isinstance(text, frozenset) and name in text) or (not numeric and text is True):
            texts[name] = _text_cells(t.column(name).to_pylist())
            cols.append(np.full(t.num_rows, math.nan))
            continue
        if not numeric:
            raise DataError(f"{what}: column {name!r} is not numeric ({typ}); {NOT_NUMERIC_FIX}")
        col = t.column(name).cast("float64").to_numpy(zero_copy_only=False)  # nulls -> NaN
        cols.append(np.asarray(col, dtype=np.float64))
    if not cols:
        raise DataError(f"{what}: no feature columns besides the label")
    labels = np.asarray(t.column(names[li]).to_pylist()) if li is not None else None
    return Table(np.stack(cols, axis=1), [n for j, n in enumerate(names) if j != li], what, True, labels,
                 names[li] if li is not None else None, None, texts)


def read_mat(path: Path) -> Table:
    """A MATLAB file of the ODDS collection: features ``X`` (N, D) and labels ``y`` (1 = outlier)."""
    from scipy.io import loadmat

    what = str(path)
    try:
        m = loadmat(str(path))
    except NotImplementedError:
        raise DataError(f"{what} is a MATLAB v7.3 (HDF5) file; re-save it as v7 (`save -v7`) to read it here") from None
    except Exception as e:  # scipy raises ValueError/TypeError/MatReadError on damaged files
        raise DataError(f"cannot read {path}: {str(e).splitlines()[0][:200]}; check it is a complete .mat file") from None
    if "X" not in m:
        keys = ", ".join(k for k in m if not k.startswith("__"))
        raise DataError(f"{what}: no variable X (the features); it holds {keys or 'nothing'}")
    t = from_array(np.asarray(m["X"]), what)
    if "y" in m:
        y = np.asarray(m["y"]).reshape(-1)
        if len(y) != len(t.values):
            raise DataError(f"{what}: {len(y)} labels in y for {len(t.values)} rows of X")
        t.labels, t.label_column = y, "y"
    return t


def read_table(x: Any, label_column: str | None = None, what: str | None = None,
               text: bool | frozenset = False) -> Table:
    """Any supported table: a path (.csv, .npy, .parquet, .mat), a data frame, or a 2-D array-like. ``text``:
    False refuses text columns, True reads every column that is not numbers as text (to one-hot encode), a
    set of names reads those columns as text (a fitted :class:`OneHot`'s)."""
    if isinstance(x, (str, Path)):
        path = Path(x).expanduser()
        if not path.exists():
            raise DataError(f"{path}: no such file")
        if path.is_dir():
            raise DataError(f"{path} is a folder; give a table file ({', '.join(TABLE_SUFFIXES)})")
        suffix = path.suffix.lower()
        if suffix == ".csv":
            return read_csv(path, label_column, text)
        if suffix == ".parquet":
            return read_parquet(path, label_column, text)
        if label_column is not None:
            raise ConfigError(f"label_column applies to files with named columns (.csv, .parquet), not {suffix}",
                              param="label_column")
        if suffix == ".npy":
            return read_npy(path)
        if suffix == ".mat":
            return read_mat(path)
        raise DataError(f"{path}: unsupported table file {suffix or '(no suffix)'}; use {', '.join(TABLE_SUFFIXES)}")
    if isinstance(x, Table):
        return x
    if hasattr(x, "column_names") and hasattr(x, "schema"):  # a pyarrow Table
        return from_arrow(x, what or "X", label_column, text)
    if hasattr(x, "columns") and not isinstance(x, np.ndarray):
        return from_frame(x, what or "X", label_column, text)
    return from_array(x, what or "X", text=text)


def check_finite(t: Table, impute: str) -> None:
    """Infinities are refused; missing values (NaN) too unless they will be imputed. The message names the
    column and the first row."""
    bad = ~np.isfinite(t.values)
    for name, cells in t.text.items():  # a text column: its missing cells (None), unless imputed
        bad[:, t.features.index(name)] = np.array([v is None for v in cells.tolist()], dtype=bool) & (impute == "none")
    if impute != "none":
        bad &= ~np.isnan(t.values)
    if not bad.any():
        return
    i, j = (int(v[0]) for v in np.nonzero(bad))
    v = t.values[i, j]
    if np.isnan(v):
        raise _column_error(t, j, f"has a missing value (NaN) at {t.row(i)}",
                            "fill it, drop the row, or impute missing values (impute: mean or median)")
    raise _column_error(t, j, f"has an infinite value (inf) at {t.row(i)}", "replace it with a finite number")


# ---- categories ----------------------------------------------------------------------------------------


@dataclass
class OneHot:
    """One-hot encoding of a table's text columns, fit on the training split: each text column becomes one 0/1
    column per category (sorted), named ``column=value``, in the column's place. ``fill``: the most frequent
    training category per column, for missing cells when missing values are imputed (scikit-learn's
    ``SimpleImputer(strategy="most_frequent")``); else a missing cell is refused."""

    columns: list[str]  # the raw table's columns, in order (what a new table is aligned to)
    categories: dict[str, list[str]]  # text column -> its training categories
    fill: dict[str, str] | None = None

    @classmethod
    def fit(cls, t: Table, rows: np.ndarray, impute: str = "none") -> "OneHot":
        categories, fill = {}, {}
        for name, cells in t.text.items():
            seen = [v for v in cells[rows].tolist() if v is not None]
            if not seen:
                raise DataError(f"{t.what}: text column {name!r} has no value in the training split; drop it")
            values, counts = np.unique(np.array(seen, dtype=str), return_counts=True)  # sorted
            categories[name] = [str(v) for v in values]
            if impute != "none":
                fill[name] = str(values[int(np.argmax(counts))])
        return cls(list(t.features), categories, fill or None)

    @property
    def features(self) -> list[str]:
        """The encoded table's feature names."""
        return [f for c in self.columns for f in ([f"{c}={v}" for v in self.categories[c]] if c in self.categories else [c])]

    def transform(self, t: Table) -> Table:
        """``t`` (aligned to :attr:`columns`, text columns read as text) -> an all-numeric table of
        :attr:`features`. A category the training split did not have is a one-line DataError."""
        blocks = []
        for j, name in enumerate(t.features):
            if name not in self.categories:
                blocks.append(t.values[:, j : j + 1])  # (N, 1)
                continue
            cells = t.text.get(name)
            if cells is None:
                raise DataError(f"{t.what}: column {name!r} holds categories; read the table as text (categorical)")
            known = self.categories[name]
            index = {v: k for k, v in enumerate(known)}
            block = np.zeros((len(cells), len(known)))  # (N, categories)
            for i, v in enumerate(cells.tolist()):
                if v is None:
                    if self.fill is None:
                        raise _column_error(t, j, f"has a missing value at {t.row(i)}",
                                            "fill it, drop the row, or impute missing values (impute: mean or median; "
                                            "a text column takes its most frequent category)")
                    v = self.fill[name]
                k = index.get(v)
                if k is None:
                    shown = ", ".join(map(repr, known[:8])) + (", ..." if len(known) > 8 else "")
                    raise _column_error(t, j, f"has category {v!r} at {t.row(i)} that the training split did not "
                                              f"have (it knows {shown})", "map it to a known category or drop the row")
                block[i, k] = 1.0
            blocks.append(block)
        features = self.features
        dup = sorted({f for f in features if features.count(f) > 1})
        if dup:
            raise DataError(f"{t.what}: the one-hot feature {dup[0]!r} clashes with a column of that name; rename it")
        values = np.hstack(blocks) if blocks else np.empty((len(t.values), 0))
        return Table(values, features, t.what, True, t.labels, t.label_column, t.lines)

    def to_dict(self) -> dict[str, Any]:
        return {"columns": list(self.columns), "categories": {k: list(v) for k, v in self.categories.items()},
                "category_fill": self.fill}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "OneHot":
        cats, fill = d["categories"], d.get("category_fill")
        if not isinstance(cats, dict) or not all(isinstance(v, list) and v for v in cats.values()):
            raise TypeError("categories")
        return cls([str(c) for c in d["columns"]], {str(k): [str(x) for x in v] for k, v in cats.items()},
                   None if fill is None else {str(k): str(v) for k, v in dict(fill).items()})


# ---- the scaler ----------------------------------------------------------------------------------------


@dataclass
class Scaler:
    """Per-feature affine map into the model's space, ``(x - offset) / scale``, fit on the training split;
    ``fill`` holds the training split's mean or median per feature when missing values are imputed."""

    kind: str
    offset: np.ndarray  # (D,)
    scale: np.ndarray  # (D,)
    impute: str = "none"
    fill: np.ndarray | None = None  # (D,)
    onehot: OneHot | None = None  # text columns -> 0/1 columns, applied before the affine map

    @classmethod
    def fit(cls, values: np.ndarray, kind: str = "standard", impute: str = "none",
            features: list[str] | None = None) -> "Scaler":
        """Fit on the training rows ``values`` (float64 (N, D), NaN = missing)."""
        if kind not in SCALERS:
            raise ConfigError(f"scaler must be one of {', '.join(SCALERS)}, got {kind!r}", param="scaler")
        if impute not in IMPUTE:
            raise ConfigError(f"impute must be one of {', '.join(IMPUTE)}, got {impute!r}", param="impute")
        if len(values) == 0:
            raise DataError("the training split is empty: nothing to fit the scaler on")
        fill = None
        if impute != "none":
            empty = np.isnan(values).all(0)
            if empty.any():
                j = int(np.nonzero(empty)[0][0])
                name = features[j] if features else f"f{j}"
                raise DataError(f"column {name!r} has no value in the training split to impute from; drop it")
            fill = np.nanmean(values, 0) if impute == "mean" else np.nanmedian(values, 0)
            values = np.where(np.isnan(values), fill, values)
        d = values.shape[1]
        if kind == "standard":
            std = values.std(0)
            std = np.where(std > 0, std, 1.0)  # a constant feature maps to 0.5
            offset, scale = values.mean(0) - STANDARD_SPAN * std, 2 * STANDARD_SPAN * std
        elif kind == "minmax":
            lo, hi = values.min(0), values.max(0)
            offset, scale = lo, np.where(hi > lo, hi - lo, 1.0)
        else:
            offset, scale = np.zeros(d), np.ones(d)
        return cls(kind, offset.astype(np.float64), scale.astype(np.float64), impute, fill)

    def transform(self, values: np.ndarray) -> np.ndarray:
        """Raw float64 (N, D) -> float32 (N, D) in the model's space (missing values imputed first)."""
        if self.fill is not None:
            values = np.where(np.isnan(values), self.fill, values)
        return ((values - self.offset) / self.scale).astype(np.float32)

    def inverse(self, x: np.ndarray) -> np.ndarray:
        """Model space -> the raw features' units (float64), e.g. for reconstructions."""
        return np.asarray(x, dtype=np.float64) * self.scale + self.offset

    def to_dict(self) -> dict[str, Any]:
        return {"scaler": self.kind, "offset": self.offset.tolist(), "scale": self.scale.tolist(),
                "impute": self.impute, "fill": None if self.fill is None else self.fill.tolist(),
                **(self.onehot.to_dict() if self.onehot is not None else {})}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Scaler":
        try:
            fill = d.get("fill")
            s = cls(str(d["scaler"]), np.asarray(d["offset"], dtype=np.float64), np.asarray(d["scale"], dtype=np.float64),
                    str(d.get("impute", "none")), None if fill is None else np.asarray(fill, dtype=np.float64),
                    OneHot.from_dict(d) if d.get("categories") is not None else None)
        except (KeyError, TypeError, ValueError, AttributeError):
            raise DataError("the run's table scaler record is damaged (config.json data.table); retrain the run") from None
        if s.offset.shape != s.scale.shape or s.offset.ndim != 1 or not (s.scale > 0).all() or (
                s.onehot is not None and len(s.onehot.features) != len(s.offset)):
            raise DataError("the run's table scaler record is damaged (config.json data.table); retrain the run")
        return s


# ---- tables -> TableData -------------------------------------------------------------------------------


def labels_of(t: Table) -> tuple[np.ndarray, list[str]]:
    """int64 labels (-1 unknown) and class names from the label column: integers as they are, text sorted."""
    from aekit.data.arrays import check_labels, dense_labels

    n = len(t.values)
    if t.labels is None:
        return np.full(n, -1, dtype=np.int64), []
    raw = np.asarray(t.labels)
    if raw.dtype.kind in "biuf" or all(_is_int(v) for v in raw.tolist()):
        try:
            y = check_labels(np.asarray([int(float(v)) for v in raw.tolist()], dtype=np.int64), n, t.what)
        except (TypeError, ValueError):
            raise DataError(f"{t.what}: the label column {t.label_column!r} has missing or non-numeric values") from None
        return dense_labels(y)
    names = sorted({str(v).strip() for v in raw.tolist()})
    index = {v: i for i, v in enumerate(names)}
    return np.array([index[str(v).strip()] for v in raw.tolist()], dtype=np.int64), names


def _is_int(v: Any) -> bool:
    try:
        f = float(v)
    except (TypeError, ValueError):
        return False
    return math.isfinite(f) and f == int(f)


def table_data(t: Table, splits: dict[str, np.ndarray], name: str, scaler: Scaler,
               labels: tuple[np.ndarray, list[str]] | None = None):
    """A TableData of ``t`` scaled by ``scaler`` (the run's, or one just fit on the training split)."""
    import torch

    from aekit.data.base import TableData

    y, class_names = labels if labels is not None else labels_of(t)
    x = scaler.transform(t.values)  # (N, D) float32, model space
    return TableData(
        images=torch.from_numpy(np.ascontiguousarray(x.reshape(len(x), 1, 1, x.shape[1]))),  # (N, 1, 1, D)
        labels=torch.from_numpy(y),
        class_names=class_names,
        splits={k: torch.from_numpy(np.asarray(v, dtype=np.int64)) for k, v in splits.items()},
        name=name,
        features=list(t.features),
        scaler=scaler,
        label_column=t.label_column,
    )


def fit_table(t: Table, splits: dict[str, np.ndarray], name: str, scaler: str = "standard", impute: str = "none",
              labels: tuple[np.ndarray, list[str]] | None = None):
    """Check ``t``, fit the one-hot categories (text columns) and the scaler on its training split, and return
    the TableData."""
    check_finite(t, impute)
    train = np.asarray(splits["train"], dtype=np.int64)
    onehot = OneHot.fit(t, train, impute) if t.text else None
    if onehot is not None:
        t = onehot.transform(t)  # (N, D') 0/1 columns in place of the text ones
    fitted = Scaler.fit(t.values[train], scaler, impute, t.features)
    fitted.onehot = onehot
    return table_data(t, splits, name, fitted, labels)


def align(t: Table, features: list[str], who: str = "the run") -> Table:
    """``t``'s columns in the order of ``features`` (a fitted scaler's): by name when ``t`` has named columns
    that are exactly those, else by position. A column count that differs is refused, as in scikit-learn."""
    d = len(features)
    have = t.values.shape[1]
    if t.named and set(t.features) == set(features):
        order = [t.features.index(f) for f in features]
        return Table(t.values[:, order], list(features), t.what, True, t.labels, t.label_column, t.lines, t.text)
    if have != d:
        extra = ""
        if t.named:
            missing = [f for f in features if f not in t.features]
            unknown = [f for f in t.features if f not in features]
            extra = (f" (lacks {', '.join(map(repr, missing[:5]))}" if missing else " (") + \
                    (f"{'; ' if missing else ''}has {', '.join(map(repr, unknown[:5]))} it was not trained on" if unknown else "") + ")"
        raise DataError(f"{t.what} has {have} features, but {who} is expecting {d} features as input{extra}")
    generated = all(f == f"f{j}" for j, f in enumerate(features))  # trained without a header: by position
    if t.named and not generated:
        unknown = [f for f in t.features if f not in features]
        raise DataError(f"{t.what}: column {unknown[0]!r} is not one {who} was trained on (it expects "
                        f"{', '.join(map(repr, features[:8]))}{', ...' if d > 8 else ''}); rename it")
    text = {features[t.features.index(k)]: v for k, v in t.text.items()}  # renamed by position
    return Table(t.values, list(features), t.what, t.named, t.labels, t.label_column, t.lines, text)


def apply_record(x: Any, record: dict[str, Any], name: str | None = None, splits: dict[str, np.ndarray] | None = None):
    """A raw table (path, frame, array) scaled by a run's recorded table state (config.json ``data.table``):
    columns checked against the run's features, the run's scaler applied. All rows in "test" unless
    ``splits`` are given."""
    state = record_state(record)
    scaler = Scaler.from_dict(state)
    onehot = scaler.onehot
    columns = list(onehot.columns) if onehot is not None else list(state["features"])  # the raw table's
    label_column = state.get("label_column")
    t = read_table(x, what=name, text=frozenset(onehot.categories) if onehot is not None else False)
    if t.named and label_column is not None and label_column in t.features and label_column not in columns:
        j = t.features.index(label_column)  # the run's label column: labels, not a feature
        keep = [k for k in range(len(t.features)) if k != j]
        t = Table(t.values[:, keep], [t.features[k] for k in keep], t.what, True, t.values[:, j], label_column, t.lines,
                  t.text)
    t = align(t, columns)
    check_finite(t, scaler.impute)
    if onehot is not None:
        t = onehot.transform(t)
    n = len(t.values)
    if n == 0:
        raise DataError(f"{t.what} holds no rows")
    if splits is None:
        splits = {"train": np.arange(0), "val": np.arange(0), "test": np.arange(n)}
    return table_data(t, splits, name or t.what, scaler)


def record_state(record: dict[str, Any]) -> dict[str, Any]:
    """The table state of a run's data section (``record["table"]``), checked."""
    state = record.get("table") if isinstance(record, dict) else None
    if not isinstance(state, dict) or not isinstance(state.get("features"), list):
        raise DataError("the run's data section has no table state (config.json data.table); it was not trained on a table")
    return state


def is_table_record(record: dict[str, Any]) -> bool:
    """Whether a run's data section (config.json "data") describes a table."""
    return isinstance(record, dict) and record.get("kind") == KIND


def check_record(data, record: dict[str, Any]) -> None:
    """A tabular run's own data, reloaded: its features and the scaler refit on its training split must be the
    ones the run recorded, else the file changed since training (scores would silently shift)."""
    state = record_state(record)
    fresh = data.scaler.to_dict()
    same = list(data.features) == list(state["features"]) and fresh["scaler"] == state.get("scaler") and all(
        np.allclose(np.asarray(fresh[k], dtype=float), np.asarray(state[k], dtype=float), rtol=1e-9, atol=1e-12)
        for k in ("offset", "scale"))
    if not same:
        raise DataError(f"{record['spec']} changed since the run was trained (its columns or its scaler no longer "
                        "match config.json); score it as new data (--data) to use the run's scaler")


def load_for_run(spec: Any, record: dict[str, Any], data_dir: str | Path | None = None):
    """The data a tabular run works on: its own (``spec`` None: reloaded as trained, and checked against the
    recorded scaler) or a raw table of the user's (a path, a ``table:PATH``/``odds:NAME`` spec, a frame or
    an array), scaled by the run's saved scaler, all rows in the "test" split."""
    from aekit.data.load import load_data, recorded_options

    if spec is None:
        opts = recorded_options(record)
        if data_dir is not None:
            opts["data_dir"] = data_dir
        data = load_data(record["spec"], **opts)
        check_record(data, record)
        return data
    if isinstance(spec, str):
        head, sep, rest = spec.partition(":")
        if sep and head.strip().lower() in ("table", "odds"):
            root = Path(data_dir).expanduser() if data_dir is not None else None
            spec = _odds_path(rest.strip(), root) if head.strip().lower() == "odds" else _table_path(rest.strip(), root)
    return apply_record(spec, record, name=str(spec) if isinstance(spec, (str, Path)) else None)


# ---- the registered sources ----------------------------------------------------------------------------


@dataclass(frozen=True)
class TableOptions:
    scaler: str = opt("standard", "tables: per-feature scaling fit on the training split (standard: z-scores, "
                                  "±4 std onto [0, 1]; minmax: min..max onto [0, 1])", choices=SCALERS)
    impute: str = opt("none", "tables: fill missing values with the training split's mean or median "
                              "(none: refuse them)", choices=IMPUTE)
    categorical: str = opt("none", "tables: one-hot encode text columns with the training split's categories "
                                   "(features column=value; none: refuse text columns)", choices=CATEGORICAL)
    label_column: str | None = opt(None, "tables: the column holding labels (default: one named 'label')",
                                   metavar="NAME")


def _data_dir_path(name: str, root: Path | None) -> Path | None:
    if root is None:
        from aekit.data.load import default_data_dir

        root = default_data_dir()
    p = root / name
    return p if p.exists() else None


def _table_path(argument: str, root: Path | None) -> Path:
    if not argument:
        raise DataError("table: needs a file after the colon, e.g. table:data.csv")
    p = Path(argument).expanduser()
    if p.exists():
        return p
    found = _data_dir_path(argument, root) if not p.is_absolute() else None
    if found is None:
        raise DataError(f"{p}: no such file (looked here and in the data folder)")
    return found


def _odds_path(name: str, root: Path | None) -> Path:
    if not name or "/" in name or "\\" in name:
        raise DataError(f"odds: needs a data set name, e.g. odds:cardio, got {name!r}")
    for rel in (f"{name}.mat", f"odds/{name}.mat"):
        found = _data_dir_path(rel, root)
        if found is not None:
            return found
    from aekit.data.load import default_data_dir

    where = root if root is not None else default_data_dir()
    raise DataError(f"odds:{name}: {name}.mat is not in {where}; download it from the ODDS collection "
                    "(https://odds.cs.stonybrook.edu) into that folder (or pass --data-dir)")


def _raw(t: Table, opts: TableOptions, class_names: list[str] | None = None) -> Raw:
    if opts.impute == "none":
        check_finite(t, "none")  # before splitting: the message names the file's line
    y, names = labels_of(t)
    names = names if class_names is None else class_names

    def finish(splits: dict[str, np.ndarray], name: str):
        return fit_table(t, splits, name, opts.scaler, opts.impute, (y, names))

    return Raw(t.values, y, names, finish=finish)


@source("table", "real-valued features, one sample per row (.csv with a header, .npy, .parquet, .mat), scaled "
                 "per feature by a scaler fit on the train split and saved with the run",
        options=TableOptions, argument="data.csv")
def _load_table(req: Request) -> Raw:
    path = _table_path(req.argument or "", req.data_dir)
    return _raw(read_table(path, req.options.label_column, text=req.options.categorical == "onehot"), req.options)


@source("odds", "an ODDS outlier-detection table (odds:cardio reads cardio.mat from the data folder; "
                "labels: 1 = outlier)", options=TableOptions, argument="cardio")
def _load_odds(req: Request) -> Raw:
    if req.options.label_column is not None:
        raise ConfigError("label_column does not apply to odds: its labels are the file's y", param="label_column")
    t = read_mat(_odds_path(req.argument or "", req.data_dir))
    if t.labels is not None:
        t.labels = (np.asarray(t.labels).astype(np.float64) != 0).astype(np.int64)
    return _raw(t, req.options, ["normal", "outlier"] if t.labels is not None else [])
