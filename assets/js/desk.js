// The front desk (issue 20): the header search with results as you type (`/` or Ctrl+K
// focuses it), header menus that close like menus, and the intake form's customer found
// by the phone being typed. Every piece has a plain-HTML fallback.
(function () {
  "use strict";
  function onReady(fn) {
    if (document.readyState !== "loading") fn(); else document.addEventListener("DOMContentLoaded", fn);
  }
  function debounce(fn, ms) {
    var t = null;
    return function () { clearTimeout(t); t = setTimeout(fn, ms); };
  }
  function typing(el) {
    if (!el) return false;
    var tag = el.tagName;
    return tag === "INPUT" || tag === "TEXTAREA" || tag === "SELECT" || el.isContentEditable;
  }

  function setupSearch() {
    var input = document.getElementById("global-search");
    var box = document.getElementById("search-suggest");
    if (!input || !box) return;
    var seq = 0;
    var shown = "";
    function links() { return Array.prototype.slice.call(box.querySelectorAll("a.sg")); }
    function hide() { box.hidden = true; input.setAttribute("aria-expanded", "false"); }
    function show() { box.hidden = false; input.setAttribute("aria-expanded", "true"); }
    function move(step) {
      var all = links();
      if (!all.length) return;
      var i = all.findIndex(function (a) { return a.classList.contains("active"); });
      if (i >= 0) all[i].classList.remove("active");
      i = (i + step + all.length) % all.length;
      all[i].classList.add("active");
      all[i].scrollIntoView({ block: "nearest" });
    }
    var ask = debounce(function () {
      var q = input.value.trim();
      if (!q) { box.innerHTML = ""; shown = ""; hide(); return; }
      if (q === shown) { show(); return; }
      var mine = ++seq;
      fetch(input.dataset.suggest + "?q=" + encodeURIComponent(q), { credentials: "same-origin", headers: { "Accept": "text/html" } })
        .then(function (r) { return r.ok ? r.text() : ""; })
        .then(function (html) {
          // An answer to an older query than what is typed now is dropped.
          if (mine !== seq) return;
          shown = q;
          box.innerHTML = html;
          if (html.trim()) { show(); box.dataset.query = q; } else hide();
        })
        .catch(function () { /* the form still submits to /search */ });
    }, 120);
    input.addEventListener("input", ask);
    input.addEventListener("focus", function () { if (box.innerHTML.trim() && input.value.trim()) show(); });
    input.addEventListener("keydown", function (e) {
      if (e.key === "ArrowDown") { e.preventDefault(); show(); move(1); }
      else if (e.key === "ArrowUp") { e.preventDefault(); move(-1); }
      else if (e.key === "Escape") { hide(); input.blur(); }
      else if (e.key === "Enter") {
        var a = box.querySelector("a.sg.active");
        if (a && !box.hidden) { e.preventDefault(); window.location.href = a.href; }
      }
    });
    document.addEventListener("click", function (e) {
      if (!e.target.closest || !e.target.closest("#global-search-form")) hide();
    });
    document.addEventListener("keydown", function (e) {
      var k = e.key;
      if ((k === "k" || k === "K") && (e.ctrlKey || e.metaKey)) {
        e.preventDefault(); input.focus(); input.select();
      } else if (k === "/" && !e.ctrlKey && !e.metaKey && !e.altKey && !typing(document.activeElement)) {
        e.preventDefault(); input.focus(); input.select();
      }
    });
  }

  function setupMenus() {
    var menus = Array.prototype.slice.call(document.querySelectorAll("details.menu"));
    menus.forEach(function (m) {
      m.addEventListener("toggle", function () {
        if (m.open) menus.forEach(function (o) { if (o !== m) o.open = false; });
      });
    });
    document.addEventListener("click", function (e) {
      menus.forEach(function (m) { if (m.open && !m.contains(e.target)) m.open = false; });
    });
    document.addEventListener("keydown", function (e) {
      if (e.key === "Escape") menus.forEach(function (m) { m.open = false; });
    });
  }

  function setupIntake() {
    var phone = document.querySelector("#new-order #phone[data-lookup]");
    var name = document.getElementById("customer_name");
    var box = document.getElementById("intake-customer");
    if (!phone || !box) return;
    var seq = 0;
    var asked = null;
    function apply() {
      var known = box.querySelector(".known-customer");
      if (name) name.placeholder = known ? known.dataset.name || "" : "";
    }
    var look = debounce(function () {
      var q = "phone=" + encodeURIComponent(phone.value) + "&name=" + encodeURIComponent(name ? name.value : "");
      if (q === asked) return;
      asked = q;
      var mine = ++seq;
      fetch(phone.dataset.lookup + "?" + q, { credentials: "same-origin" })
        .then(function (r) { return r.ok ? r.text() : null; })
        .then(function (html) {
          if (html === null || mine !== seq) return;
          // Keep a radio already chosen when the same choice comes back.
          var was = box.querySelector("input[name=customer_choice]:checked");
          box.innerHTML = html;
          if (was) {
            var again = box.querySelector("input[name=customer_choice][value=" + was.value + "]");
            if (again) again.checked = true;
          }
          apply();
        })
        .catch(function () { /* the server checks again on submit */ });
    }, 200);
    phone.addEventListener("input", look);
    if (name) name.addEventListener("input", look);
    phone.addEventListener("blur", function () {
      var known = box.querySelector(".known-customer");
      if (known && known.dataset.phone) phone.value = known.dataset.phone;
    });
    apply();
  }

  // Buttons that copy a value (the phone's settings) and forms that ask first.
  function setupCopyAndConfirm() {
    document.addEventListener("click", function (e) {
      var b = e.target.closest && e.target.closest("button[data-copy]");
      if (!b) return;
      var text = b.dataset.copy;
      var done = function () {
        var was = b.textContent;
        b.textContent = b.dataset.done || was;
        b.classList.add("copied");
        setTimeout(function () { b.textContent = was; b.classList.remove("copied"); }, 1500);
      };
      if (navigator.clipboard && window.isSecureContext) {
        navigator.clipboard.writeText(text).then(done, function () { fallback(text); done(); });
      } else { fallback(text); done(); }
    });
    function fallback(text) {
      var t = document.createElement("textarea");
      t.value = text; t.setAttribute("readonly", ""); t.style.position = "fixed"; t.style.opacity = "0";
      document.body.appendChild(t); t.select();
      try { document.execCommand("copy"); } catch (err) { /* the value stays visible to copy by hand */ }
      document.body.removeChild(t);
    }
    document.addEventListener("submit", function (e) {
      var f = e.target;
      if (f.dataset && f.dataset.confirm && !window.confirm(f.dataset.confirm)) e.preventDefault();
    });
  }

  onReady(function () {
    setupCopyAndConfirm();
    setupSearch();
    setupMenus();
    setupIntake();
  });
})();
