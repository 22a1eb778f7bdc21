// Size entry: what a page needs for one webhook call with the official SDK (its recommended
// `actions.v2.call.make`, which is what the deprecated `callMethod` forwards to).
import { B24Hook } from '@bitrix24/b24jssdk';

const b24 = B24Hook.fromWebhookUrl('https://example.bitrix24.com/rest/1/secret');
export function deleteItem(entityTypeId, id) {
  return b24.actions.v2.call.make({ method: 'crm.item.delete', params: { entityTypeId, id } });
}
