// Errors in words meant for people, for both pages: the console's API
// client (api.js) and the inbox, which calls the API through the SDK.

// What each error code means, for when the server gave no message.
export const words = {
  invalidRequest: 'Herald did not accept the request. Check the fields and try again.',
  unauthenticated: 'You are signed out. Sign in again.',
  accessDenied: 'You are not allowed to do that.',
  itemNotFound: 'That item does not exist any more.',
  methodNotAllowed: 'That action is not possible here.',
  nameAlreadyExists: 'That name is already taken.',
  resyncRequired: 'The view is out of date and has to be reloaded.',
  payloadTooLarge: 'That is too large for Herald to accept.',
  unsupportedMediaType: 'Herald could not read the request.',
  activityLimitReached: 'Too many requests in a short time.',
  serviceNotAvailable: 'Herald cannot take this request right now.',
  quotaLimitReached: 'A storage limit was reached, so nothing was saved.',
  generalException: 'Something went wrong on the server.',
};

export const unreachable = 'Herald could not be reached. Check your connection; the page keeps trying.';

// explain answers {code, message} for an answer of status whose decoded
// body is body (null when it was not JSON).
export function explain(status, body, retryAfter = 0) {
  const e = body && body.error;
  if (!e || typeof e.code !== 'string') {
    if (status === 404) return { code: 'itemNotFound', message: words.itemNotFound };
    return { code: 'http', message: `The server answered with an error (HTTP ${status}). Try again in a moment.` };
  }
  let message = typeof e.message === 'string' && e.message ? e.message : (words[e.code] || words.invalidRequest);
  if ((e.code === 'activityLimitReached' || e.code === 'serviceNotAvailable') && retryAfter) {
    message += ` Try again in ${retryAfter} second${retryAfter === 1 ? '' : 's'}.`;
  }
  if (e.code === 'generalException' && e.innerError && e.innerError['request-id']) {
    message = `${words.generalException} If it keeps happening, give your admin this request id: ${e.innerError['request-id']}.`;
  }
  return { code: e.code, message };
}
