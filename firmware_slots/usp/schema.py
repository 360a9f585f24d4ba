"""USP Record and Msg schemas (usp-record-1-4.proto, usp-msg-1-4.proto) for pb.py.

Each message is a flat tuple: field N at index 3*(N-1) as (name, kind, sub).
Field numbers and names are the spec's; usp.proto in this folder lists the same
subset as a .proto. Every table is a compile-time constant (const()), so frozen
firmware keeps the whole schema in flash: importing it costs two dict slots.
Register/Deregister (broker-only, USP 1.3+) are not described: their fields
are skipped as unknown, leaving an empty request/response dict.
"""
try:
    from micropython import const
except ImportError:  # CPython: the same tables, built at import
    def const(x):
        return x

# Header.MsgType: schema.GET == 1 is its position here (__getattr__ below). A ROM tuple
# and one function, not 23 module globals on the device's heap.
_MSG_TYPES = const((
    "ERROR", "GET", "GET_RESP", "NOTIFY", "SET", "SET_RESP", "OPERATE", "OPERATE_RESP",
    "ADD", "ADD_RESP", "DELETE", "DELETE_RESP", "GET_SUPPORTED_DM", "GET_SUPPORTED_DM_RESP",
    "GET_INSTANCES", "GET_INSTANCES_RESP", "NOTIFY_RESP", "GET_SUPPORTED_PROTO",
    "GET_SUPPORTED_PROTO_RESP", "REGISTER", "REGISTER_RESP", "DEREGISTER", "DEREGISTER_RESP",
))
# Record.PayloadSecurity, the same way: schema.PLAINTEXT == 0, schema.TLS12 == 1
_PAYLOAD_SECURITY = const(("PLAINTEXT", "TLS12"))

# GetSupportedDMResp enums (ParamAccessType, ObjAccessType, ParamValueType,
# ValueChangeType, CmdType) are plain ints too; see usp.proto for their values.
# They are not globals here: every module global costs heap on the device.


def __getattr__(name):
    """schema.GET, schema.TLS12, ...: the enum value named `name` (PEP 562; MicroPython's
    MICROPY_MODULE_GETATTR). Device modules fold the few they need into their own const()s."""
    for t in (_MSG_TYPES, _PAYLOAD_SECURITY):
        if name in t:
            return t.index(name)
    raise AttributeError(name)


# Field kinds, the same numbers as pb.py's (tests/test_usp_codec.py checks): private consts
# so every table below is one constant folded by the compiler (in ROM when frozen, no heap).
_STR = const(0)
_BYTES = const(1)
_BOOL = const(2)
_INT = const(3)
_UINT = const(4)
_FX32 = const(5)
_MSG = const(6)
_MAP = const(7)
_REP = const(0x10)
_ONEOF = const(0x20)
_M = const(6)       # MSG
_RM = const(0x16)   # MSG | REP
_OM = const(0x26)   # MSG | ONEOF
_RS = const(0x10)   # STR | REP


# ---- usp-record-1-4.proto ----
_EMPTY = const(())
_NoSessionContextRecord = const((None, None, None, "payload", _BYTES, None))
_SessionContextRecord = const((
    "session_id", _UINT, None,
    "sequence_id", _UINT, None,
    "expected_id", _UINT, None,
    "retransmit_id", _UINT, None,
    "payload_sar_state", _INT, None,
    "payloadrec_sar_state", _INT, None,
    "payload", _BYTES | _REP, None,
))
_Record = const((
    "version", _STR, None,
    "to_id", _STR, None,
    "from_id", _STR, None,
    "payload_security", _INT, None,
    "mac_signature", _BYTES, None,
    "sender_cert", _BYTES, None,
    "no_session_context", _OM, _NoSessionContextRecord,
    "session_context", _OM, _SessionContextRecord,
    "websocket_connect", _OM, _EMPTY,
    "mqtt_connect", _OM, ("version", _INT, None, "subscribed_topic", _STR, None),
    "stomp_connect", _OM, ("version", _INT, None, "subscribed_destination", _STR, None),
    "disconnect", _OM, ("reason", _STR, None, "reason_code", _FX32, None),
    "uds_connect", _OM, _EMPTY,
))

