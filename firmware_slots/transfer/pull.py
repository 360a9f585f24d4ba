"""Download an image into a slot, resuming an interrupted one, restarting on a changed file.

    info = pull(mgr, slot, url, size=0, algorithm="SHA-256", checksum=digest)

If slot `slot` is DOWNLOADING with a checkpoint (a reset or power cut hit an earlier
pull of the same URL), the transfer continues from the last programmed block;
otherwise it starts from 0. A fetcher's Restart (remote file changed) starts over
once. Returns the slot's info dict from ImageWriter.finish(); raises TransferError
or SlotError.
"""
from firmware_slots.transfer import fetch, Restart, writer_for


def pull(mgr, slot, url, size=0, algorithm="", checksum=b"", username="", password="", rate=0,
         name="", version=""):
    w, _ = writer_for(mgr, slot, url, size, algorithm, checksum, name, version)
    for attempt in (0, 1):
        try:
            fetch(url, w, username, password, rate)
            break
        except Restart:
            if attempt:
                raise
            w = mgr.install(slot, size, algorithm, checksum, name, version, extra={"u": url})
    return w.finish(name, version)
