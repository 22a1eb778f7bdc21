/* The emulated portal's side of an app frame: answers the frame's postMessage commands as the
 * portal's parent page does (shared/reference/bitrix24-rest.md §6): no reply to unknown commands,
 * to commands the placement denies, or to a failed refreshAuth.
 * CFG is injected by the emulator's /app/{name} page. */
(function (CFG) {
  'use strict';
  var frame = document.getElementById('b24-app-frame');
  var host = (window.__b24host = { cfg: CFG, log: [] });

  function reply(cb, data) {
    if (!cb) return;
    frame.contentWindow.postMessage(cb + ':' + (data === undefined ? '' : JSON.stringify(data)), CFG.frameOrigin);
  }

  // "cmd:json:callbackId:APP_SID" (json may be empty or contain ':'), or the object form
  // {method, params, callback, appSid}.
  function parse(data) {
    if (data && typeof data === 'object') {
      return { cmd: String(data.method || ''), params: data.params, cb: String(data.callback || ''), sid: String(data.appSid || '') };
    }
    if (typeof data !== 'string') return null;
    var first = data.indexOf(':');
    if (first < 0) return { cmd: data, params: null, cb: '', sid: '' };
    var cmd = data.slice(0, first);
    var rest = data.slice(first + 1);
    var last = rest.lastIndexOf(':');
    if (last < 0) return { cmd: cmd, params: null, cb: '', sid: rest };
    var sid = rest.slice(last + 1);
    rest = rest.slice(0, last);
    var prev = rest.lastIndexOf(':');
    var cb = rest.slice(prev + 1);
    var json = prev < 0 ? '' : rest.slice(0, prev);
    var params = null;
    if (json) { try { params = JSON.parse(json); } catch (e) { params = json; } }
    return { cmd: cmd, params: params, cb: cb, sid: sid };
  }

  function initData() {
    return {
      DOMAIN: CFG.DOMAIN, PROTOCOL: CFG.PROTOCOL, PATH: '/rest', LANG: CFG.LANG,
      AUTH_ID: CFG.AUTH_ID, REFRESH_ID: CFG.REFRESH_ID, AUTH_EXPIRES: CFG.AUTH_EXPIRES,
      MEMBER_ID: CFG.MEMBER_ID, IS_ADMIN: CFG.IS_ADMIN, APP_OPTIONS: {}, USER_OPTIONS: {},
      PLACEMENT: CFG.PLACEMENT, PLACEMENT_OPTIONS: CFG.PLACEMENT_OPTIONS_OBJECT,
      INSTALL: CFG.INSTALL, FIRST_RUN: CFG.FIRST_RUN
    };
  }

  // Outside the DEFAULT placement the portal ignores these.
  var DEFAULT_ONLY = { setTitle: true, setScroll: true, reloadWindow: true };

  window.addEventListener('message', function (e) {
    if (e.source !== frame.contentWindow) return;
    var m = parse(e.data);
    var entry = { origin: e.origin, cmd: m && m.cmd, accepted: false };
    host.log.push(entry);
    if (e.origin !== CFG.frameOrigin) { entry.reason = 'origin'; return; }
    if (!m || m.sid !== CFG.APP_SID) { entry.reason = 'app_sid'; return; }
    entry.accepted = true;
    if (DEFAULT_ONLY[m.cmd] && CFG.PLACEMENT !== 'DEFAULT') { entry.reason = 'denied'; return; }
    switch (m.cmd) {
      case 'getInitData':
        reply(m.cb, initData());
        break;
      case 'refreshAuth':
        // Minted server-side for this page's session (no refresh token consumed), so concurrent
        // refreshes all succeed; on failure the portal never replies.
        fetch('/app/_refresh', {
          method: 'POST',
          headers: { 'Content-Type': 'application/x-www-form-urlencoded' },
          body: 'app_sid=' + encodeURIComponent(CFG.APP_SID)
        }).then(function (r) { return r.json(); }).then(function (t) {
          if (!t || t.error) throw new Error(t ? t.error : 'no answer');
          CFG.AUTH_ID = t.access_token;
          CFG.REFRESH_ID = t.refresh_token;
          CFG.AUTH_EXPIRES = t.expires_in;
          reply(m.cb, { AUTH_ID: t.access_token, REFRESH_ID: t.refresh_token, AUTH_EXPIRES: t.expires_in });
        }).catch(function () { entry.reason = 'refresh_failed'; });
        break;
      case 'resizeWindow':
        var size = function (v) { return /^\d+$/.test(String(v)) ? v + 'px' : String(v); };
        if (m.params && m.params.width) frame.style.width = size(m.params.width);
        if (m.params && m.params.height) frame.style.height = size(m.params.height);
        reply(m.cb, { width: frame.offsetWidth, height: frame.offsetHeight });
        break;
      case 'setTitle':
        if (m.params && m.params.title) document.title = m.params.title;
        reply(m.cb, m.params);
        break;
      case 'setScroll':
        if (m.params && m.params.scroll !== undefined) window.scrollTo(0, Number(m.params.scroll) || 0);
        reply(m.cb, m.params);
        break;
      case 'reloadWindow':
        document.getElementById('b24-app-form').submit();
        break;
      default:
        // unknown commands and events (placement.bindEvent): the portal sends nothing
        entry.reason = 'no reply';
    }
  });

  document.getElementById('b24-app-form').submit();
})(window.__B24_FRAME_CFG);
