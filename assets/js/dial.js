// Click-to-call: any element with data-dial="NUMBER" (e.g. <a href="tel:+998…"
// data-dial="+998…">) asks the server to ring the user's own desk phone and then connect
// it to NUMBER. Delegated on the document, so numbers added later (live updates,
// screen-pop cards) work too. Without this script the tel: link still works.
(function () {
  "use strict";
  var pending = new WeakSet();
  function status(el) {
    var s = el.nextElementSibling;
    if (!s || !s.classList.contains("dial-status")) {
      s = document.createElement("span");
      s.className = "dial-status muted";
      s.setAttribute("role", "status");
      el.insertAdjacentElement("afterend", s);
    }
    return s;
  }
  function show(el, text, bad) {
    var s = status(el);
    s.textContent = " " + text;
    s.classList.toggle("flash-error", !!bad);
  }
  document.addEventListener("click", function (ev) {
    var el = ev.target.closest ? ev.target.closest("[data-dial]") : null;
    if (!el) return;
    var number = el.getAttribute("data-dial");
    if (!number) return;
    ev.preventDefault();
    if (pending.has(el)) return;
    pending.add(el);
    el.setAttribute("aria-busy", "true");
    show(el, "…", false);
    var body = new URLSearchParams();
    body.set("number", number);
    fetch("/calls/dial", {
      method: "POST",
      credentials: "same-origin",
      headers: {
        "x-csrf-token": document.body.dataset.csrf || "",
        "content-type": "application/x-www-form-urlencoded",
        "accept": "application/json"
      },
      body: body.toString()
    }).then(function (r) {
      return r.json().then(function (j) { return { ok: r.ok, j: j }; }, function () {
        return { ok: false, j: { error: { message: "HTTP " + r.status } } };
      });
    }).then(function (res) {
      if (res.ok) show(el, res.j.message || "…", false);
      else show(el, (res.j.error && res.j.error.message) || "error", true);
    }, function () {
      show(el, "network error", true);
    }).then(function () {
      pending.delete(el);
      el.removeAttribute("aria-busy");
    });
  });
})();
