"""Minimal safetensors writer/reader (numpy only; the `safetensors` package is not installable here).

Format: 8-byte little-endian u64 header length, a JSON header mapping each tensor name to
{"dtype", "shape", "data_offsets": [begin, end]} (offsets relative to the data section) plus an
optional "__metadata__" dict of string->string, then the raw little-endian tensor bytes.
We write tensors in sorted key order and pad the header with spaces to a multiple of 8 so the
data section stays 8-byte aligned (readers can then view it without copying).
"""

import json
import struct

import numpy as np

_DTYPES = {
    "F16": np.dtype("<f2"),
    "F32": np.dtype("<f4"),
    "F64": np.dtype("<f8"),
    "I8": np.dtype("i1"),
    "U8": np.dtype("u1"),
    "I16": np.dtype("<i2"),
    "I32": np.dtype("<i4"),
    "I64": np.dtype("<i8"),
}
_NAMES = {dt: name for name, dt in _DTYPES.items()}


def write(path, tensors, metadata=None):
    """Write {name: np.ndarray} to `path`; metadata values are stringified (the spec requires strings)."""
    header = {}
    if metadata:
        header["__metadata__"] = {str(k): str(v) for k, v in metadata.items()}
    blobs = []
    offset = 0
    for name in sorted(tensors):
        arr = np.asarray(tensors[name])
        dtype = arr.dtype.newbyteorder("<") if arr.dtype.byteorder == ">" else arr.dtype
        if dtype not in _NAMES:
            raise ValueError(f"{name}: unsupported dtype {arr.dtype}")
        blob = np.ascontiguousarray(arr, dtype=dtype).tobytes()
        header[name] = {"dtype": _NAMES[dtype], "shape": list(arr.shape), "data_offsets": [offset, offset + len(blob)]}
        blobs.append(blob)
        offset += len(blob)
    header_bytes = json.dumps(header, separators=(",", ":")).encode("utf-8")
    header_bytes += b" " * (-len(header_bytes) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(header_bytes)))
        f.write(header_bytes)
        for blob in blobs:
            f.write(blob)


def read(path):
    """Return ({name: np.ndarray}, metadata dict) from a safetensors file, validating offsets."""
    with open(path, "rb") as f:
        raw = f.read()
    (header_len,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8:8 + header_len].decode("utf-8"))
    data = memoryview(raw)[8 + header_len:]
    metadata = header.pop("__metadata__", {})
    tensors = {}
    end_max = 0
    for name, info in header.items():
        begin, end = info["data_offsets"]
        dtype = _DTYPES[info["dtype"]]
        count = int(np.prod(info["shape"], dtype=np.int64))
        if end - begin != count * dtype.itemsize or end > len(data):
            raise ValueError(f"{name}: bad data_offsets {info['data_offsets']}")
        tensors[name] = np.frombuffer(data[begin:end], dtype=dtype).reshape(info["shape"]).copy()
        end_max = max(end_max, end)
    if end_max != len(data):
        raise ValueError(f"data section is {len(data)} bytes but tensors cover {end_max}")
    return tensors, metadata
