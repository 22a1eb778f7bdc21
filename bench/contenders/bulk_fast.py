"""fast_bitrix24 in the bulk section, in its own process (the job protocol of bench/lib/bulk-job.mjs).

Its users delete a list with one `call`: `b.call('crm.item.delete', [{'entityTypeId': .., 'id': ..}, ...])`,
which packs the items into batches of 50 and sends them in parallel, paced by its leaky bucket and its
per-method operating-time window. Its defaults, with the changes a careful user would make: the
operating limit told the portal's (`operating_time_limit`, its default 480 s), `ssl=False` for the
bench's self-signed loopback proxy, `verbose=False` (no progress bars). Its time knobs are divided by
the emulator's time scale so it paces in portal time: the bucket's rate (`requests_per_second`) and
the module constants for the 10-minute window and the first back-off delay.
"""

import json
import os
import sys
import time

import fast_bitrix24.srh as srh
from fast_bitrix24 import Bitrix


def emit(report):
    sys.stdout.write("REPORT " + json.dumps(report) + "\n")
    sys.stdout.flush()


def main():
    webhook = os.environ["B24_BULK_WEBHOOK"]
    entity = int(os.environ["B24_BULK_ENTITY"])
    with open(os.environ["B24_BULK_IDS"]) as f:
        ids = json.load(f)
    scale = float(os.environ["B24_BULK_SCALE"])
    limit = float(os.environ["B24_BULK_LIMIT"])

    srh.BITRIX_MEASUREMENT_PERIOD = srh.BITRIX_MEASUREMENT_PERIOD / scale
    srh.INITIAL_TIMEOUT = srh.INITIAL_TIMEOUT / scale
    b = Bitrix(webhook, verbose=False, ssl=False, requests_per_second=2.0 * scale, operating_time_limit=int(limit))
    items = [{"entityTypeId": entity, "id": i} for i in ids]
    t0 = time.monotonic()
    try:
        results = b.call("crm.item.delete", items)
    except Exception as e:  # its errors: ErrorInServerResponseException, RuntimeError, aiohttp's
        emit({"ms": (time.monotonic() - t0) * 1000, "deleted": [], "notFound": [], "deletedCount": 0, "notFoundCount": 0, "failedCount": len(ids),
              "failedCodes": {}, "threw": (type(e).__name__ + ": " + str(e))[:300]})
        return
    # It returns or raises. A delete's result is `[]`, and it flattens list results into one list,
    # so what comes back is empty: returning without raising is its whole report, "all deleted".
    ms = (time.monotonic() - t0) * 1000
    emit({"ms": ms, "deleted": ids, "notFound": [], "deletedCount": len(ids), "notFoundCount": 0, "failedCount": 0,
          "failedCodes": {}, "returned": len(results)})

main()
