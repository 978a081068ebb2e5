"""Labelled transaction files, read in bounded chunks: the input of ``train``, ``evaluate`` and ``thresholds``.

Formats:

* JSON Lines of ``TransactionEvent`` v1 (no mapping): each line an event with a label field next to
  its fields (``{"transaction_id": ..., "is_fraud": true}``; ``--label-field`` names it), or the
  synthetic generator's ``{"event": {...}, "is_fraud": ...}`` lines. Events are checked exactly as
  the worker checks them (:func:`schemas.decode`).
* Through a mapping (:mod:`schemas.mapping`): CSV with the mapping's delimiter, Parquet (read in
  record batches; needs ``pyarrow``, the ``data`` extra), or JSON Lines of the bank's own objects.
  The label comes from the mapping's ``[label]``, else from the ``--label-field`` column.

A row that cannot be used is counted in :class:`BadRows` with its line (text files) or row number
(Parquet) and the reason — source path and kind of problem, never the content. The caller decides
how many are acceptable (:class:`BadRows` raises :class:`DataError` past its limit). Problems with
the file as a whole (missing, unreadable, header lacking mapped columns, a column neither mapped
nor dropped) raise :class:`DataError` when the reader is opened or first read.
"""

from __future__ import annotations

import csv
import json
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from inference.errors import InferenceError
from schemas import DecodeError, TransactionEvent, decode
from schemas.mapping import EventMapping, MappingError, Problem, RecordError

DEFAULT_LABEL_FIELD: Final = "is_fraud"
DEFAULT_CHUNK_ROWS: Final = 4096
_MAX_EXAMPLES = 10
_MAX_LINE_BYTES = 1 << 20


class DataError(InferenceError):
    """A data file cannot be used: missing, unreadable, wrongly mapped, or too many bad rows."""


@dataclass(frozen=True, slots=True)
class Chunk:
    """Consecutive good rows: events, their labels (empty when labels were not asked for), and
    where each came from (line number for text files, 1-based row number for Parquet)."""

    events: list[TransactionEvent]
    labels: list[int]
    rows: list[int]


@dataclass
class BadRows:
    """Rows that could not be used: counted by reason, the first few kept with their location.

    ``limit``: raise ``DataError`` as soon as more rows than this are bad (None: never).
    """

    limit: int | None = None
    count: int = 0
    by_reason: Counter[str] = field(default_factory=Counter)
    examples: list[str] = field(default_factory=list)
    unit: str = "line"

    def add(self, row: int, error: RecordError | DecodeError) -> None:
        reason = _reason(error)
        self.count += 1
        self.by_reason[reason] += 1
        if len(self.examples) < _MAX_EXAMPLES:
            self.examples.append(f"{self.unit} {row}: {reason}")
        if self.limit is not None and self.count > self.limit:
            raise DataError(f"too many bad rows: more than {self.limit}; {self.summary()}")

    def summary(self, reasons: int = 5) -> str:
        """One line: how many, the commonest reasons, the first locations (never any content)."""
        if not self.count:
            return "no bad rows"
        common = "; ".join(f"{reason} x{count}" for reason, count in self.by_reason.most_common(reasons))
        return f"{self.count} bad rows ({common}); first at {', '.join(self.examples[:3])}"

    def to_json(self) -> dict[str, Any]:
        return {"count": self.count, "by_reason": dict(self.by_reason.most_common(20)), "first": list(self.examples)}


def _reason(error: RecordError | DecodeError) -> str:
    if isinstance(error, RecordError):
        target = f" (-> {error.target})" if error.target else ""
        return f"{error.path}{target}: {error.problem.value}"
    fields = f" ({', '.join(error.fields[:3])})" if error.fields else ""
    return f"{error.kind.value}{fields}"


