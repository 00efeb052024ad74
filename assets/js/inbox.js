// The inbox: the unread badge in the header (every page), a sound when a customer
// writes, and on a thread: "X is replying…", typing notices to the customer, and quick
// replies inserted by typing "/" in the reply box. Live events come from live.js
// ("crm:live"); the list and the thread refresh themselves as live regions.
(function () {
  "use strict";
  var badge = document.getElementById("inbox-badge");
  var csrf = document.body ? document.body.dataset.csrf || "" : "";
  if (!csrf) return;

  var badgeTimer = null;
  function loadBadge() {
    if (!badge) return;
    fetch("/api/v1/conversations/unread", { credentials: "same-origin" })
      .then(function (r) { return r.ok ? r.json() : null; })
      .then(function (d) {
        if (!d) return;
        badge.textContent = d.unread > 0 ? String(d.unread) : "";
        badge.hidden = !(d.unread > 0);
      })
      .catch(function () {});
  }
  function scheduleBadge() {
    clearTimeout(badgeTimer);
    badgeTimer = setTimeout(loadBadge, 250);
  }
  loadBadge();

  var audio = null;
  function chime() {
    try {
      audio = audio || new (window.AudioContext || window.webkitAudioContext)();
      var o = audio.createOscillator();
      var g = audio.createGain();
      o.frequency.value = 880;
      g.gain.setValueAtTime(0.08, audio.currentTime);
      g.gain.exponentialRampToValueAtTime(0.0001, audio.currentTime + 0.35);
      o.connect(g);
      g.connect(audio.destination);
      o.start();
      o.stop(audio.currentTime + 0.35);
    } catch (e) { /* no audio: the badge still changes */ }
  }

  var thread = document.getElementById("thread");
  var convId = thread ? Number(thread.dataset.conversation) : 0;
  var me = thread ? Number(thread.dataset.me) : 0;
  var typingEl = document.getElementById("typing");
  var typingTimer = null;

  document.addEventListener("crm:live", function (ev) {
    var msg = ev.detail || {};
    var d = msg.data || {};
    switch (msg.type) {
      case "conversation.message":
        scheduleBadge();
        if (d.message && d.message.direction === "in") chime();
        break;
      case "conversation.updated":
      case "conversation.deleted":
        scheduleBadge();
        break;
      case "conversation.transferred":
        scheduleBadge();
        break;
      case "conversation.typing":
        if (typingEl && d.conversation_id === convId && d.user_id !== me) {
          typingEl.textContent = (typingEl.dataset.template || "{name}").replace("{name}", d.name || "");
          clearTimeout(typingTimer);
          typingTimer = setTimeout(function () { typingEl.textContent = ""; }, 6000);
        }
        break;
    }
  });

  if (!thread) return;
  var region = document.getElementById("thread-region");
  function toBottom() { if (region) region.scrollTop = region.scrollHeight; }
  toBottom();
  if (region) region.addEventListener("crm:refreshed", toBottom);

  var text = document.getElementById("reply-text");
  var list = document.getElementById("quick-list");
  if (!text) return;

  // At most one typing notice every 4 s (Telegram shows it for about 5 s).
  var lastTyping = 0;
  text.addEventListener("input", function () {
    var now = Date.now();
    if (now - lastTyping > 4000 && text.value.trim() && text.value.charAt(0) !== "/") {
      lastTyping = now;
      fetch("/inbox/" + convId + "/typing", {
        method: "POST",
        credentials: "same-origin",
        headers: { "x-csrf-token": csrf },
      }).catch(function () {});
    }
    filterQuick();
  });

  function items() { return list ? Array.prototype.slice.call(list.querySelectorAll("button[data-quick]")) : []; }
  function filterQuick() {
    if (!list) return;
    var v = text.value;
    if (v.charAt(0) !== "/" || /\s/.test(v)) { list.hidden = true; return; }
    var q = v.slice(1).toLowerCase();
    var shown = 0;
    items().forEach(function (b) {
      var ok = b.dataset.shortcut.toLowerCase().indexOf(q) === 0;
      b.parentNode.hidden = !ok;
      if (ok) shown++;
    });
    list.hidden = shown === 0;
  }
  function insert(id) {
    fetch("/inbox/" + convId + "/quick-replies/" + id, { credentials: "same-origin" })
      .then(function (r) { return r.ok ? r.text() : null; })
      .then(function (t) {
        if (t === null) return;
        text.value = t;
        list.hidden = true;
        text.focus();
      })
      .catch(function () {});
  }
  if (list) {
    list.addEventListener("click", function (ev) {
      var b = ev.target.closest("button[data-quick]");
      if (b) insert(b.dataset.quick);
    });
  }
  text.addEventListener("keydown", function (ev) {
    if (ev.key === "Enter" && list && !list.hidden) {
      var first = items().filter(function (b) { return !b.parentNode.hidden; })[0];
      if (first) { ev.preventDefault(); insert(first.dataset.quick); }
    } else if (ev.key === "Enter" && (ev.ctrlKey || ev.metaKey)) {
      ev.preventDefault();
      text.form.requestSubmit();
    }
  });
})();