# ---- usp-msg-1-4.proto ----
_ERRCODE = const(("err_code", _FX32, None, "err_msg", _STR, None))  # OperationFailure, CommandFailure
_PARAM_ERR = const(("param", _STR, None, "err_code", _FX32, None, "err_msg", _STR, None))
_PARAM_SETTING = const(("param", _STR, None, "value", _STR, None, "required", _BOOL, None))
_OUTPUT_ARGS = const(("output_args", _MAP, None))

_Header = const(("msg_id", _STR, None, "msg_type", _INT, None))

_Error = const((
    "err_code", _FX32, None,
    "err_msg", _STR, None,
    "param_errs", _RM, ("param_path", _STR, None, "err_code", _FX32, None, "err_msg", _STR, None),
))

_Get = const(("param_paths", _RS, None, "max_depth", _FX32, None))
_GetResp = const((
    "req_path_results", _RM, (
        "requested_path", _STR, None,
        "err_code", _FX32, None,
        "err_msg", _STR, None,
        "resolved_path_results", _RM, ("resolved_path", _STR, None, "result_params", _MAP, None),
    ),
))

_GetSupportedDM = const((
    "obj_paths", _RS, None,
    "first_level_only", _BOOL, None,
    "return_commands", _BOOL, None,
    "return_events", _BOOL, None,
    "return_params", _BOOL, None,
    "return_unique_key_sets", _BOOL, None,
))
_SupportedParamResult = const((
    "param_name", _STR, None,
    "access", _INT, None,
    "value_type", _INT, None,
    "value_change", _INT, None,
))
_SupportedCommandResult = const((
    "command_name", _STR, None,
    "input_arg_names", _RS, None,
    "output_arg_names", _RS, None,
    "command_type", _INT, None,
))
_SupportedEventResult = const(("event_name", _STR, None, "arg_names", _RS, None))
_SupportedUniqueKeySet = const(("key_names", _RS, None))
_SupportedObjectResult = const((
    "supported_obj_path", _STR, None,
    "access", _INT, None,
    "is_multi_instance", _BOOL, None,
    "supported_commands", _RM, _SupportedCommandResult,
    "supported_events", _RM, _SupportedEventResult,
    "supported_params", _RM, _SupportedParamResult,
    "divergent_paths", _RS, None,
    "unique_key_sets", _RM, _SupportedUniqueKeySet,
))
_GetSupportedDMResp = const((
    "req_obj_results", _RM, (
        "req_obj_path", _STR, None,
        "err_code", _FX32, None,
        "err_msg", _STR, None,
        "data_model_inst_uri", _STR, None,
        "supported_objs", _RM, _SupportedObjectResult,
    ),
))

_GetInstances = const(("obj_paths", _RS, None, "first_level_only", _BOOL, None))
_GetInstancesResp = const((
    "req_path_results", _RM, (
        "requested_path", _STR, None,
        "err_code", _FX32, None,
        "err_msg", _STR, None,
        "curr_insts", _RM, ("instantiated_obj_path", _STR, None, "unique_keys", _MAP, None),
    ),
))

_GetSupportedProtocol = const(("controller_supported_protocol_versions", _STR, None))
_GetSupportedProtocolResp = const(("agent_supported_protocol_versions", _STR, None))

_Add = const((
    "allow_partial", _BOOL, None,
    "create_objs", _RM, ("obj_path", _STR, None, "param_settings", _RM, _PARAM_SETTING),
))
_AddResp = const((
    "created_obj_results", _RM, (
        "requested_path", _STR, None,
        "oper_status", _M, (
            "oper_failure", _OM, _ERRCODE,
            "oper_success", _OM, (
                "instantiated_path", _STR, None,
                "param_errs", _RM, _PARAM_ERR,
                "unique_keys", _MAP, None,
            ),
        ),
    ),
))

