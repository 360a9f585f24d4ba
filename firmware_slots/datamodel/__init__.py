"""TR-181 data model: path engine and types, objects registered by path, firmware and local-agent backends."""
