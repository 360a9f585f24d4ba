"""USP Record and Msg as plain dicts <-> protobuf bytes.

Dicts are keyed by the .proto field names; repeated fields are lists, maps are
dicts, enums are ints (constants in schema.py). On decode, absent fields are
absent; on encode, missing/None keys and proto3 defaults are not sent.
Encoders return an exactly sized bytearray. Malformed bytes raise DecodeError.
"""
from .pb import DecodeError, encode, decode
from .schema import Msg, Record

USP_VERSION = "1.3"


def encode_msg(d):
    return encode(Msg, d)


def decode_msg(b, views=False):
    return decode(Msg, b, views)


def encode_record(d):
    return encode(Record, d)


def decode_record(b, views=False):
    """views=True: bytes fields (the payload) are memoryviews into `b`, not copies."""
    return decode(Record, b, views)


def make_record(to_id, from_id, msg, version=USP_VERSION):
    """Encoded no-session-context Record carrying `msg`: an encoded Msg, or a Msg dict
    (encoded in place: one buffer, not the Msg's and then the Record's)."""
    return encode(Record, {
        "version": version,
        "to_id": to_id,
        "from_id": from_id,
        "no_session_context": {"payload": (Msg, msg) if type(msg) is dict else msg},
    })


def record_payload(rec):
    """Msg bytes of a decoded no-session-context Record; None for any other record type."""
    nsc = rec.get("no_session_context")
    if nsc is None:
        return None
    return nsc.get("payload", b"")


def new_msg(msg_id, msg_type, part, kind, body):
    """Msg dict; part is 'request'/'response' with kind e.g. 'get', or 'error' with kind None."""
    return {
        "header": {"msg_id": msg_id, "msg_type": msg_type},
        "body": {part: body if kind is None else {kind: body}},
    }


def error_msg(msg_id, err_code, err_msg="", param_errs=None):
    e = {"err_code": err_code, "err_msg": err_msg}
    if param_errs:
        e["param_errs"] = param_errs
    return new_msg(msg_id, 0, "error", None, e)  # 0: schema.ERROR (a literal: no const global here)


def split_msg(d):
    """(msg_id, msg_type, part, kind, payload) of a decoded Msg.

    part is 'request', 'response', 'error' or None; kind is the request or
    response field name ('get', 'set_resp', ...) or None for errors and for
    bodies this codec does not describe (payload is then None too).
    """
    h = d.get("header", {})
    body = d.get("body", {})
    part = kind = payload = None
    for part in body:
        payload = body[part]
        break
    if part == "request" or part == "response":
        inner = payload
        payload = None
        for kind in inner:
            payload = inner[kind]
            break
    return h.get("msg_id", ""), h.get("msg_type", 0), part, kind, payload
