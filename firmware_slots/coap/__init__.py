"""A small CoAP stack (RFC 7252 + RFC 7959) for MicroPython and CPython.

Layers, bottom to top (one module each, like aiocoap):
  numbers       codes, option numbers, content formats, transmission parameters
  message       CoapMessage and the wire format
  uri           coap:// and coaps:// URIs
  transport     sockets behind sendto/recvfrom (DTLS can slot in here)
  messagemanager  duplicate detection, CON retransmission
  blockwise     RFC 7959 Block2 slicing and Block1 reassembly (loaded when a request needs it)
  server        Site, Handler, Request, Response, /.well-known/core
  protocol      CoapEndpoint: the socket loop, server and client on one port, message ids
  aio           CoapEndpoint.run(): the same loop under asyncio (loaded by run() only)
  client        CoapClient: request(), fetch() streaming, asyncio variants

Import the pieces you need; nothing is imported eagerly to keep RAM low.
"""
