"""USP (TR-369) Record/Msg wire codec: see codec.py for the API, usp.proto for the subset."""
