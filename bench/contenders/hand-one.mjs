// Size entry: what a page needs for one hand-written webhook call.
const webhook = 'https://example.bitrix24.com/rest/1/secret/';
export async function deleteItem(entityTypeId, id) {
  const response = await fetch(webhook + 'crm.item.delete', {
    method: 'POST',
    headers: { 'Content-Type': 'application/json' },
    body: JSON.stringify({ entityTypeId, id }),
  });
  const answer = await response.json();
  if (answer.error) throw new Error(`${answer.error}: ${answer.error_description}`);
  return answer;
}
