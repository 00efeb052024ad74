// The operator's call queue (/queue): "Next" takes the next customer (POST /queue/next),
// "Call" rings the operator's desk phone and connects it to the customer (click-to-call),
// the outcome form records what came of it, then the next customer comes up. With power
// dialing on (the pause button off), the next customer is called by itself after a short
// countdown. An unanswered call (no answer, busy) is recorded by the server; the queue
// moves on when it hears so (call_list.item over /ws).
(function () {
  "use strict";
  var q = document.getElementById("queue");
  if (!q) return;
  var t = q.dataset;
  var box = document.getElementById("queue-item");
  var form = document.getElementById("queue-outcome");
  var status = document.getElementById("queue-status");
  var bNext = document.getElementById("queue-next");
  var bCall = document.getElementById("queue-call");
  var bPause = document.getElementById("queue-pause");
  var bSkip = document.getElementById("queue-skip");
  var current = t.item ? Number(t.item) : null;
  var callId = t.callId || null;
  var running = false;
  var countdown = null;
  var idle = null;

  function post(url, params) {
    var body = new URLSearchParams(params || {});
    return fetch(url, {
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
        return { ok: r.ok, j: { error: { message: "HTTP " + r.status } } };
      });
    }, function () { return { ok: false, j: { error: { message: "network error" } } }; });
  }
  function say(text, bad) {
    status.textContent = text || "";
    status.classList.toggle("flash-error", !!bad);
  }
  function errorOf(res) { return (res.j && res.j.error && res.j.error.message) || "error"; }
  function stopCountdown() { if (countdown) { clearInterval(countdown); countdown = null; } }
  function setButtons() {
    bCall.disabled = !current || !!callId;
    bSkip.disabled = !current || !!callId;
    bPause.setAttribute("aria-pressed", running ? "false" : "true");
    bPause.textContent = running ? bPause.dataset.tPause : bPause.dataset.tResume;
  }
  function toggleCallback() {
    var opt = form.outcome.options[form.outcome.selectedIndex];
    var cb = document.getElementById("queue-callback-label");
    // Not `hidden`: the stylesheet gives every label display: block.
    if (cb) cb.style.display = opt && opt.dataset.effect === "callback" ? "" : "none";
  }
  function render(html) {
    var doc = new DOMParser().parseFromString("<div>" + html + "</div>", "text/html");
    box.replaceChildren.apply(box, Array.prototype.map.call(doc.body.firstChild.childNodes, function (n) {
      return document.importNode(n, true);
    }));
  }
  function empty() {
    current = null;
    callId = null;
    delete q.dataset.item;
    delete q.dataset.callId;
    var p = document.createElement("p");
    p.className = "muted";
    p.id = "queue-empty";
    p.textContent = t.tEmpty;
    box.replaceChildren(p);
    form.hidden = true;
  }
  function got(res) {
    if (!res.ok) { say(errorOf(res), true); return; }
    if (!res.j.item) {
      empty();
      setButtons();
      // Power dialing waits for the next due customer.
      if (running && !idle) idle = setTimeout(function () { idle = null; next(); }, 30000);
      return;
    }
    current = res.j.item.item.id;
    callId = res.j.item.item.call_id || null;
    q.dataset.item = current;
    render(res.j.html);
    form.reset();
    form.hidden = false;
    toggleCallback();
    setButtons();
    if (running && !callId) {
      var left = 3;
      say(t.tNextIn.replace("{secs}", left));
      stopCountdown();
      countdown = setInterval(function () {
        left -= 1;
        if (!running) { stopCountdown(); say(""); return; }
        if (left <= 0) { stopCountdown(); dial(); } else say(t.tNextIn.replace("{secs}", left));
      }, 1000);
    }
  }
  function next() {
    stopCountdown();
    return post("/queue/next").then(got);
  }
  function dial() {
    if (!current || callId) return;
    bCall.disabled = true;
    say(t.tCalling);
    post("/queue/items/" + current + "/dial").then(function (res) {
      if (res.ok) {
        callId = res.j.call_id;
        q.dataset.callId = callId;
        say(t.tCalling);
      } else {
        say(errorOf(res), true);
        running = false;
      }
      setButtons();
    });
  }
  function finished(message) {
    say(message || t.tSaved);
    current = null;
    callId = null;
    delete q.dataset.callId;
    next();
  }

  bNext.addEventListener("click", function () { if (!callId) next(); });
  bCall.addEventListener("click", function () { stopCountdown(); dial(); });
  bPause.addEventListener("click", function () {
    running = !running;
    if (!running) stopCountdown();
    setButtons();
    if (running && !current) next();
    else if (running && current && !callId) got({ ok: true, j: { item: { item: { id: current, call_id: null } }, html: null } });
  });
  bSkip.addEventListener("click", function () {
    if (!current || callId) return;
    post("/queue/items/" + current + "/release").then(function (res) {
      if (res.ok) finished(res.j.message); else say(errorOf(res), true);
    });
  });
  form.outcome.addEventListener("change", toggleCallback);
  form.addEventListener("submit", function (ev) {
    ev.preventDefault();
    if (!current) return;
    var data = {};
    new FormData(form).forEach(function (v, k) { data[k] = v; });
    post("/queue/items/" + current + "/outcome", data).then(function (res) {
      if (res.ok) finished(res.j.message); else say(errorOf(res), true);
    });
  });
  document.addEventListener("crm:live", function (e) {
    var m = e.detail;
    if (!m || !m.data) return;
    if (m.type === "call.ended" && callId && m.data.call_id === callId) {
      say(t.tEnded);
      form.outcome.focus();
    } else if (m.type === "call_list.item" && current && m.data.id === current && m.data.state && m.data.state !== "active") {
      // Recorded by the server (an unanswered call) or from another screen.
      finished();
    }
  });
  // got() with html null keeps the card as it is.
  var render0 = render;
  render = function (html) { if (html !== null) render0(html); };
  toggleCallback();
  setButtons();
})();
