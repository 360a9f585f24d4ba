"""The USP agent as the application the boot stub runs (app mode; device side).

An app image's main.py is then three lines:
    from bootstub import agentapp
    agentapp.serve("os::0044FF-dev1", 5683)       # never returns

serve() builds the agent over CoAP with the stub's own SlotManager (bootstub.mgr, already
booted and counted by the stub), starts it, and confirms the boot once the agent is
serving (health = UDP socket bound + agent started + boot notifications queued). A trial
boot's Boot!/OperationComplete/TransferComplete! are held by the agent until that
confirm, so they go out on the next loop turn. `health(mtp)` may raise to refuse the
image: the stub records "crashed: ..." and resets, and after max_attempts falls back.
A USP reboot (Reboot(), an activation) resets the board through the stub
(StubPlatform.reboot -> bootstub.reset()).
"""

from firmware_slots.usp.platform import Platform


class StubPlatform(Platform):
    """Platform whose reboot() is the boot stub's reset (the stub decides what runs next)."""

    def reboot(self, cause, reason):
        import bootstub
        self.reboots.append((cause, reason))
        print("REBOOT %s: %s" % (cause, reason))
        bootstub.reset()


def serve(endpoint_id, port=5683, host="127.0.0.1", path="usp", health=None, platform=None):
    """Run the agent forever on host:port; confirm the boot once it serves."""
    import bootstub
    from firmware_slots import app
    mtp = app.agent(bootstub.mgr, endpoint_id, host, port, path, platform=platform or StubPlatform(),
                    controllers=app.controllers(bootstub.profile))
    print("READY", mtp.endpoint.transport.local_port)
    mtp.startup()
    if health is not None:
        health(mtp)  # raises: not healthy, the stub counts a failed attempt
    if not bootstub.confirmed:
        bootstub.confirm()
    print("APP confirmed")
    try:
        mtp.serve()
    finally:
        mtp.close()