def count_lines(path: Path) -> int:
    """Newlines in ``path`` (plus one for a last line without one): an upper bound of its rows."""
    lines = 0
    last = b"\n"
    with path.open("rb") as source:
        while block := source.read(1 << 20):
            lines += block.count(b"\n")
            last = block[-1:]
    return lines + (last != b"\n")


class RecordReader:
    """Reads one labelled data file in chunks; :meth:`chunks` may be called once per pass.

    ``mapping``: the bank's format (None: JSON Lines of TransactionEvent v1). ``labels=False`` reads
    events only (a load generator). ``label_field`` names the label when the mapping declares
    none, and in wire-format JSON Lines.
    """

    def __init__(
        self,
        path: Path,
        *,
        mapping: EventMapping | None = None,
        label_field: str = DEFAULT_LABEL_FIELD,
        labels: bool = True,
        chunk_rows: int = DEFAULT_CHUNK_ROWS,
    ) -> None:
        self.path = Path(path)
        if not self.path.is_file():
            raise DataError(f"{self.path}: data file does not exist")
        if chunk_rows < 1:
            raise ValueError("chunk_rows must be >= 1")
        suffix = self.path.suffix.lower()
        if mapping is None and suffix in (".csv", ".tsv", ".parquet", ".pq"):
            raise DataError(f"{self.path}: {suffix} files need a mapping (--mapping FILE) to become TransactionEvents")
        #: Where labels come from, for reports: the mapping's ``[label]`` or the label field.
        self.label_source = "mapping [label]" if mapping is not None and mapping.has_label else label_field
        if mapping is not None and labels:
            mapping = mapping.with_label(label_field)
        self.mapping = mapping
        self.label_field = label_field
        self.labels = labels
        self.chunk_rows = chunk_rows
        self.format = "events-jsonl" if mapping is None else mapping.source_format
        #: Source columns neither mapped nor dropped (only with ``unmapped = "count"``), after a pass.
        self.unmapped_columns: tuple[str, ...] = ()
        #: JSON records with fields neither mapped nor dropped (``unmapped = "count"``), by field.
        self.unmapped_fields: Counter[str] = Counter()
        self._row_estimate: int | None = None

    @property
    def unit(self) -> str:
        """How :class:`BadRows` locates a row in this file: by ``line`` or by ``row``."""
        return "row" if self.format == "parquet" else "line"

    def row_estimate(self) -> int:
        """An upper bound of the rows (exact for Parquet; newlines for text files), for preallocation."""
        if self._row_estimate is None:
            if self.format == "parquet":
                self._row_estimate = int(_parquet_file(self.path).metadata.num_rows)
            else:
                self._row_estimate = count_lines(self.path)
        return self._row_estimate

    def chunks(self, bad: BadRows, *, on_rows: Callable[[int], None] | None = None) -> Iterator[Chunk]:
        """Good rows in order, ``chunk_rows`` at a time; bad ones go to ``bad``.

        ``on_rows(n)`` is called after every chunk with the number of source rows it consumed.
        """
        bad.unit = self.unit
        progress = on_rows or (lambda rows: None)
        if self.format == "events-jsonl":
            rows: Iterator[tuple[int, TransactionEvent | DecodeError | RecordError, int]] = self._wire_rows()
        elif self.format == "csv":
            rows = self._mapped(self._csv_records())
        elif self.format == "parquet":
            rows = self._mapped(self._parquet_records())
        else:
            rows = self._mapped(self._json_records())
        events: list[TransactionEvent] = []
        labels: list[int] = []
        numbers: list[int] = []
        consumed = 0
        for number, result, label in rows:
            consumed += 1
            if isinstance(result, RecordError | DecodeError):
                bad.add(number, result)
            else:
                events.append(result)
                labels.append(label)
                numbers.append(number)
            if consumed == self.chunk_rows:
                if events:
                    yield Chunk(events, labels if self.labels else [], numbers)
                progress(consumed)
                events, labels, numbers, consumed = [], [], [], 0
        if events:
            yield Chunk(events, labels if self.labels else [], numbers)
        progress(consumed)

    def source_records(self, bad: BadRows) -> Iterator[tuple[dict[str, Any], TransactionEvent]]:
        """Each good row as the bank wrote it (a JSON object of its fields or columns) with the event
        the mapping makes of it; bad rows go to ``bad``. What a load generator sends to a worker that
        reads the bank's format through the same mapping."""
        mapping = self.mapping
        if mapping is None:
            raise DataError(f"{self.path}: source records need a mapping")
        bad.unit = self.unit
        if self.format == "csv":
            records = self._csv_records()
        elif self.format == "parquet":
            records = self._parquet_records()
        else:
            records = self._json_records()
        for number, record in records:
            result = record if isinstance(record, RecordError) else mapping.apply(record)
            if isinstance(result, RecordError):
                bad.add(number, result)
            else:
                assert not isinstance(record, RecordError)
                yield record, result

    # --- formats ------------------------------------------------------------------------------

    def _lines(self, encoding: str) -> Iterator[tuple[int, str]]:
        try:
            with self.path.open(encoding=encoding, newline="") as source:
                yield from enumerate(source, start=1)
        except UnicodeDecodeError:
            raise DataError(f"{self.path}: not valid {encoding} text") from None
        except OSError as exc:
            raise DataError(f"{self.path}: cannot be read ({exc.__class__.__name__})") from None

    def _wire_rows(self) -> Iterator[tuple[int, TransactionEvent | DecodeError | RecordError, int]]:
        for number, line in self._lines("utf-8"):
            if not line.strip():
                continue
            yield number, *self._wire_row(line)

    def _wire_row(self, line: str) -> tuple[TransactionEvent | DecodeError | RecordError, int]:
        if len(line) > _MAX_LINE_BYTES:
            return RecordError("<record>", Problem.MALFORMED, detail="line longer than 1 MiB"), 0
        try:
            record = json.loads(line)
        except (json.JSONDecodeError, RecursionError):
            return RecordError("<record>", Problem.MALFORMED, detail="not JSON"), 0
        if not isinstance(record, dict):
            return RecordError("<record>", Problem.NOT_AN_OBJECT), 0
        label_value = record.pop(self.label_field, None)
        if isinstance(record.get("event"), dict):  # the generator's {"event": ..., "is_fraud": ...} lines
            record = record["event"]
        label = _wire_label(label_value)
        if self.labels and label is None:
            missing = label_value is None
            problem = Problem.MISSING if missing else Problem.NOT_A_BOOLEAN
            detail = "absent" if missing else "not true/false or 0/1"
            return RecordError(self.label_field, problem, "label", detail), 0
        # Re-encoded and decoded exactly as the worker decodes a record (size, schema, PANs).
        return decode(json.dumps(record, separators=(",", ":")).encode("utf-8")), label or 0

    def _mapped(
        self, records: Iterator[tuple[int, dict[str, Any] | RecordError]]
    ) -> Iterator[tuple[int, TransactionEvent | RecordError, int]]:
        mapping = self.mapping
        assert mapping is not None
        count_unmapped = mapping.unmapped == "count" and self.format == "json"
        for number, record in records:
            if isinstance(record, RecordError):
                yield number, record, 0
                continue
            if count_unmapped:
                self.unmapped_fields.update(mapping.unmapped_fields(record))
            if self.labels:
                result = mapping.apply_labelled(record)
                if isinstance(result, RecordError):
                    yield number, result, 0
                else:
                    yield number, result.event, result.label
            else:
                yield number, mapping.apply(record), 0

    def _check_columns(self, columns: Sequence[str]) -> None:
        assert self.mapping is not None
        try:
            self.unmapped_columns = self.mapping.check_columns(columns).unmapped
        except MappingError as exc:
            raise DataError(f"{self.path}: {exc}") from None

    def _csv_records(self) -> Iterator[tuple[int, dict[str, Any] | RecordError]]:
        mapping = self.mapping
        assert mapping is not None
        lines = self._lines(mapping.encoding)
        numbered = _LineCounter(lines)
        reader = csv.reader(numbered, delimiter=mapping.delimiter, quotechar=mapping.quote, strict=True)
        try:
            header = next(reader)
        except StopIteration:
            raise DataError(f"{self.path}: empty file (no header)") from None
        except csv.Error:
            raise DataError(f"{self.path}: line 1: the header is not valid CSV") from None
        header = [name.strip().lstrip("\ufeff") for name in header]
        if len(set(header)) != len(header):
            raise DataError(f"{self.path}: the header repeats a column name")
        self._check_columns(header)
        width = len(header)
        while True:
            try:
                row = next(reader)
            except StopIteration:
                return
            except csv.Error:
                yield numbered.number, RecordError("<row>", Problem.MALFORMED, detail="not valid CSV")
                continue
            if not row:
                continue
            if len(row) != width:
                detail = f"{len(row)} fields where the header has {width}"
                yield numbered.number, RecordError("<row>", Problem.MALFORMED, detail=detail)
                continue
            yield numbered.number, dict(zip(header, row, strict=True))

    def _json_records(self) -> Iterator[tuple[int, dict[str, Any] | RecordError]]:
        from schemas.mapping import parse_json_object

        assert self.mapping is not None
        for number, line in self._lines(self.mapping.encoding):
            if line.strip():
                yield number, parse_json_object(line, max_bytes=_MAX_LINE_BYTES)

    def _parquet_records(self) -> Iterator[tuple[int, dict[str, Any] | RecordError]]:
        parquet = _parquet_file(self.path)
        self._check_columns(_leaf_columns(parquet.schema_arrow))
        number = 0
        for batch in parquet.iter_batches(batch_size=self.chunk_rows):
            for record in batch.to_pylist():
                number += 1
                yield number, record


