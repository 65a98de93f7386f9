"""A few fields of an ONNX file, read without `import onnx` and without reading its weights.

`import onnx` costs ~0.9 s (its ml_dtypes extension; torch comes with the export module), and onnx.load reads the
whole file (~90 MB for the shared checkpoint): every `score` / `infer` run paid both only to read some strings and
the inputs' shapes. The file is a protobuf ModelProto; its top-level records (and the graph's) are walked here by
their tags, seeking over every record that is not wanted, and only the wanted ones are parsed by protobuf against
a descriptor of just those fields of onnx.proto."""

from __future__ import annotations

import functools
import os
from typing import Dict, List, Optional, Tuple, Union

_VARINT, _FIXED64, _LENGTH_DELIMITED, _FIXED32 = 0, 1, 2, 5
_MODEL_GRAPH, _MODEL_METADATA = 7, 14   # ModelProto.graph, ModelProto.metadata_props
_GRAPH_INPUT = 11                       # GraphProto.input

Dim = Union[int, str, None]  # a fixed size, a symbolic name, or unknown


def read_metadata(path) -> dict:
    """ModelProto.metadata_props as {key: value}; {} when the file is missing or not an ONNX model."""
    from google.protobuf.message import DecodeError

    try:
        with open(path, "rb") as handle:
            records = _records(handle, 0, os.fstat(handle.fileno()).st_size, _MODEL_METADATA)
        model = _message_classes()["ModelProto"]()
        model.ParseFromString(records)
    except (OSError, DecodeError, ValueError):  # unreadable: loading it into a runtime reports that, as one line
        return {}
    return {p.key: p.value for p in model.metadata_props}


def read_input_dims(path) -> Optional[Dict[str, List[Dim]]]:
    """The graph's inputs in order, {name: dims}; None when the file is missing or not an ONNX model."""
    from google.protobuf.message import DecodeError

    try:
        with open(path, "rb") as handle:
            size = os.fstat(handle.fileno()).st_size
            graph = _field_range(handle, 0, size, _MODEL_GRAPH)
            if graph is None:
                return None
            records = _records(handle, graph[0], graph[0] + graph[1], _GRAPH_INPUT)
        parsed = _message_classes()["GraphProto"]()
        parsed.ParseFromString(records)
    except (OSError, DecodeError, ValueError):
        return None
    return {value.name: [_dim(d) for d in value.type.tensor_type.shape.dim] for value in parsed.input}


def _dim(dim) -> Dim:
    if dim.HasField("dim_value"):
        return int(dim.dim_value)
    return dim.dim_param if dim.HasField("dim_param") else None


def _read_varint(handle) -> Tuple[int, bytes]:
    """(value, its bytes) of the varint at the handle's position; ValueError at EOF or past 10 bytes."""
    raw = bytearray()
    value = 0
    while True:
        byte = handle.read(1)
        if not byte or len(raw) == 10:
            raise ValueError("truncated or invalid varint")
        raw += byte
        value |= (byte[0] & 0x7F) << (7 * (len(raw) - 1))
        if not byte[0] & 0x80:
            return value, bytes(raw)


def _walk(handle, start: int, end: int):
    """(field, wire type, tag + length bytes, payload offset, payload length) of each record in [start, end),
    leaving the handle at the payload; ValueError when the bytes are not protobuf records."""
    handle.seek(start)
    while handle.tell() < end:
        tag, tag_bytes = _read_varint(handle)
        field, wire = tag >> 3, tag & 7
        if wire == _VARINT:
            _read_varint(handle)
            continue
        if wire in (_FIXED64, _FIXED32):
            length, length_bytes = (8 if wire == _FIXED64 else 4), b""
        elif wire == _LENGTH_DELIMITED:
            length, length_bytes = _read_varint(handle)
        else:  # groups (unused by onnx.proto), or not protobuf at all
            raise ValueError(f"wire type {wire}")
        offset = handle.tell()
        if offset + length > end:
            raise ValueError("record past the end of its message")
        yield field, wire, tag_bytes + length_bytes, offset, length
        handle.seek(offset + length)


def _records(handle, start: int, end: int, wanted: int) -> bytes:
    """Every record of field `wanted` in [start, end) (tags, lengths and payloads, in order): a message with
    only that field, for protobuf to parse."""
    out = bytearray()
    for field, wire, head, offset, length in _walk(handle, start, end):
        if field == wanted and wire == _LENGTH_DELIMITED:
            out += head + handle.read(length)
    return bytes(out)


def _field_range(handle, start: int, end: int, wanted: int) -> Optional[Tuple[int, int]]:
    """(offset, length) of a singular message field's record (an ONNX file writes one; of several, the last)."""
    found = None
    for field, wire, _head, offset, length in _walk(handle, start, end):
        if field == wanted and wire == _LENGTH_DELIMITED:
            found = (offset, length)
    return found


@functools.lru_cache(maxsize=None)
def _message_classes() -> dict:
    """ModelProto {metadata_props = 14} and GraphProto {input = 11} with just the fields read here, as onnx.proto
    numbers them: StringStringEntryProto {key = 1, value = 2}; ValueInfoProto {name = 1, type = 2};
    TypeProto {tensor_type = 1}; TypeProto.Tensor {shape = 2}; TensorShapeProto {dim = 1};
    Dimension {dim_value = 1, dim_param = 2} (a oneof)."""
    from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

    F = descriptor_pb2.FieldDescriptorProto
    package = "tinybert_onnx_fields"
    proto = descriptor_pb2.FileDescriptorProto(name=f"{package}.proto", package=package, syntax="proto2")

    def message(name: str, *fields):
        msg = proto.message_type.add(name=name)
        for field_name, number, kind, label, type_name in fields:
            field = msg.field.add(name=field_name, number=number, type=kind, label=label)
            if type_name:
                field.type_name = f".{package}.{type_name}"
        return msg

    optional, repeated = F.LABEL_OPTIONAL, F.LABEL_REPEATED
    message("StringStringEntryProto", ("key", 1, F.TYPE_STRING, optional, None),
            ("value", 2, F.TYPE_STRING, optional, None))
    dimension = message("Dimension", ("dim_value", 1, F.TYPE_INT64, optional, None),
                        ("dim_param", 2, F.TYPE_STRING, optional, None))
    dimension.oneof_decl.add(name="value")
    for field in dimension.field:
        field.oneof_index = 0
    message("TensorShapeProto", ("dim", 1, F.TYPE_MESSAGE, repeated, "Dimension"))
    message("Tensor", ("shape", 2, F.TYPE_MESSAGE, optional, "TensorShapeProto"))
    message("TypeProto", ("tensor_type", 1, F.TYPE_MESSAGE, optional, "Tensor"))
    message("ValueInfoProto", ("name", 1, F.TYPE_STRING, optional, None),
            ("type", 2, F.TYPE_MESSAGE, optional, "TypeProto"))
    message("GraphProto", ("input", 11, F.TYPE_MESSAGE, repeated, "ValueInfoProto"))
    message("ModelProto", ("metadata_props", 14, F.TYPE_MESSAGE, repeated, "StringStringEntryProto"))
    pool = descriptor_pool.DescriptorPool()
    pool.Add(proto)
    return {name: message_factory.GetMessageClass(pool.FindMessageTypeByName(f"{package}.{name}"))
            for name in ("ModelProto", "GraphProto")}
