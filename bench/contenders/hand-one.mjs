// Size entry: what a page needs for one hand-written webhook call (the contender of hand.mjs).
import { make } from './hand.mjs';

export const { deleteItem } = make('https://example.bitrix24.com/rest/1/secret/');
