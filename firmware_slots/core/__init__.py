"""Device core: flash protocol, journal, persisted state, slots, boot decision, hashes, CBOR, app images."""
