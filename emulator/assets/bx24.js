/*
 * BX24-compatible frame library served by the Bitrix24 emulator at /api/v1/.
 * Written from the public Bitrix24 documentation (sdk/bx24-js-sdk); it is not Bitrix24's code.
 *
 * Behaviour (documented, and kept on purpose):
 * - window.name must be "DOMAIN|PROTOCOL|APP_SID" (set by the portal's iframe); otherwise
 *   window.BX24 = null and loading throws Error('Unable to initialize Bitrix24 JS library!').
 * - Parent link: postMessage("cmd:json:callbackId:APP_SID", PROTOCOL://DOMAIN); replies
 *   "callbackId:json" are accepted only from that origin and from window.parent.
 * - callMethod: form-encoded POST to PROTOCOL://DOMAIN/rest/METHOD.json with auth=AUTH_ID;
 *   refreshes the token (through the parent) when AUTH_EXPIRES has passed or the answer is
 *   expired_token, then repeats the call once.
 * - 2xx, 304 and 4xx answers reach the callback as an ajaxResult. A 5xx answer, a network error
 *   or an unreadable body throws 'Query error!' inside the XHR handler: the callback is NEVER
 *   called. There is no timeout (xhr.timeout = 0).
 */
(function (window) {
  'use strict';
  if (window.BX24 && window.BX24.__emulator) return;

  var parts = String(window.name || '').split('|');
  var DOMAIN = (parts[0] || '').replace(/:(80|443)$/, '');
  var PROTOCOL = parts[1] === '1' ? 1 : 0;
  var APP_SID = parts[2] || '';
  if (!DOMAIN || !APP_SID) {
    window.BX24 = null;
    throw new Error('Unable to initialize Bitrix24 JS library!');
  }
  var scheme = PROTOCOL ? 'https' : 'http';
  var parentOrigin = scheme + '://' + DOMAIN;

  var PARAMS = null;       // getInitData answer
  var authExpires = 0;     // absolute epoch ms
  var ready = false;
  var queue = [];
  var callbacks = {};
  var seq = 0;

  window.addEventListener('message', function (e) {
    if (e.origin !== parentOrigin || e.source !== window.parent) return;
    if (typeof e.data !== 'string') return;
    var i = e.data.indexOf(':');
    var id = i < 0 ? e.data : e.data.slice(0, i);
    var raw = i < 0 ? '' : e.data.slice(i + 1);
    var cb = callbacks[id];
    if (!cb) return;
    delete callbacks[id];
    var data;
    try { data = raw ? JSON.parse(raw) : undefined; } catch (err) { data = raw; }
    cb(data);
  });

  function sendCommand(cmd, params, cb) {
    var id = 'bx' + (++seq) + '_' + Date.now().toString(36);
    if (cb) callbacks[id] = cb;
    var json = params == null ? '' : JSON.stringify(params);
    window.parent.postMessage(cmd + ':' + json + ':' + id + ':' + APP_SID, parentOrigin);
  }

  function setAuth(d) {
    if (!d) return;
    if (d.AUTH_ID) PARAMS.AUTH_ID = d.AUTH_ID;
    if (d.REFRESH_ID) PARAMS.REFRESH_ID = d.REFRESH_ID;
    authExpires = Date.now() + (Number(d.AUTH_EXPIRES) || 3600) * 1000;
  }

  function whenReady(fn) {
    if (ready) fn(); else queue.push(fn);
  }

  sendCommand('getInitData', null, function (d) {
    PARAMS = d || {};
    setAuth(PARAMS);
    ready = true;
    var q = queue;
    queue = [];
    for (var i = 0; i < q.length; i++) {
      try { q[i](); } catch (err) { setTimeout(function () { throw err; }); }
    }
  });

  function buildQuery(params, prefix) {
    var out = [];
    if (params == null) return '';
    Object.keys(params).forEach(function (k) {
      var v = params[k];
      var key = prefix ? prefix + '[' + k + ']' : k;
      if (v === undefined || typeof v === 'function') return;
      if (v !== null && typeof v === 'object') {
        var inner = buildQuery(v, key);
        if (inner) out.push(inner);
      } else {
        out.push(encodeURIComponent(key) + '=' + encodeURIComponent(v === null ? '' : String(v)));
      }
    });
    return out.join('&');
  }

  function isSuccess(status) {
    return (status >= 200 && status < 300) || status === 304 || (status >= 400 && status < 500);
  }

  // As BX24.js: `ex` is the answer itself, and the answer's own `ex` this error (a cycle).
  function AjaxError(status, ex) {
    this.status = status;
    this.ex = ex;
  }
  AjaxError.prototype.getError = function () { return this.ex; };
  AjaxError.prototype.getStatus = function () { return this.status; };
  AjaxError.prototype.toString = function () {
    return this.ex.error + (this.ex.error_description ? ': ' + this.ex.error_description : '') + ' (' + this.status + ')';
  };

  function AjaxResult(answer, query, status) {
    this.answer = answer || {};
    this.query = query;
    this.status = status;
    if (this.answer.error !== undefined) {
      this.answer.ex = new AjaxError(status, typeof this.answer.error === 'string' ? this.answer : this.answer.error);
    }
  }
  AjaxResult.prototype.data = function () { return this.answer.result; };
  AjaxResult.prototype.error = function () { return this.answer.ex; };
  AjaxResult.prototype.error_description = function () { return this.answer.error_description; };
  AjaxResult.prototype.more = function () { return this.answer.next !== undefined && !isNaN(this.answer.next); };
  AjaxResult.prototype.total = function () { return parseInt(this.answer.total, 10); };
  AjaxResult.prototype.time = function () { return this.answer.time; };
  AjaxResult.prototype.next = function (cb) {
    if (!this.more()) return false;
    var data = {};
    var src = this.query.data || {};
    Object.keys(src).forEach(function (k) { data[k] = src[k]; });
    data.start = this.answer.next;
    return call(this.query.method, data, cb || this.query.callback, 0);
  };

  function refresh(cb) {
    sendCommand('refreshAuth', {}, function (d) {
      setAuth(d);
      if (cb) cb(getAuth());
    });
  }

  function call(method, params, cb, attempt) {
    if (attempt === 0 && Date.now() >= authExpires) {
      refresh(function () { call(method, params, cb, 1); });
      return true;
    }
    var query = buildQuery(params);
    var body = 'auth=' + encodeURIComponent(PARAMS.AUTH_ID || '') + (query ? '&' + query : '');
    var xhr = new XMLHttpRequest();
    xhr.open('POST', scheme + '://' + DOMAIN + (PARAMS.PATH || '/rest') + '/' + method + '.json', true);
    xhr.setRequestHeader('Content-Type', 'application/x-www-form-urlencoded');
    xhr.timeout = 0;
    xhr.onload = function () {
      if (!isSuccess(xhr.status)) throw 'Query error!';
      var answer;
      try { answer = JSON.parse(xhr.responseText); } catch (e) { throw 'Query error!'; }
      if (answer && answer.error === 'expired_token' && attempt === 0) {
        refresh(function () { call(method, params, cb, 1); });
        return;
      }
      if (cb) cb(new AjaxResult(answer, { method: method, data: params, callback: cb }, xhr.status));
    };
    xhr.onerror = function () { throw 'Query error!'; };
    xhr.send(body);
    return xhr;
  }

  function getAuth() {
    if (!ready || Date.now() >= authExpires) return false;
    return {
      access_token: PARAMS.AUTH_ID,
      refresh_token: PARAMS.REFRESH_ID,
      expires_in: authExpires,
      domain: DOMAIN,
      member_id: PARAMS.MEMBER_ID
    };
  }

  function pick(container, key) {
    if (!container || typeof container !== 'object') return undefined;
    return container[key];
  }

  var BX24 = {
    __emulator: true,
    init: function (cb) { whenReady(cb); },
    ready: function (cb) {
      if (document.readyState !== 'loading') setTimeout(cb); else document.addEventListener('DOMContentLoaded', cb);
    },
    isAdmin: function () { return !!(PARAMS && PARAMS.IS_ADMIN); },
    getLang: function () { return PARAMS ? PARAMS.LANG : undefined; },
    getDomain: function () { return DOMAIN; },
    getAuth: getAuth,
    refreshAuth: function (cb) { whenReady(function () { refresh(cb); }); },
    callMethod: function (method, params, cb) {
      whenReady(function () { call(method, params || {}, cb, 0); });
    },
    callBatch: function (calls, cb, bHaltOnError) {
      var isArr = Array.isArray(calls);
      var cmd = isArr ? [] : {};
      var meta = {};
      Object.keys(calls).forEach(function (k) {
        var c = calls[k];
        var method, params;
        if (Array.isArray(c)) { method = c[0]; params = c[1]; } else { method = c.method; params = c.params; }
        var q = buildQuery(params || {});
        cmd[k] = method + (q ? '?' + q : '');
        meta[k] = { method: method, data: params || {}, callback: cb };
      });
      BX24.callMethod('batch', { halt: bHaltOnError ? 1 : 0, cmd: cmd }, function (res) {
        if (!cb) return;
        var out = isArr ? [] : {};
        var a = res.answer || {};
        var r = a.result || {};
        Object.keys(meta).forEach(function (k) {
          var answer;
          if (a.error) {
            answer = { error: a.error, error_description: a.error_description };
          } else {
            var err = pick(r.result_error, k);
            var result = pick(r.result, k);
            if (err === undefined && result === undefined) return; // not run (halt)
            answer = {
              result: result,
              error: err ? err.error : undefined,
              error_description: err ? err.error_description : undefined,
              total: pick(r.result_total, k),
              next: pick(r.result_next, k),
              time: pick(r.result_time, k)
            };
          }
          out[k] = new AjaxResult(answer, meta[k], res.status);
        });
        cb(out);
      });
    },
    placement: {
      info: function () {
        return { placement: PARAMS ? PARAMS.PLACEMENT : undefined, options: PARAMS ? PARAMS.PLACEMENT_OPTIONS : undefined };
      },
      getInterface: function (cb) { if (cb) cb({ command: [], event: [] }); },
      call: function (command, params, cb) { sendCommand(command, params || {}, cb); },
      bindEvent: function () {}
    },
    installFinish: function () { sendCommand('setInstallFinish', {}); },
    resizeWindow: function (width, height, cb) { sendCommand('resizeWindow', { width: width, height: height }, cb); },
    fitWindow: function (cb) {
      sendCommand('resizeWindow', { width: '100%', height: document.documentElement.scrollHeight }, cb);
    },
    setTitle: function (title, cb) { sendCommand('setTitle', { title: String(title) }, cb); },
    reloadWindow: function () { sendCommand('reloadWindow', {}); }
  };

  window.BX24 = BX24;
})(window);
