// b24-crm-item as a contender, imported from the package as built (served at /pkg/).
import { Client } from '/pkg/index.js';

export function make(webhook, { rateLimit = false } = {}) {
  const client = new Client({ webhookUrl: webhook, rateLimit });
  return {
    deleteItem: (entityTypeId, id) => client.deleteItem(entityTypeId, id),
    deleteItems: (entityTypeId, ids) => client.deleteItems(entityTypeId, ids),
  };
}
