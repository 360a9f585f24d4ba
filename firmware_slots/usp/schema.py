"""USP Record and Msg schemas (usp-record-1-4.proto, usp-msg-1-4.proto) for pb.py.

Each message is a flat tuple: field N at index 3*(N-1) as (name, kind, sub).
Field numbers and names are the spec's; usp.proto in this folder lists the same
subset as a .proto. Identical sub-messages share one tuple to save heap.
Register/Deregister (broker-only, USP 1.3+) are not described: their fields
are skipped as unknown, leaving an empty request/response dict.
"""
# Header.MsgType
ERROR = 0
GET = 1
GET_RESP = 2
NOTIFY = 3
SET = 4
SET_RESP = 5
OPERATE = 6
OPERATE_RESP = 7
ADD = 8
ADD_RESP = 9
DELETE = 10
DELETE_RESP = 11
GET_SUPPORTED_DM = 12
GET_SUPPORTED_DM_RESP = 13
GET_INSTANCES = 14
GET_INSTANCES_RESP = 15
NOTIFY_RESP = 16
GET_SUPPORTED_PROTO = 17
GET_SUPPORTED_PROTO_RESP = 18
REGISTER = 19
REGISTER_RESP = 20
DEREGISTER = 21
DEREGISTER_RESP = 22

# Record.PayloadSecurity
PLAINTEXT = 0
TLS12 = 1

# GetSupportedDMResp enums (ParamAccessType, ObjAccessType, ParamValueType,
# ValueChangeType, CmdType) are plain ints too; see usp.proto for their values.
# They are not globals here: every module global costs heap on the device.


