"""The fleet file: which devices a campaign drives.

JSON, either {"devices": [...]} or a bare list; one object per device:

| key          | required | what                                                   |
| ------------ | -------- | ------------------------------------------------------ |
| uri          | yes      | the agent's USP endpoint, coap://host:port/path        |
| endpoint_id  | yes      | its USP EndpointID (the Record to_id), unique          |
| group        | no       | a label; waves take devices group by group, then by id |

`hil/fleet.py` writes one for its simulated fleet.
"""
import json

from firmware_slots.host.campaign import CampaignError


def load(path):
    """-> [{"uri", "endpoint_id", "group"}] in file order; CampaignError on any defect."""
    try:
        with open(path) as f:
            doc = json.load(f)
    except OSError as e:
        raise CampaignError("cannot read fleet file %s: %s" % (path, e.strerror or e))
    except ValueError as e:
        raise CampaignError("fleet file %s is not JSON: %s" % (path, e))
    devs = doc.get("devices") if isinstance(doc, dict) else doc
    if not isinstance(devs, list) or not devs:
        raise CampaignError("fleet file %s: expected a non-empty \"devices\" list" % path)
    out, seen = [], set()
    for n, d in enumerate(devs, 1):
        if not isinstance(d, dict):
            raise CampaignError("fleet file %s: device %d is not an object" % (path, n))
        uri, eid = d.get("uri"), d.get("endpoint_id")
        if not isinstance(uri, str) or not uri.startswith(("coap://", "coaps://")):
            raise CampaignError("fleet file %s: device %d: uri must be a coap:// URI, got %r" % (path, n, uri))
        if not isinstance(eid, str) or not eid:
            raise CampaignError("fleet file %s: device %d: endpoint_id missing" % (path, n))
        if eid in seen:
            raise CampaignError("fleet file %s: device %d: endpoint_id %s appears twice" % (path, n, eid))
        seen.add(eid)
        grp = d.get("group", "")
        if not isinstance(grp, str):
            raise CampaignError("fleet file %s: device %d: group must be a string" % (path, n))
        out.append({"uri": uri, "endpoint_id": eid, "group": grp})
    return out
