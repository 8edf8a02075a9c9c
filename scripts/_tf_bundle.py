"""Read TensorFlow (1.x/2.x) checkpoints -- "tensor bundles" -- without TensorFlow.

Used only by ``scripts/convert_weights.py`` (the one-time conversion of the pretrained weights
to safetensors); the installed package never imports it.

A checkpoint with prefix ``P`` is two kinds of file:

- ``P.index``: an SSTable (LevelDB table format).  Each key is a variable name; each value is a
  ``BundleEntryProto`` protobuf saying where the tensor's bytes lie.  The empty key holds a
  ``BundleHeaderProto`` (number of shards, byte order).
- ``P.data-SSSSS-of-NNNNN``: the raw little-endian tensor bytes, one file per shard.

Only the pieces needed for plain (unpartitioned, numeric) variables are implemented: protobuf
varints are decoded by hand and snappy-compressed index blocks are rejected with a clear error
(TensorFlow writes the index uncompressed).  Block checksums and, optionally, the per-tensor
CRC32C checksums are verified, so a truncated or edited file raises :class:`ModelLoadError`.
"""

from __future__ import annotations

import os
import struct
from pathlib import Path

import numpy as np

from cultural_music.errors import ModelLoadError

__all__ = ["read_tf_checkpoint", "crc32c"]

_TABLE_MAGIC = 0xDB4775248B80FB57  # LevelDB table magic, fixed64 little-endian at the file end
_FOOTER_LEN = 48  # two BlockHandles padded to 40 bytes + 8-byte magic
_BLOCK_TRAILER_LEN = 5  # compression type byte + masked crc32c (fixed32)

# tensorflow/core/framework/types.proto -> numpy (little-endian)
_DT_STRING = 7  # skipped: TF2's _CHECKPOINTABLE_OBJECT_GRAPH bookkeeping entry, not a weight
_DTYPES: dict[int, np.dtype] = {
    1: np.dtype("<f4"),  # DT_FLOAT
    2: np.dtype("<f8"),  # DT_DOUBLE
    3: np.dtype("<i4"),  # DT_INT32
    4: np.dtype("u1"),  # DT_UINT8
    5: np.dtype("<i2"),  # DT_INT16
    6: np.dtype("i1"),  # DT_INT8
    9: np.dtype("<i8"),  # DT_INT64
    10: np.dtype("?"),  # DT_BOOL
    17: np.dtype("<u2"),  # DT_UINT16
    19: np.dtype("<f2"),  # DT_HALF
}


# --------------------------------------------------------------------------------------------
# CRC32C (Castagnoli), as used by LevelDB block trailers and tensor bundle entries
# --------------------------------------------------------------------------------------------
def _make_table() -> np.ndarray:
    table = np.arange(256, dtype=np.uint32)
    for _ in range(8):
        table = np.where(table & 1, (table >> 1) ^ np.uint32(0x82F63B78), table >> 1)
    return table.astype(np.uint32)


_CRC_TABLE = _make_table()
_CRC_TABLE_LIST = [int(v) for v in _CRC_TABLE]


def _crc_raw_py(data: bytes, state: int = 0) -> int:
    """Reflected CRC32C register update, no init/final xor (pure Python; for short inputs)."""
    table = _CRC_TABLE_LIST
    for b in data:
        state = table[(state ^ b) & 0xFF] ^ (state >> 8)
    return state


def _zero_shift_tables(n_bytes: int) -> list[list[int]]:
    """Byte-wise lookup tables of the linear map "feed ``n_bytes`` zero bytes" on the register."""
    states = np.uint32(1) << np.arange(32, dtype=np.uint32)  # the 32 basis vectors
    for _ in range(n_bytes):
        states = _CRC_TABLE[states & 0xFF] ^ (states >> 8)
    images = [int(v) for v in states]
    tables = []
    for byte in range(4):
        t = [0] * 256
        for v in range(1, 256):
            low = v & -v
            t[v] = t[v ^ low] ^ images[8 * byte + low.bit_length() - 1]
        tables.append(t)
    return tables


