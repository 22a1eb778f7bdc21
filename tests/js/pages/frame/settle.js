// Settles a promise into plain data for the test runner: {ok, value, ms} or {ok: false, error, ms}.
export async function settle(promise, B24Error) {
  const t0 = performance.now();
  try {
    const value = await promise;
    return { ok: true, value, ms: performance.now() - t0 };
  } catch (e) {
    return {
      ok: false,
      ms: performance.now() - t0,
      error: {
        name: e?.name, code: e?.code, description: e?.description, status: e?.status, method: e?.method,
        kind: e?.kind, retryable: e?.retryable, attempts: e?.attempts, message: e?.message,
        isB24: e instanceof B24Error, isError: e instanceof Error,
      },
    };
  }
}
