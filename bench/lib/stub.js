// In-page transport stub (a classic script, inlined before anything else loads): REST calls
// through fetch or XMLHttpRequest are answered with {"result":[],"time":{...}} after one
// macrotask (a MessageChannel message: unlike setTimeout(0) it is never clamped to 4 ms).
// Anything else (the page's modules, the wasm) goes to the real network.
(() => {
  const now = Date.now() / 1000;
  const BODY = JSON.stringify({ result: [], time: { start: now, finish: now, duration: 0.0001, processing: 0,
    date_start: '2026-11-28T00:00:00+00:00', date_finish: '2026-11-28T00:00:00+00:00', operating: 0 } });
  const queue = [];
  const channel = new MessageChannel();
  channel.port1.onmessage = () => queue.shift()();
  const macrotask = (fn) => { queue.push(fn); channel.port2.postMessage(0); };
  const stub = (window.__b24stub = { first: null, count: 0 });
  const record = () => { if (stub.first === null) stub.first = performance.now(); stub.count++; };
  const isApi = (url) => String(url).includes('/rest/');

  const realFetch = window.fetch.bind(window);
  window.fetch = function fetch(input, init) {
    const url = typeof input === 'string' ? input : input instanceof URL ? input.href : input.url;
    if (!isApi(url)) return realFetch(input, init);
    record();
    return new Promise((resolve) => macrotask(() =>
      resolve(new Response(BODY, { status: 200, headers: { 'Content-Type': 'application/json' } }))));
  };

  const RealXHR = window.XMLHttpRequest;
  class StubXHR {
    constructor() {
      this.readyState = 0; this.status = 0; this.statusText = ''; this.responseText = ''; this.response = '';
      this.responseType = ''; this.responseURL = ''; this.timeout = 0; this.withCredentials = false;
      this.onloadend = null; this.onreadystatechange = null; this.onabort = null; this.onerror = null;
      this.ontimeout = null; this.onload = null;
      this.upload = { addEventListener() {}, removeEventListener() {} };
    }
    open(method, url) {
      this._url = url;
      if (!isApi(url)) { this._real = new RealXHR(); return this._real.open(method, url, true); }
      this.readyState = 1;
    }
    setRequestHeader(k, v) { this._real?.setRequestHeader(k, v); }
    addEventListener() {}
    removeEventListener() {}
    getAllResponseHeaders() { return 'content-type: application/json\r\n'; }
    getResponseHeader(name) { return String(name).toLowerCase() === 'content-type' ? 'application/json' : null; }
    abort() {}
    send(body) {
      if (this._real) throw new Error('stub XHR: only REST calls are stubbed');
      record();
      macrotask(() => {
        this.readyState = 4; this.status = 200; this.statusText = 'OK';
        this.responseText = BODY; this.response = BODY; this.responseURL = this._url;
        this.onreadystatechange?.();
        this.onload?.();
        this.onloadend?.();
      });
    }
  }
  StubXHR.UNSENT = 0; StubXHR.OPENED = 1; StubXHR.HEADERS_RECEIVED = 2; StubXHR.LOADING = 3; StubXHR.DONE = 4;
  window.XMLHttpRequest = StubXHR;
})();
