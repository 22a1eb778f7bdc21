// b24-crm-item in the bulk section, in its own Node process: the package as built, with its
// defaults — a webhook and nothing else — and `deleteItems(entityTypeId, ids)` without options.
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { readJob, emit, countBy } from '../lib/bulk-job.mjs';

const job = readJob();
const { Client } = await import(pathToFileURL(path.join(process.env.B24_PKG_DIR, 'index.js')).href);
const client = new Client({ webhookUrl: job.webhook });
const t0 = performance.now();
try {
  const r = await client.deleteItems(job.entityTypeId, job.ids);
  emit({ ms: performance.now() - t0, deleted: r.deleted, notFound: r.notFound, deletedCount: r.deleted.length, notFoundCount: r.notFound.length,
    failedCount: r.failed.length, failedCodes: countBy(r.failed.map((f) => f.error && f.error.code)) });
} catch (e) {
  emit({ ms: performance.now() - t0, deleted: [], notFound: [], deletedCount: 0, notFoundCount: 0, failedCount: job.ids.length, failedCodes: {},
    threw: String(e && e.message || e) });
}