_Delete = const(("allow_partial", _BOOL, None, "obj_paths", _RS, None))
_DeleteResp = const((
    "deleted_obj_results", _RM, (
        "requested_path", _STR, None,
        "oper_status", _M, (
            "oper_failure", _OM, _ERRCODE,
            "oper_success", _OM, (
                "affected_paths", _RS, None,
                "unaffected_path_errs", _RM,
                ("unaffected_path", _STR, None, "err_code", _FX32, None, "err_msg", _STR, None),
            ),
        ),
    ),
))

_Set = const((
    "allow_partial", _BOOL, None,
    "update_objs", _RM, ("obj_path", _STR, None, "param_settings", _RM, _PARAM_SETTING),
))
_SetResp = const((
    "updated_obj_results", _RM, (
        "requested_path", _STR, None,
        "oper_status", _M, (
            "oper_failure", _OM, (
                "err_code", _FX32, None,
                "err_msg", _STR, None,
                "updated_inst_failures", _RM, ("affected_path", _STR, None, "param_errs", _RM, _PARAM_ERR),
            ),
            "oper_success", _OM, (
                "updated_inst_results", _RM, (
                    "affected_path", _STR, None,
                    "param_errs", _RM, _PARAM_ERR,
                    "updated_params", _MAP, None,
                ),
            ),
        ),
    ),
))

_Operate = const((
    "command", _STR, None,
    "command_key", _STR, None,
    "send_resp", _BOOL, None,
    "input_args", _MAP, None,
))
_OperateResp = const((
    "operation_results", _RM, (
        "executed_command", _STR, None,
        "req_obj_path", _STR | _ONEOF, None,
        "req_output_args", _OM, _OUTPUT_ARGS,
        "cmd_failure", _OM, _ERRCODE,
    ),
))

_Notify = const((
    "subscription_id", _STR, None,
    "send_resp", _BOOL, None,
    "event", _OM, ("obj_path", _STR, None, "event_name", _STR, None, "params", _MAP, None),
    "value_change", _OM, ("param_path", _STR, None, "param_value", _STR, None),
    "obj_creation", _OM, ("obj_path", _STR, None, "unique_keys", _MAP, None),
    "obj_deletion", _OM, ("obj_path", _STR, None),
    "oper_complete", _OM, (
        "obj_path", _STR, None,
        "command_name", _STR, None,
        "command_key", _STR, None,
        "req_output_args", _OM, _OUTPUT_ARGS,
        "cmd_failure", _OM, _ERRCODE,
    ),
    "on_board_req", _OM, (
        "oui", _STR, None,
        "product_class", _STR, None,
        "serial_number", _STR, None,
        "agent_supported_protocol_versions", _STR, None,
    ),
))
_NotifyResp = const(("subscription_id", _STR, None))

_Request = const((
    "get", _OM, _Get,
    "get_supported_dm", _OM, _GetSupportedDM,
    "get_instances", _OM, _GetInstances,
    "set", _OM, _Set,
    "add", _OM, _Add,
    "delete", _OM, _Delete,
    "operate", _OM, _Operate,
    "notify", _OM, _Notify,
    "get_supported_protocol", _OM, _GetSupportedProtocol,
))
_Response = const((
    "get_resp", _OM, _GetResp,
    "get_supported_dm_resp", _OM, _GetSupportedDMResp,
    "get_instances_resp", _OM, _GetInstancesResp,
    "set_resp", _OM, _SetResp,
    "add_resp", _OM, _AddResp,
    "delete_resp", _OM, _DeleteResp,
    "operate_resp", _OM, _OperateResp,
    "notify_resp", _OM, _NotifyResp,
    "get_supported_protocol_resp", _OM, _GetSupportedProtocolResp,
))
_Body = const(("request", _OM, _Request, "response", _OM, _Response, "error", _OM, _Error))
_Msg = const(("header", _M, _Header, "body", _M, _Body))

Msg = _Msg
Record = _Record
