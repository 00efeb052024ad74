// The shop's web chat. On the shop's site (loaded with
// <script src="https://BOX/widget/widget.js" async>) it adds the chat frame, served by the
// box, in a corner of the page; inside that frame (/widget/frame, also a reception
// tablet's page) it runs the chat. No dependencies; nothing from elsewhere.
(function () {
  "use strict";

  var root = document.getElementById("crm-widget");
  if (root) {
    chat(root);
  } else {
    loader(document.currentScript);
  }

  // On the shop's site: the frame, small until the visitor opens the chat.
  function loader(me) {
    if (!me || !me.src) return;
    var box = new URL(me.src).origin;
    var lang = me.getAttribute("data-lang");
    var f = document.createElement("iframe");
    f.id = "crm-widget-frame";
    f.src = box + "/widget/frame" + (lang ? "?lang=" + encodeURIComponent(lang) : "");
    // Set through the CSSOM, which a site's CSP without 'unsafe-inline' still allows.
    var s = f.style;
    s.position = "fixed";
    s.right = "16px";
    s.bottom = "16px";
    s.border = "0";
    s.zIndex = "2147483000";
    s.background = "transparent";
    size(false);
    function size(open) {
      s.width = open ? "min(380px, calc(100vw - 32px))" : "140px";
      s.height = open ? "min(560px, calc(100vh - 32px))" : "64px";
    }
    window.addEventListener("message", function (e) {
      if (e.origin !== box || e.source !== f.contentWindow || !e.data) return;
      if (e.data.crmWidget === "open") size(true);
      if (e.data.crmWidget === "close") size(false);
    });
    var add = function () { document.body.appendChild(f); };
    if (document.body) add(); else document.addEventListener("DOMContentLoaded", add);
  }

  // Inside the frame: the chat itself.
  function chat(root) {
    var $ = function (id) { return document.getElementById(id); };
    var panel = $("w-panel"), opener = $("w-open"), list = $("w-messages"), alertBox = $("w-error");
    var form = $("w-form"), text = $("w-text"), name = $("w-name"), send = $("w-send");
    var lang = encodeURIComponent(root.getAttribute("data-lang") || "");
    var framed = window.parent !== window;
    var visitor = visitorId();
    var last = 0;
    var offline = false;

    opener.addEventListener("click", function () { show(true); });
    $("w-close").addEventListener("click", function () { show(false); });
    // A reception tablet opens the frame as its page: the chat is open from the start.
    if (!framed) {
      $("w-close").hidden = true;
      show(true);
    }

    form.addEventListener("submit", function (e) {
      e.preventDefault();
      var t = text.value.trim();
      if (!t) return;
      send.disabled = true;
      fetch("/widget/messages?lang=" + lang, {
        method: "POST",
        headers: { "Content-Type": "application/json" },
        body: JSON.stringify({ visitor: visitor, text: t, name: name.value })
      }).then(function (r) {
        return r.json().then(function (j) { return { ok: r.ok, j: j }; });
      }).then(function (x) {
        if (x.ok) {
          text.value = "";
          add(x.j.message);
        } else {
          var why = (x.j && x.j.error && x.j.error.message) || "";
          say(root.getAttribute("data-failed").replace("{reason}", why));
        }
      }, function () {
        say(root.getAttribute("data-offline"));
      }).then(function () {
        send.disabled = false;
      });
    });
    // A refusal stays until the visitor changes the message.
    text.addEventListener("input", function () { if (!offline) say(""); });
    text.addEventListener("keydown", function (e) {
      if (e.key === "Enter" && !e.shiftKey) {
        e.preventDefault();
        form.requestSubmit();
      }
    });

    poll();

    function show(open) {
      panel.hidden = !open;
      opener.hidden = open;
      // Only "open"/"close": nothing of the chat leaves the frame.
      if (framed) window.parent.postMessage({ crmWidget: open ? "open" : "close" }, "*");
      if (open) text.focus();
    }

    function say(msg) {
      alertBox.textContent = msg;
      alertBox.hidden = !msg;
    }

    // A random id kept by this browser (in the frame's own storage): the visitor's
    // thread. Without storage (private mode) the thread lasts as long as the page.
    function visitorId() {
      var key = "crm-widget-visitor", v = null;
      try { v = window.localStorage.getItem(key); } catch (e) { v = null; }
      if (!v || !/^[A-Za-z0-9_-]{16,64}$/.test(v)) {
        var b = new Uint8Array(18);
        window.crypto.getRandomValues(b);
        v = btoa(String.fromCharCode.apply(null, b)).replace(/\+/g, "-").replace(/\//g, "_");
        try { window.localStorage.setItem(key, v); } catch (e) { /* kept in memory */ }
      }
      return v;
    }

    // Messages in id order, each once (a sent message may come back from a poll too).
    function add(m) {
      if (list.querySelector('li[data-id="' + m.id + '"]')) return;
      if (m.id > last) last = m.id;
      var li = document.createElement("li");
      li.className = m.mine ? "w-mine" : "w-shop";
      li.setAttribute("data-id", String(m.id));
      var who = document.createElement("span");
      who.className = "w-who";
      who.textContent = root.getAttribute(m.mine ? "data-you" : "data-shop");
      var p = document.createElement("p");
      p.textContent = m.text;
      li.appendChild(who);
      li.appendChild(p);
      var after = null;
      list.querySelectorAll("li[data-id]").forEach(function (o) {
        if (!after && Number(o.getAttribute("data-id")) > m.id) after = o;
      });
      list.insertBefore(li, after);
      list.scrollTop = list.scrollHeight;
    }

    // Long-poll: the box answers as soon as the thread has something new, or empty
    // after 20 s; then at once again.
    function poll() {
      fetch("/widget/messages?visitor=" + encodeURIComponent(visitor) + "&after=" + last +
            "&wait=20&lang=" + lang, { cache: "no-store" })
        .then(function (r) {
          if (!r.ok) throw new Error(String(r.status));
          return r.json();
        })
        .then(function (j) {
          if (offline) { offline = false; say(""); }
          j.messages.forEach(add);
          poll();
        }, function () {
          offline = true;
          say(root.getAttribute("data-offline"));
          window.setTimeout(poll, 3000);
        });
    }
  }
})();
