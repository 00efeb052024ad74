// Live updates over /ws: keeps a connection indicator, reconnects with exponential
// backoff and jitter, catches up from the last sequence number it saw, and refreshes the
// page regions that declare interest (data-live-topics="order. customer.updated").
(function () {
  "use strict";
  var body = document.body;
  if (!body || !body.dataset.csrf || !window.WebSocket) return; // signed-in pages only
  var lastSeq = Number(body.dataset.liveSeq || 0);
  var indicator = document.getElementById("conn-indicator");
  var presenceEl = document.getElementById("presence-count");
  var online = new Set();
  var attempt = 0;
  var ws = null;

  function setState(on) {
    if (!indicator) return;
    indicator.classList.toggle("online", on);
    indicator.classList.toggle("offline", !on);
    indicator.title = on ? indicator.dataset.on : indicator.dataset.off;
  }

  function renderPresence() {
    if (presenceEl) presenceEl.textContent = online.size ? "● " + online.size : "";
    document.querySelectorAll("[data-presence-user]").forEach(function (el) {
      el.classList.toggle("online", online.has(Number(el.dataset.presenceUser)));
    });
  }

  function loadPresence() {
    fetch("/api/v1/presence", { credentials: "same-origin" })
      .then(function (r) { return r.ok ? r.json() : { online: [] }; })
      .then(function (p) { online = new Set(p.online); renderPresence(); })
      .catch(function () {});
  }

  // Region refresh: fetch this page again and swap the region's content, unless the
  // person is typing inside it (then after they leave it).
  var pending = new Map();
  function refresh(region) {
    if (region.contains(document.activeElement) && document.activeElement !== document.body) {
      region.addEventListener("focusout", function () { schedule(region); }, { once: true });
      return;
    }
    fetch(location.href, { credentials: "same-origin", headers: { "X-Live-Refresh": "1" } })
      .then(function (r) { return r.ok ? r.text() : null; })
      .then(function (html) {
        if (!html) return;
        var doc = new DOMParser().parseFromString(html, "text/html");
        var fresh = doc.getElementById(region.id);
        if (fresh) {
          // Nodes, not an HTML string: the server's escaped page is never re-parsed.
          region.replaceChildren.apply(region, Array.prototype.map.call(fresh.childNodes, function (n) {
            return document.importNode(n, true);
          }));
          region.dispatchEvent(new CustomEvent("crm:refreshed", { bubbles: true }));
        }
      })
      .catch(function () {});
  }
  function schedule(region) {
    if (pending.has(region)) return;
    pending.set(region, setTimeout(function () { pending.delete(region); refresh(region); }, 120));
  }
  function regionsFor(type) {
    return Array.prototype.filter.call(document.querySelectorAll("[data-live-topics][id]"), function (el) {
      return el.dataset.liveTopics.split(/\s+/).some(function (t) {
        return t && (t === type || (t.slice(-1) === "." && type.indexOf(t) === 0));
      });
    });
  }
  function refreshAll() {
    document.querySelectorAll("[data-live-topics][id]").forEach(schedule);
  }

  function toast(text) {
    var t = document.createElement("div");
    t.className = "toast";
    t.setAttribute("role", "status");
    t.textContent = text;
    document.body.appendChild(t);
    setTimeout(function () { t.remove(); }, 8000);
  }

  function handle(msg) {
    if (typeof msg.seq === "number" && msg.type !== "hello" && msg.seq > lastSeq) lastSeq = msg.seq;
    switch (msg.type) {
      case "hello":
        if (msg.data && msg.data.resync) refreshAll();
        if (typeof msg.seq === "number" && msg.seq > lastSeq && !(msg.data && msg.data.replayed)) lastSeq = msg.seq;
        loadPresence();
        break;
      case "resync":
        refreshAll();
        break;
      case "user.presence":
        if (msg.data.online) online.add(msg.data.user_id); else online.delete(msg.data.user_id);
        renderPresence();
        break;
      case "notice":
        var list = document.getElementById("notice-list");
        if (list) {
          var li = document.createElement("li");
          li.textContent = (msg.data.author ? msg.data.author + ": " : "") + msg.data.text;
          list.insertBefore(li, list.firstChild);
        }
        toast(msg.data.text);
        break;
    }
    regionsFor(msg.type).forEach(schedule);
    document.dispatchEvent(new CustomEvent("crm:live", { detail: msg }));
  }

  function connect() {
    var proto = location.protocol === "https:" ? "wss://" : "ws://";
    ws = new WebSocket(proto + location.host + "/ws?last_seq=" + lastSeq);
    ws.onopen = function () { attempt = 0; setState(true); };
    ws.onmessage = function (e) {
      try { handle(JSON.parse(e.data)); } catch (err) { /* ignore a malformed frame */ }
    };
    ws.onclose = function () {
      setState(false);
      // 0.5 s, 1 s, 2 s ... capped at 30 s, with full jitter so screens do not reconnect
      // in lockstep after a restart.
      var cap = Math.min(30000, 500 * Math.pow(2, attempt++));
      setTimeout(connect, Math.random() * cap + 250);
    };
  }
  window.crmLive = { lastSeq: function () { return lastSeq; } };
  connect();
})();
