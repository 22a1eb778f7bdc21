// @bitrix24/b24jssdk in the bulk section, in its own Node process: `B24Hook` +
// `actions.v2.batchByChunk.make` (50 commands a batch, one batch at a time) with its limiter on.
//
// Its restriction params are its defaults (`ParamsFactory.getDefault()`) with two changes a
// careful user would make: the operating limit set to the portal's (its default is 480 s), and
// every time knob it exposes divided by the emulator's time scale, so that it paces in portal
// time as the emulator runs it (bucket drain, operating window, retry delay, adaptive max delay).
// Its hard-coded waits are left as they are (a 429 waits ≥ 10 s, the axios timeout is 30 s,
// +1 s after a reset): in portal time those are 60× longer than on a real portal (bench/README.md).
// `isHaltOnError: false`, so one failed command does not stop its chunk.
import { B24Hook, ParamsFactory } from '@bitrix24/b24jssdk';
import { readJob, emit } from '../lib/bulk-job.mjs';

const job = readJob();
const base = ParamsFactory.getDefault();
const restrictionParams = {
  ...base,
  rateLimit: { ...base.rateLimit, drainRate: base.rateLimit.drainRate * job.scale },
  operatingLimit: { ...base.operatingLimit, windowMs: base.operatingLimit.windowMs / job.scale, limitMs: job.limit * 1000 },
  adaptiveConfig: { ...base.adaptiveConfig, maxDelay: base.adaptiveConfig.maxDelay / job.scale },
  retryDelay: base.retryDelay / job.scale,
};
const b24 = B24Hook.fromWebhookUrl(job.webhook, { restrictionParams });
const calls = job.ids.map((id) => ['crm.item.delete', { entityTypeId: job.entityTypeId, id }]);
const t0 = performance.now();
try {
  const r = await b24.actions.v2.batchByChunk.make({ calls, options: { isHaltOnError: false } });
  // Its answer: the successful commands' results (`[]` each for a delete, so no ids) and error messages.
  const ms = performance.now() - t0;
  const ok = r.getData().length;
  const errors = r.isSuccess ? [] : r.getErrorMessages();
  emit({ ms, deleted: null, notFound: null, deletedCount: ok, notFoundCount: 0, failedCount: job.ids.length - ok,
    failedCodes: {}, errors: errors.length, errorSample: errors.slice(0, 2) });
} catch (e) {
  emit({ ms: performance.now() - t0, deleted: null, notFound: null, deletedCount: 0, notFoundCount: 0, failedCount: job.ids.length, failedCodes: {},
    threw: String(e && e.message || e).slice(0, 300) });
}