class _LineCounter:
    """Feeds lines to ``csv.reader`` and remembers the number of the last line handed out."""

    def __init__(self, lines: Iterator[tuple[int, str]]) -> None:
        self._lines = lines
        self.number = 0

    def __iter__(self) -> _LineCounter:
        return self

    def __next__(self) -> str:
        self.number, line = next(self._lines)
        return line


def _wire_label(value: Any) -> int | None:
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, int) and value in (0, 1):
        return value
    return None


def _parquet_file(path: Path) -> Any:
    try:
        import pyarrow.parquet as pq
    except ImportError:
        raise DataError("reading Parquet needs pyarrow: pip install 'riskstream[data]'") from None
    try:
        return pq.ParquetFile(path)
    except Exception as exc:  # pyarrow raises ArrowInvalid/OSError subclasses of its own
        raise DataError(f"{path}: not a readable Parquet file ({exc.__class__.__name__})") from None


def _leaf_columns(schema: Any) -> list[str]:
    """Dotted names of a Parquet schema's leaf fields (struct members as ``parent.child``)."""
    import pyarrow as pa

    names: list[str] = []

    def visit(prefix: str, field: Any) -> None:
        name = f"{prefix}{field.name}"
        if pa.types.is_struct(field.type):
            for child in field.type:
                visit(f"{name}.", child)
        else:
            names.append(name)

    for item in schema:
        visit("", item)
    return names


def read_labelled(
    path: Path, *, mapping: EventMapping | None = None, label_field: str = DEFAULT_LABEL_FIELD
) -> tuple[list[TransactionEvent], list[int], BadRows]:
    """Every good event and label of a (small) file in memory, with the bad rows: tests and scripts."""
    reader = RecordReader(path, mapping=mapping, label_field=label_field)
    bad = BadRows()
    events: list[TransactionEvent] = []
    labels: list[int] = []
    for chunk in reader.chunks(bad):
        events.extend(chunk.events)
        labels.extend(chunk.labels)
    return events, labels, bad
