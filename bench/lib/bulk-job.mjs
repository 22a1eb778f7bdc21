// The job a bulk contender runs in its own process (`run.mjs` bulk section): read from the
// environment, answered with one `REPORT {json}` line on stdout. The Python contender
// (`contenders/bulk_fast.py`) speaks the same protocol.
//
//   B24_BULK_WEBHOOK    the webhook URL (https, through the bench's loopback proxy)
//   B24_BULK_ENTITY     entityTypeId
//   B24_BULK_IDS        path of a JSON array of ids
//   B24_BULK_SCALE      the emulator's --time-scale (for the contenders whose time knobs we scale)
//   B24_BULK_LIMIT      the portal's operating limit in seconds (told to the contenders that take it)
//
// The report: what the contender itself says, never what the emulator saw.
//   deleted / notFound  id arrays, or null when the contender's answer carries no ids
//   deletedCount, notFoundCount, failedCount, failedCodes {code: n}, threw (a message, if it threw)
import fs from 'node:fs';

export function readJob() {
  const env = (k) => {
    const v = process.env[k];
    if (!v) throw new Error(`${k} is not set`);
    return v;
  };
  return {
    webhook: env('B24_BULK_WEBHOOK'),
    entityTypeId: Number(env('B24_BULK_ENTITY')),
    ids: JSON.parse(fs.readFileSync(env('B24_BULK_IDS'), 'utf8')),
    scale: Number(env('B24_BULK_SCALE')),
    limit: Number(env('B24_BULK_LIMIT')),
  };
}

export function emit(report) {
  process.stdout.write(`REPORT ${JSON.stringify(report)}\n`);
}

export const countBy = (xs) => xs.reduce((m, x) => ({ ...m, [x]: (m[x] || 0) + 1 }), {});