def crc32c(data: bytes | bytearray | memoryview) -> int:
    """Standard CRC32C (init and final xor 0xFFFFFFFF) of ``data``.

    Long inputs are cut into equal chunks whose raw CRCs are computed side by side with numpy,
    then chained with the (linear) zero-byte shift, so a few MB take tens of milliseconds.
    """
    buf = np.frombuffer(bytes(data), dtype=np.uint8)
    n = buf.size
    if n < 4096:
        return _crc_raw_py(buf.tobytes(), 0xFFFFFFFF) ^ 0xFFFFFFFF
    buf = buf.copy()
    buf[:4] ^= 0xFF  # the 0xFFFFFFFF init equals flipping the first 4 bytes with init 0
    chunk = int(np.ceil(np.sqrt(n)))
    k = -(-n // chunk)
    padded = np.zeros(k * chunk, dtype=np.uint8)
    padded[k * chunk - n :] = buf  # leading zeros leave a zero register unchanged
    chunks = padded.reshape(k, chunk)
    states = np.zeros(k, dtype=np.uint32)
    for j in range(chunk):
        states = _CRC_TABLE[(states ^ chunks[:, j]) & 0xFF] ^ (states >> 8)
    t0, t1, t2, t3 = _zero_shift_tables(chunk)
    state = 0
    for s in states.tolist():
        state = (
            t0[state & 0xFF] ^ t1[(state >> 8) & 0xFF] ^ t2[(state >> 16) & 0xFF] ^ t3[state >> 24]
        ) ^ s
    return state ^ 0xFFFFFFFF


def _unmask(masked: int) -> int:
    rot = (masked - 0xA282EAD8) & 0xFFFFFFFF
    return ((rot >> 17) | (rot << 15)) & 0xFFFFFFFF


# --------------------------------------------------------------------------------------------
# protobuf wire format and SSTable blocks
# --------------------------------------------------------------------------------------------
class _Corrupt(Exception):
    """Internal: raised by the low-level decoders, turned into ModelLoadError with the path."""


def _varint(buf: bytes, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        if pos >= len(buf):
            raise _Corrupt("truncated varint")
        b = buf[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if not b & 0x80:
            return result, pos
        shift += 7
        if shift > 63:
            raise _Corrupt("varint longer than 10 bytes")


def _proto_fields(buf: bytes) -> list[tuple[int, int | bytes]]:
    """Decode one protobuf message into ``(field_number, value)`` pairs, in order."""
    fields: list[tuple[int, int | bytes]] = []
    pos = 0
    while pos < len(buf):
        tag, pos = _varint(buf, pos)
        num, wire = tag >> 3, tag & 7
        value: int | bytes
        if wire == 0:
            value, pos = _varint(buf, pos)
        elif wire == 1:
            value, pos = int.from_bytes(buf[pos : pos + 8], "little"), pos + 8
        elif wire == 2:
            length, pos = _varint(buf, pos)
            value, pos = buf[pos : pos + length], pos + length
        elif wire == 5:
            value, pos = int.from_bytes(buf[pos : pos + 4], "little"), pos + 4
        else:
            raise _Corrupt(f"unsupported protobuf wire type {wire}")
        if pos > len(buf):
            raise _Corrupt("truncated protobuf message")
        fields.append((num, value))
    return fields


def _read_block(data: bytes, offset: int, size: int, what: str) -> bytes:
    end = offset + size + _BLOCK_TRAILER_LEN
    if offset < 0 or end > len(data):
        raise _Corrupt(f"{what} block [{offset}, {end}) lies past the end of the file")
    contents = data[offset : offset + size]
    ctype = data[offset + size]
    (stored,) = struct.unpack_from("<I", data, offset + size + 1)
    if _unmask(stored) != _crc_raw_py(data[offset : offset + size + 1], 0xFFFFFFFF) ^ 0xFFFFFFFF:
        raise _Corrupt(f"{what} block checksum mismatch")
    if ctype == 1:
        raise _Corrupt(f"{what} block is snappy-compressed, which this reader does not support")
    if ctype != 0:
        raise _Corrupt(f"{what} block has unknown compression type {ctype}")
    return contents


def _block_entries(block: bytes) -> list[tuple[bytes, bytes]]:
    """Decode the key/value pairs of one SSTable block (prefix-compressed keys)."""
    if len(block) < 4:
        raise _Corrupt("block shorter than its restart count")
    (n_restarts,) = struct.unpack_from("<I", block, len(block) - 4)
    limit = len(block) - 4 - 4 * n_restarts
    if limit < 0:
        raise _Corrupt("block restart array larger than the block")
    entries: list[tuple[bytes, bytes]] = []
    key = b""
    pos = 0
    while pos < limit:
        shared, pos = _varint(block, pos)
        unshared, pos = _varint(block, pos)
        vlen, pos = _varint(block, pos)
        if shared > len(key) or pos + unshared + vlen > limit:
            raise _Corrupt("malformed block entry")
        key = key[:shared] + block[pos : pos + unshared]
        pos += unshared
        entries.append((key, block[pos : pos + vlen]))
        pos += vlen
    return entries


def _table_entries(data: bytes) -> list[tuple[bytes, bytes]]:
    """All key/value pairs of an SSTable file held in ``data``."""
    if len(data) < _FOOTER_LEN:
        raise _Corrupt(f"file is {len(data)} bytes, shorter than the {_FOOTER_LEN}-byte footer")
    footer = data[-_FOOTER_LEN:]
    (magic,) = struct.unpack_from("<Q", footer, _FOOTER_LEN - 8)
    if magic != _TABLE_MAGIC:
        raise _Corrupt("bad table magic number (not an SSTable, or truncated)")
    pos = 0
    _meta_off, pos = _varint(footer, pos)
    _meta_size, pos = _varint(footer, pos)
    index_off, pos = _varint(footer, pos)
    index_size, pos = _varint(footer, pos)
    index_block = _read_block(data, index_off, index_size, "index")
    entries: list[tuple[bytes, bytes]] = []
    for _last_key, handle in _block_entries(index_block):
        off, p = _varint(handle, 0)
        size, _ = _varint(handle, p)
        entries.extend(_block_entries(_read_block(data, off, size, "data")))
    return entries


def _as_int(value: int | bytes, what: str) -> int:
    if not isinstance(value, int):
        raise _Corrupt(f"{what} has the wrong protobuf wire type")
    return value


def _as_bytes(value: int | bytes, what: str) -> bytes:
    if not isinstance(value, bytes):
        raise _Corrupt(f"{what} has the wrong protobuf wire type")
    return value


def _parse_entry(value: bytes) -> dict:
    """Decode a BundleEntryProto into a dict (dtype, shape, shard_id, offset, size, crc32c)."""
    names = {1: "dtype", 3: "shard_id", 4: "offset", 5: "size", 6: "crc32c"}
    entry: dict = {"dtype": 0, "shape": [], "shard_id": 0, "offset": 0, "size": 0, "crc32c": None}
    for num, val in _proto_fields(value):
        if num in names:
            entry[names[num]] = _as_int(val, names[num])
        elif num == 2:
            for dnum, dim in _proto_fields(_as_bytes(val, "shape")):
                if dnum == 2:  # TensorShapeProto.Dim {int64 size = 1; string name = 2}
                    size = _as_int(dict(_proto_fields(_as_bytes(dim, "dim"))).get(1, 0), "dim")
                    entry["shape"].append(size - (1 << 64) if size >= 1 << 63 else size)
                elif dnum == 3 and dim:
                    raise _Corrupt("tensor of unknown rank")
        elif num == 7:
            raise _Corrupt("partitioned (sliced) variables are not supported")
    return entry


def _index_path(prefix: str | os.PathLike[str]) -> tuple[Path, str]:
    text = os.fspath(prefix)
    if os.path.isdir(text):  # prefix ending in "/" (e.g. musicnn's "MSD_musicnn/") lost by Path
        text = os.path.join(text, "")
    return Path(text + ".index"), text


def read_tf_checkpoint(
    prefix: str | os.PathLike[str], *, verify_crc: bool = True
) -> dict[str, np.ndarray]:
    """Read every tensor of a TensorFlow checkpoint into numpy arrays.

    Parameters
    ----------
    prefix
        Checkpoint prefix, i.e. the path without ``.index`` / ``.data-*``.  A directory is taken
        as the prefix ``<dir>/`` (files ``<dir>/.index`` and ``<dir>/.data-00000-of-00001``).
    verify_crc
        Check each tensor's CRC32C against the one stored in the index (block checksums of the
        index are always checked).

    Returns
    -------
    dict
        Variable name (e.g. ``"conv2d/kernel"``) -> array with the stored dtype and shape
        (TensorFlow layout: conv kernels HWIO, dense kernels (in, out)).

    Raises
    ------
    ModelLoadError
        A file is missing, truncated or corrupt, or holds a feature this reader lacks
        (partitioned variables, string tensors, compressed index blocks).
    """
    index_path, text = _index_path(prefix)
    try:
        index_bytes = index_path.read_bytes()
    except OSError as exc:
        raise ModelLoadError(
            f"{index_path}: cannot read checkpoint index ({exc.strerror})"
        ) from exc
    try:
        raw_entries = _table_entries(index_bytes)
        header: dict[int, int | bytes] = {}
        entries: dict[str, dict] = {}
        for key, value in raw_entries:
            if key == b"":
                header = dict(_proto_fields(value))
            else:
                entries[key.decode("utf-8")] = _parse_entry(value)
    except (_Corrupt, UnicodeDecodeError, struct.error) as exc:
        raise ModelLoadError(f"{index_path}: corrupt checkpoint index: {exc}") from exc
    if not entries:
        raise ModelLoadError(f"{index_path}: checkpoint index lists no tensors")
    if header.get(2, 0) != 0:
        raise ModelLoadError(f"{index_path}: big-endian checkpoints are not supported")
    n_shards = header.get(1, 1)
    if not isinstance(n_shards, int) or n_shards < 1:
        raise ModelLoadError(f"{index_path}: corrupt checkpoint header (num_shards={n_shards!r})")

    shards: dict[int, bytes] = {}
    out: dict[str, np.ndarray] = {}
    for name, e in entries.items():
        if e["dtype"] == _DT_STRING and name == "_CHECKPOINTABLE_OBJECT_GRAPH":
            continue
        shard = e["shard_id"]
        data_path = Path(f"{text}.data-{shard:05d}-of-{n_shards:05d}")
        if shard not in shards:
            try:
                shards[shard] = data_path.read_bytes()
            except OSError as exc:
                raise ModelLoadError(
                    f"{data_path}: cannot read checkpoint data ({exc.strerror})"
                ) from exc
        data = shards[shard]
        dtype = _DTYPES.get(e["dtype"])
        if dtype is None:
            raise ModelLoadError(
                f"{index_path}: tensor {name!r} has unsupported TensorFlow dtype {e['dtype']}"
            )
        shape = tuple(e["shape"])
        n_bytes = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
        start, size = e["offset"], e["size"]
        if size != n_bytes or min(shape, default=0) < 0:
            raise ModelLoadError(
                f"{index_path}: tensor {name!r} of shape {shape} claims {size} bytes, "
                f"expected {n_bytes}"
            )
        if start + size > len(data):
            raise ModelLoadError(
                f"{data_path}: truncated: tensor {name!r} needs bytes [{start}, {start + size}) "
                f"but the file has {len(data)} bytes"
            )
        chunk = data[start : start + size]
        if verify_crc and e["crc32c"] is not None and _unmask(e["crc32c"]) != crc32c(chunk):
            raise ModelLoadError(
                f"{data_path}: checksum mismatch for tensor {name!r} (edited file?)"
            )
        out[name] = np.frombuffer(chunk, dtype=dtype).reshape(shape).copy()
    return out
