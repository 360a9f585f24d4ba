"""Fleet campaigns: TR-369 Appendix I's delayed upgrade for a whole fleet (host only).

    fwslots campaign create c.db --fleet fleet.json --image v2.img --window 8h --budget 50000
    fwslots campaign run c.db          # distribute, switch in waves, verify; resumable
    fwslots campaign status c.db [--json]
    fwslots campaign report c.db -o report.html

Modules, one job each:
    fleetfile  the fleet file (agent URI + EndpointID per device, optional group)
    store      the campaign in SQLite (WAL): survives kill -9, readers see one snapshot
    budget     token bucket (fleet bandwidth) and the start schedule over the window
    imageserver  the image, served block-wise (RFC 7959) through the token bucket
    agentctl   many USP exchanges at once over one aiocoap controller endpoint
    phases     distribute, switch, verify
    report     the self-contained HTML page (inline SVG timeline, fallback table)
    cli        the `fwslots campaign` click group
"""


class CampaignError(Exception):
    """Bad input or a refused operation: the CLI prints it as one line (exit 1)."""
