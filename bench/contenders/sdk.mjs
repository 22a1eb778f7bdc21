// The official SDK as a contender: bundled for the browser by run.mjs (esbuild, ESM, minified).
import { B24Hook, ParamsFactory } from '@bitrix24/b24jssdk';

/**
 * mode 'bulk': its own limiter set to the portal's bucket (burst/perSecond), defaults otherwise.
 * mode 'raw':  limiter and retries off as far as the SDK allows: a bucket too big to wait,
 *              adaptive delays off, maxRetries 1 (one attempt; 0 would send nothing).
 */
export function make(webhook, { mode = 'raw', burst = 50, perSecond = 2 } = {}) {
  const base = ParamsFactory.getDefault();
  const restrictionParams = mode === 'bulk'
    ? { ...base, rateLimit: { ...base.rateLimit, burstLimit: burst, drainRate: perSecond } }
    : {
        ...base,
        rateLimit: { burstLimit: 1e9, drainRate: 1e9, adaptiveEnabled: false },
        adaptiveConfig: { ...base.adaptiveConfig, enabled: false },
        maxRetries: 1,
        retryOnNetworkError: false,
      };
  const b24 = B24Hook.fromWebhookUrl(webhook, { restrictionParams });
  b24.offClientSideWarning(); // else it warns on every browser call (a webhook in a page)
  return {
    deleteItem(entityTypeId, id) {
      return b24.actions.v2.call.make({ method: 'crm.item.delete', params: { entityTypeId, id } });
    },
    async deleteItems(entityTypeId, ids) {
      const calls = ids.map((id) => ['crm.item.delete', { entityTypeId, id }]);
      const r = await b24.actions.v2.batchByChunk.make({ calls, options: { isHaltOnError: false } });
      return { ok: r.isSuccess, errors: r.isSuccess ? [] : r.getErrorMessages().slice(0, 3) };
    },
  };
}
