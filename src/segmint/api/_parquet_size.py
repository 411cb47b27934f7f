"""What a Parquet upload decodes to, counted without trusting its footer's sizes.

The footer's ``total_byte_size`` can be written small by hand, and dictionary encoding
lets 400 rows of one 1 MB string (a 600-byte file) decode to 400 MB: the old estimate,
``max(total_byte_size, 8 x rows x columns)``, let both through. Here every page header
is read (readers allocate what a page header declares, whatever the footer says), the
schema must be flat (a list column holds any number of values per row), and text and
binary columns are read dictionary-encoded (the dictionary and four bytes per row, never
the expanded text) to add up the length of every value they decode to.
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["UnreadableParquet", "parquet_decoded_size"]


class UnreadableParquet(Exception):
    """A Parquet file whose size cannot be established (damaged or unusual layout)."""


#: Most pages a file may have: a 20 MB file of ordinary row groups has hundreds; each
#: header costs some microseconds to read.
_MAX_PAGES = 100_000

#: Parquet encodings: DELTA_BYTE_ARRAY lets each value repeat the one before it (a
#: dictionary without the dictionary): its values are bounded, not counted.
_DELTA_BYTE_ARRAY = 7
_DATA_PAGE, _DICTIONARY_PAGE, _DATA_PAGE_V2 = 0, 2, 3
#: PLAIN_DICTIONARY and RLE_DICTIONARY: values that are indices into a dictionary page.
_DICTIONARY_ENCODINGS = (2, 8)


def parquet_decoded_size(path: Path, limit: int) -> int:
    """The bytes ``path`` decodes to (at least 8 per value, text at its length), counted
    up to just past ``limit``.

    Raises
    ------
    UnreadableParquet
        For a nested schema, a column chunk in another file, or pages that cannot be
        read: the service cannot bound what reading them would take.
    """
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    data = path.read_bytes()  # at most the body limit
    try:
        meta = pq.ParquetFile(path).metadata
    except (pa.ArrowException, OSError) as exc:
        raise UnreadableParquet(f"is not a readable Parquet file ({exc})") from exc
    schema = meta.schema
    ncols = meta.num_columns
    for j in range(ncols):
        if schema.column(j).max_repetition_level > 0:
            raise UnreadableParquet(
                f"has a nested (list or map) column {schema.column(j).path!r}; "
                "upload a flat table of transactions or features"
            )
    rows = sum(max(meta.row_group(i).num_rows, 0) for i in range(meta.num_row_groups))
    total = 0
    texts = []
    for j in range(ncols):
        col = schema.column(j)
        if col.physical_type == "BYTE_ARRAY":
            texts.append(j)
        width = (col.length or 0) if col.physical_type == "FIXED_LEN_BYTE_ARRAY" else 0
        total += rows * max(8, 12 if col.physical_type == "INT96" else width)
    if total > limit:
        return total
    pages = unpacked_total = 0
    text_set = set(texts)
    # per row group, the text columns whose chunk holds dictionary pages: only those can
    # decode to more than their pages (PLAIN and DELTA_LENGTH_BYTE_ARRAY values are
    # stored whole, so their pages bound them, and pyarrow cannot read the latter as a
    # dictionary: DuckDB's PARQUET_VERSION V2 files were refused as unreadable)
    dictionary_texts: list[list[int]] = []
    for i in range(meta.num_row_groups):
        group = meta.row_group(i)
        dictionary_texts.append([])
        for j in range(ncols):
            chunk = group.column(j)
            if chunk.file_path:
                raise UnreadableParquet("keeps a column in another file")
            unpacked, delta_values, count, dictionary = _walk_pages(data, chunk)
            if j in text_set:
                if dictionary:
                    dictionary_texts[i].append(j)
                else:  # its values at most its decompressed pages
                    total += unpacked
            pages += count
            if pages > _MAX_PAGES:
                raise UnreadableParquet(f"has more than {_MAX_PAGES:,} pages")
            # every page is decompressed whole (held while its values are decoded); a
            # DELTA_BYTE_ARRAY value may repeat all of the chunk's bytes before it
            unpacked_total += unpacked
            total += delta_values * unpacked
            if max(total, unpacked_total) > limit:
                return max(total, unpacked_total)
    if not any(dictionary_texts):
        return max(total, unpacked_total)
    # the text: every value at its length, read as dictionary indices into the values
    names = [schema.column(j).path for j in texts]
    try:
        reader = pq.ParquetFile(path, read_dictionary=names)
        for i in range(meta.num_row_groups):
            if not dictionary_texts[i]:
                continue
            table = reader.reader.read_row_group(i, column_indices=dictionary_texts[i])
            for column in table.columns:
                for part in column.chunks:
                    if pa.types.is_dictionary(part.type):
                        lengths = pc.binary_length(part.dictionary)
                        size = pc.sum(pc.take(lengths, part.indices)).as_py()
                    else:
                        size = pc.sum(pc.binary_length(part)).as_py()
                    total += size or 0
            del table
            if total > limit:
                return total
    except (pa.ArrowException, OSError) as exc:
        raise UnreadableParquet(f"is not a readable Parquet file ({exc})") from exc
    return max(total, unpacked_total)


def _walk_pages(data: bytes, chunk) -> tuple[int, int, int, bool]:
    """Read the page headers of one column chunk: the bytes its pages decompress to, the
    values of its DELTA_BYTE_ARRAY pages, its number of pages, and whether it has a
    dictionary (a dictionary page, or data pages of dictionary indices)."""
    start = chunk.data_page_offset
    if chunk.has_dictionary_page and 0 < (chunk.dictionary_page_offset or 0) < start:
        start = chunk.dictionary_page_offset
    end = start + chunk.total_compressed_size
    if not (0 <= start <= end <= len(data)):
        raise UnreadableParquet("has a column chunk outside the file")
    unpacked = delta = count = 0
    dictionary = False
    pos = start
    while pos < end:
        header, pos = _Compact(data, pos).page_header()
        size = header.get(3, -1)
        if header.get(2, -1) < 0 or size < 0 or pos + size > len(data):
            raise UnreadableParquet("has a damaged page header")
        unpacked += header[2]
        kind = header.get(1)
        if kind == _DATA_PAGE:
            encoding = header.get(5, {}).get(2)
        else:
            encoding = header.get(8, {}).get(4) if kind == _DATA_PAGE_V2 else None
        dictionary |= kind == _DICTIONARY_PAGE or encoding in _DICTIONARY_ENCODINGS
        if kind == _DATA_PAGE and header.get(5, {}).get(2) == _DELTA_BYTE_ARRAY:
            delta += max(header[5].get(1, 0), 0)
        elif kind == _DATA_PAGE_V2 and header.get(8, {}).get(4) == _DELTA_BYTE_ARRAY:
            delta += max(header[8].get(1, 0), 0)
        pos += size
        count += 1
        if count > _MAX_PAGES:
            break
    return unpacked, delta, count, dictionary


class _Compact:
    """Just enough of Thrift's compact protocol to read a Parquet page header: integer
    fields and the nested headers, everything else skipped.

    Written here because no dependency we have exposes page headers: pyarrow reads only
    the footer, the ``thrift`` package would need bindings generated from
    ``parquet.thrift``, and fastparquet would be a second Parquet engine to install for
    one structure of about ten integer fields."""

    def __init__(self, data: bytes, pos: int) -> None:
        self.data = data
        self.pos = pos

    def page_header(self) -> tuple[dict, int]:
        try:
            header = self._struct(0)
        except IndexError:
            raise UnreadableParquet("has a damaged page header") from None
        return header, self.pos

    def _byte(self) -> int:
        b = self.data[self.pos]
        self.pos += 1
        return b

    def _varint(self) -> int:
        shift = result = 0
        while True:
            b = self._byte()
            result |= (b & 0x7F) << shift
            if not b & 0x80:
                return result
            shift += 7
            if shift > 63:
                raise UnreadableParquet("has a damaged page header")

    def _zigzag(self) -> int:
        n = self._varint()
        return (n >> 1) ^ -(n & 1)

    def _struct(self, depth: int) -> dict:
        if depth > 8:
            raise UnreadableParquet("has a damaged page header")
        fields: dict = {}
        last = 0
        while True:
            head = self._byte()
            if head == 0:
                return fields
            kind = head & 0x0F
            delta = head >> 4
            last = last + delta if delta else self._zigzag()
            value = self._value(kind, depth)
            if value is not None:
                fields[last] = value
            # booleans carry their value in the type

    def _value(self, kind: int, depth: int):
        if kind in (1, 2):  # boolean true / false
            return kind == 1
        if kind == 3:  # byte
            self._byte()
            return None
        if kind in (4, 5, 6):  # i16, i32, i64
            return self._zigzag()
        if kind == 7:  # double
            self.pos += 8
            return None
        if kind == 8:  # binary
            n = self._varint()
            self.pos += n
            if self.pos > len(self.data):
                raise UnreadableParquet("has a damaged page header")
            return None
        if kind in (9, 10):  # list, set
            head = self._byte()
            n = head >> 4
            if n == 15:
                n = self._varint()
            if n > len(self.data) - self.pos:  # each element takes at least a byte
                raise UnreadableParquet("has a damaged page header")
            for _ in range(n):
                self._element(head & 0x0F, depth)
            return None
        if kind == 11:  # map
            n = self._varint()
            if n > len(self.data) - self.pos:
                raise UnreadableParquet("has a damaged page header")
            if n:
                types = self._byte()
                for _ in range(n):
                    self._element(types >> 4, depth)
                    self._element(types & 0x0F, depth)
            return None
        if kind == 12:
            return self._struct(depth + 1)
        raise UnreadableParquet("has a damaged page header")

    def _element(self, kind: int, depth: int) -> None:
        if kind in (1, 2):  # a boolean in a collection is a byte of its own
            self._byte()
        else:
            self._value(kind, depth)