def _tables():
    # Locals, not globals: the intermediate tables need no dict slots or name qstrs.
    from .pb import STR, BYTES, BOOL, INT, UINT, FX32, MSG, MAP, REP, ONEOF

    _M = MSG
    _RM = MSG | REP
    _OM = MSG | ONEOF
    _RS = STR | REP
    # ---- usp-record-1-4.proto ----
    _EMPTY = ()
    NoSessionContextRecord = (None, None, None, "payload", BYTES, None)
    SessionContextRecord = (
        "session_id", UINT, None,
        "sequence_id", UINT, None,
        "expected_id", UINT, None,
        "retransmit_id", UINT, None,
        "payload_sar_state", INT, None,
        "payloadrec_sar_state", INT, None,
        "payload", BYTES | REP, None,
    )
    Record = (
        "version", STR, None,
        "to_id", STR, None,
        "from_id", STR, None,
        "payload_security", INT, None,
        "mac_signature", BYTES, None,
        "sender_cert", BYTES, None,
        "no_session_context", _OM, NoSessionContextRecord,
        "session_context", _OM, SessionContextRecord,
        "websocket_connect", _OM, _EMPTY,
        "mqtt_connect", _OM, ("version", INT, None, "subscribed_topic", STR, None),
        "stomp_connect", _OM, ("version", INT, None, "subscribed_destination", STR, None),
        "disconnect", _OM, ("reason", STR, None, "reason_code", FX32, None),
        "uds_connect", _OM, _EMPTY,
    )

    # ---- usp-msg-1-4.proto ----
    _ERRCODE = ("err_code", FX32, None, "err_msg", STR, None)  # OperationFailure, CommandFailure
    _PARAM_ERR = ("param", STR, None, "err_code", FX32, None, "err_msg", STR, None)
    _PARAM_SETTING = ("param", STR, None, "value", STR, None, "required", BOOL, None)
    _OUTPUT_ARGS = ("output_args", MAP, None)

    Header = ("msg_id", STR, None, "msg_type", INT, None)

    Error = (
        "err_code", FX32, None,
        "err_msg", STR, None,
        "param_errs", _RM, ("param_path", STR, None, "err_code", FX32, None, "err_msg", STR, None),
    )

    Get = ("param_paths", _RS, None, "max_depth", FX32, None)
    GetResp = (
        "req_path_results", _RM, (
            "requested_path", STR, None,
            "err_code", FX32, None,
            "err_msg", STR, None,
            "resolved_path_results", _RM, ("resolved_path", STR, None, "result_params", MAP, None),
        ),
    )

    GetSupportedDM = (
        "obj_paths", _RS, None,
        "first_level_only", BOOL, None,
        "return_commands", BOOL, None,
        "return_events", BOOL, None,
        "return_params", BOOL, None,
        "return_unique_key_sets", BOOL, None,
    )
    _SupportedParamResult = (
        "param_name", STR, None,
        "access", INT, None,
        "value_type", INT, None,
        "value_change", INT, None,
    )
    _SupportedCommandResult = (
        "command_name", STR, None,
        "input_arg_names", _RS, None,
        "output_arg_names", _RS, None,
        "command_type", INT, None,
    )
    _SupportedEventResult = ("event_name", STR, None, "arg_names", _RS, None)
    _SupportedUniqueKeySet = ("key_names", _RS, None)
    _SupportedObjectResult = (
        "supported_obj_path", STR, None,
        "access", INT, None,
        "is_multi_instance", BOOL, None,
        "supported_commands", _RM, _SupportedCommandResult,
        "supported_events", _RM, _SupportedEventResult,
        "supported_params", _RM, _SupportedParamResult,
        "divergent_paths", _RS, None,
        "unique_key_sets", _RM, _SupportedUniqueKeySet,
    )
    GetSupportedDMResp = (
        "req_obj_results", _RM, (
            "req_obj_path", STR, None,
            "err_code", FX32, None,
            "err_msg", STR, None,
            "data_model_inst_uri", STR, None,
            "supported_objs", _RM, _SupportedObjectResult,
        ),
    )

    GetInstances = ("obj_paths", _RS, None, "first_level_only", BOOL, None)
    GetInstancesResp = (
        "req_path_results", _RM, (
            "requested_path", STR, None,
            "err_code", FX32, None,
            "err_msg", STR, None,
            "curr_insts", _RM, ("instantiated_obj_path", STR, None, "unique_keys", MAP, None),
        ),
    )

    GetSupportedProtocol = ("controller_supported_protocol_versions", STR, None)
    GetSupportedProtocolResp = ("agent_supported_protocol_versions", STR, None)

    Add = (
        "allow_partial", BOOL, None,
        "create_objs", _RM, ("obj_path", STR, None, "param_settings", _RM, _PARAM_SETTING),
    )
    AddResp = (
        "created_obj_results", _RM, (
            "requested_path", STR, None,
            "oper_status", _M, (
                "oper_failure", _OM, _ERRCODE,
                "oper_success", _OM, (
                    "instantiated_path", STR, None,
                    "param_errs", _RM, _PARAM_ERR,
                    "unique_keys", MAP, None,
                ),
            ),
        ),
    )

    Delete = ("allow_partial", BOOL, None, "obj_paths", _RS, None)
    DeleteResp = (
        "deleted_obj_results", _RM, (
            "requested_path", STR, None,
            "oper_status", _M, (
                "oper_failure", _OM, _ERRCODE,
                "oper_success", _OM, (
                    "affected_paths", _RS, None,
                    "unaffected_path_errs", _RM,
                    ("unaffected_path", STR, None, "err_code", FX32, None, "err_msg", STR, None),
                ),
            ),
        ),
    )

    Set = (
        "allow_partial", BOOL, None,
        "update_objs", _RM, ("obj_path", STR, None, "param_settings", _RM, _PARAM_SETTING),
    )
    SetResp = (
        "updated_obj_results", _RM, (
            "requested_path", STR, None,
            "oper_status", _M, (
                "oper_failure", _OM, (
                    "err_code", FX32, None,
                    "err_msg", STR, None,
                    "updated_inst_failures", _RM, ("affected_path", STR, None, "param_errs", _RM, _PARAM_ERR),
                ),
                "oper_success", _OM, (
                    "updated_inst_results", _RM, (
                        "affected_path", STR, None,
                        "param_errs", _RM, _PARAM_ERR,
                        "updated_params", MAP, None,
                    ),
                ),
            ),
        ),
    )

    Operate = (
        "command", STR, None,
        "command_key", STR, None,
        "send_resp", BOOL, None,
        "input_args", MAP, None,
    )
    OperateResp = (
        "operation_results", _RM, (
            "executed_command", STR, None,
            "req_obj_path", STR | ONEOF, None,
            "req_output_args", _OM, _OUTPUT_ARGS,
            "cmd_failure", _OM, _ERRCODE,
        ),
    )

    Notify = (
        "subscription_id", STR, None,
        "send_resp", BOOL, None,
        "event", _OM, ("obj_path", STR, None, "event_name", STR, None, "params", MAP, None),
        "value_change", _OM, ("param_path", STR, None, "param_value", STR, None),
        "obj_creation", _OM, ("obj_path", STR, None, "unique_keys", MAP, None),
        "obj_deletion", _OM, ("obj_path", STR, None),
        "oper_complete", _OM, (
            "obj_path", STR, None,
            "command_name", STR, None,
            "command_key", STR, None,
            "req_output_args", _OM, _OUTPUT_ARGS,
            "cmd_failure", _OM, _ERRCODE,
        ),
        "on_board_req", _OM, (
            "oui", STR, None,
            "product_class", STR, None,
            "serial_number", STR, None,
            "agent_supported_protocol_versions", STR, None,
        ),
    )
    NotifyResp = ("subscription_id", STR, None)

    Request = (
        "get", _OM, Get,
        "get_supported_dm", _OM, GetSupportedDM,
        "get_instances", _OM, GetInstances,
        "set", _OM, Set,
        "add", _OM, Add,
        "delete", _OM, Delete,
        "operate", _OM, Operate,
        "notify", _OM, Notify,
        "get_supported_protocol", _OM, GetSupportedProtocol,
    )
    Response = (
        "get_resp", _OM, GetResp,
        "get_supported_dm_resp", _OM, GetSupportedDMResp,
        "get_instances_resp", _OM, GetInstancesResp,
        "set_resp", _OM, SetResp,
        "add_resp", _OM, AddResp,
        "delete_resp", _OM, DeleteResp,
        "operate_resp", _OM, OperateResp,
        "notify_resp", _OM, NotifyResp,
        "get_supported_protocol_resp", _OM, GetSupportedProtocolResp,
    )
    Body = ("request", _OM, Request, "response", _OM, Response, "error", _OM, Error)
    Msg = ("header", _M, Header, "body", _M, Body)
    return Msg, Record


Msg, Record = _tables()
del _tables
