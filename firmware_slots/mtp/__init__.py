"""Message transfer protocols: the TR-369 CoAP binding (coap) and its DTLS listener (coaps)."""
