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
  // Data from the server goes on the page as text only (see harden.rs: no HTML sinks).
  function el(tag, cls, text) {
    var e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text != null) e.textContent = text;
    return e;
  }
  function txt(s) { return document.createTextNode(s); }
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
    function render(d) {
      box.textContent = "";
      d.hits.forEach(function (h) {
        var a = el("a", "sg " + (h.status ? "sg-order" : "sg-customer"));
        a.href = h.href;
        a.setAttribute("role", "option");
        a.appendChild(el("span", "sg-main", h.main));
        if (h.status) {
          a.appendChild(txt(" "));
          a.appendChild(el("span", "badge status status-" + h.status[1], h.status[0]));
        }
        if (h.sub) {
          a.appendChild(txt(" "));
          a.appendChild(el("span", "sg-sub", h.sub));
        }
        box.appendChild(a);
      });
      if (d.empty) box.appendChild(el("p", "sg-empty", d.empty));
      var all = el("a", "sg sg-all", d.all.label);
      all.href = d.all.href;
      all.setAttribute("role", "option");
      box.appendChild(all);
    }
    var ask = debounce(function () {
      var q = input.value.trim();
      if (!q) { box.textContent = ""; shown = ""; hide(); return; }
      if (q === shown) { show(); return; }
      var mine = ++seq;
      fetch(input.dataset.suggest + "?q=" + encodeURIComponent(q), { credentials: "same-origin", headers: { "Accept": "application/json" } })
        .then(function (r) { return r.ok ? r.json() : null; })
        .then(function (d) {
          // An answer to an older query than what is typed now is dropped.
          if (!d || mine !== seq) return;
          shown = q;
          render(d);
          show();
          box.dataset.query = q;
        })
        .catch(function () { /* the form still submits to /search */ });
    }, 120);
    input.addEventListener("input", ask);
    input.addEventListener("focus", function () { if (box.firstChild && input.value.trim()) show(); });
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
    // The same box the server draws (pages::desk::customer_block).
    function renderBox(d, chosen) {
      box.textContent = "";
      if (!d.customer) return;
      var c = d.customer;
      var k = el("div", "known-customer");
      k.dataset.customerId = c.id;
      k.dataset.name = c.name;
      k.dataset.phone = c.phone || "";
      k.appendChild(txt("✓ " + d.t.known + ": "));
      var a = el("a", null, c.name);
      a.href = c.href;
      a.target = "_blank";
      k.appendChild(a);
      k.appendChild(txt(" "));
      k.appendChild(el("span", "muted", c.phones));
      box.appendChild(k);
      if (!d.differs) return;
      var f = el("fieldset", "choice");
      f.id = "customer-choice";
      f.appendChild(el("legend", null, d.t.legend));
      [["existing", d.t.existing], ["new", d.t["new"]]].forEach(function (o) {
        var l = el("label", "check");
        var r = el("input");
        r.type = "radio"; r.name = "customer_choice"; r.value = o[0]; r.required = true;
        r.checked = chosen === o[0];
        l.appendChild(r);
        l.appendChild(txt(" " + o[1]));
        f.appendChild(l);
      });
      box.appendChild(f);
    }
    function apply() {
      var known = box.querySelector(".known-customer");
      if (name) name.placeholder = known ? known.dataset.name || "" : "";
    }
    var look = debounce(function () {
      var q = "phone=" + encodeURIComponent(phone.value) + "&name=" + encodeURIComponent(name ? name.value : "");
      if (q === asked) return;
      asked = q;
      var mine = ++seq;
      fetch(phone.dataset.lookup + "?" + q, { credentials: "same-origin", headers: { "Accept": "application/json" } })
        .then(function (r) { return r.ok ? r.json() : null; })
        .then(function (d) {
          if (!d || mine !== seq) return;
          // Keep a radio already chosen when the same choice comes back.
          var was = box.querySelector("input[name=customer_choice]:checked");
          renderBox(d, was ? was.value : null);
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

  // The unlock pattern pad: tapping dots writes them in order ("1-5-9-6"); a dot is
  // used once, as on the phone. The typed field stays the source of truth.
  function setupPatternPads() {
    document.querySelectorAll(".pattern-field").forEach(function (field) {
      var input = field.querySelector("input");
      var pad = field.querySelector(".pattern-pad");
      var clear = field.querySelector(".pattern-clear");
      if (!input || !pad) return;
      pad.hidden = false;
      if (clear) clear.hidden = false;
      function dots() { return (input.value.match(/[1-9]/g) || []); }
      function paint() {
        var on = dots();
        pad.querySelectorAll("button").forEach(function (b) {
          var i = on.indexOf(b.dataset.dot);
          b.classList.toggle("on", i >= 0);
          b.firstChild.textContent = i >= 0 ? String(i + 1) : "";
        });
      }
      pad.addEventListener("click", function (e) {
        var b = e.target.closest("button[data-dot]");
        if (!b) return;
        var d = dots();
        if (d.indexOf(b.dataset.dot) < 0) d.push(b.dataset.dot);
        input.value = d.join("-");
        paint();
      });
      if (clear) clear.addEventListener("click", function () { input.value = ""; paint(); input.focus(); });
      input.addEventListener("input", paint);
      paint();
    });
  }

  onReady(function () {
    setupPatternPads();
    setupCopyAndConfirm();
    setupSearch();
    setupMenus();
    setupIntake();
  });
})();
