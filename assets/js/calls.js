// Calls on screen: the screen-pop card when a phone of this user rings (call.ringing),
// "answered by X" when someone else picks up (call.answered), gone when the call ends
// (call.ended); keyboard shortcuts from the newest card; and the live call status with
// running timers (call.live) in the header and the users list.
(function () {
  "use strict";
  var pops = document.getElementById("call-pops");
  var status = document.getElementById("call-status");
  if (!pops) return;
  var t = pops.dataset;
  var me = status ? Number(status.dataset.me) : 0;
  var lang = document.documentElement.lang || "en";
  // Server clock minus ours, so timers agree with the server whatever the PC's clock says.
  var skew = status && status.dataset.now ? Number(status.dataset.now) - Date.now() : 0;

  function el(tag, cls, text) {
    var e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined && text !== null) e.textContent = text;
    return e;
  }
  function pretty(n) {
    var m = /^\+998(\d{2})(\d{3})(\d{2})(\d{2})$/.exec(n || "");
    return m ? "+998 " + m[1] + " " + m[2] + " " + m[3] + " " + m[4] : n;
  }
  // The same markup as the server's phone links: tel: for the OS, data-dial for click-to-call.
  function phoneLink(n) {
    var a = el("a", "phone", pretty(n));
    a.href = "tel:" + n;
    a.dataset.dial = n;
    return a;
  }
  function link(href, text, cls) {
    var a = el("a", cls || "", text);
    a.href = href;
    return a;
  }
  function when(ms) {
    try { return new Date(ms).toLocaleString(lang); } catch (e) { return new Date(ms).toISOString(); }
  }
  function clock(ms) {
    var s = Math.max(0, Math.floor(ms / 1000));
    var h = Math.floor(s / 3600), m = Math.floor(s / 60) % 60, r = s % 60;
    return (h ? h + ":" + (m < 10 ? "0" : "") : "") + m + ":" + (r < 10 ? "0" : "") + r;
  }
  function customerUrl(d) { return d.customer ? "/customers/" + d.customer.id : "/customers/new?phone=" + encodeURIComponent(d.number); }
  function orderUrl(d) {
    return d.customer ? "/orders/new?customer=" + d.customer.id : "/orders/new?phone=" + encodeURIComponent(d.number);
  }

  function card(d) {
    var c = el("section", "call-pop card");
    c.dataset.callId = d.call_id;
    c.setAttribute("role", "alert");
    var close = el("button", "pop-close", "×");
    close.type = "button";
    close.title = t.tClose;
    close.addEventListener("click", function () { c.remove(); });
    c.appendChild(close);
    c.appendChild(el("h3", "", t.tTitle));
    var num = el("div", "pop-number");
    num.appendChild(phoneLink(d.number));
    c.appendChild(num);
    var body = el("div", "pop-body");
    var actions = el("div", "pop-actions");
    if (d.transferred_by && t.tTransferredBy) {
      var by = d.transferred_by.name ? d.transferred_by.name + " (" + d.transferred_by.extension + ")" : d.transferred_by.extension;
      body.appendChild(el("p", "pop-transferred", t.tTransferredBy.replace("{name}", by)));
    }
    if (d.customer) {
      var name = el("p", "pop-customer");
      if (t.canCustomers === "1") name.appendChild(link(customerUrl(d), d.customer.name));
      else name.textContent = d.customer.name;
      body.appendChild(name);
      if (!d.customer.limited) {
        // balance_text is the amount without its sign; an overpayment is named as one.
        var over = d.customer.balance < 0 && t.tOverpaid;
        body.appendChild(el("p", "pop-balance" + (over ? " overpaid" : ""), (over ? t.tOverpaid : t.tBalance) + ": " + d.customer.balance_text));
        if (d.customer.orders && d.customer.orders.length) {
          var ul = el("ul", "pop-orders");
          d.customer.orders.forEach(function (o) {
            var li = el("li");
            li.appendChild(link("/orders/" + o.id, o.number));
            li.appendChild(document.createTextNode(" · " + (o.status[lang] || o.status.en || "") +
              (o.promised ? " · " + t.tPromised + " " + o.promised : "")));
            ul.appendChild(li);
          });
          body.appendChild(ul);
        } else {
          body.appendChild(el("p", "muted", t.tNoOrders));
        }
      }
      if (t.canCustomers === "1") actions.appendChild(link(customerUrl(d), t.tOpenCustomer, "button pop-open-customer"));
    } else {
      body.appendChild(el("p", "pop-unknown", t.tUnknown));
      if (t.canEditCustomers === "1") actions.appendChild(link(customerUrl(d), t.tNewCustomer, "button pop-new-customer"));
    }
    if (t.canOrders === "1") actions.appendChild(link(orderUrl(d), t.tNewOrder, "button primary pop-new-order"));
    if (d.last_call) {
      body.appendChild(el("p", "pop-last muted", t.tLastCall + ": " + (d.last_call.started_text || when(d.last_call.started_ms)) +
        (d.last_call.answered_by ? " · " + d.last_call.answered_by : "")));
    }
    c.appendChild(body);
    c.appendChild(actions);
    c.appendChild(el("p", "pop-keys", t.tKeys));
    c._call = d;
    return c;
  }

  function find(id) {
    return Array.prototype.find.call(pops.querySelectorAll(".call-pop"), function (c) { return c.dataset.callId === id; });
  }

  function onRinging(d) {
    var old = find(d.call_id);
    var fresh = card(d);
    if (old) pops.replaceChild(fresh, old); else pops.insertBefore(fresh, pops.firstChild);
    document.dispatchEvent(new CustomEvent("crm:dial-links", { detail: fresh }));
  }
  function onAnswered(d) {
    var c = find(d.call_id);
    if (!c) return;
    if (d.user_id === me) { c.classList.add("answered-here"); recordButton(c, d); return; }
    c.classList.add("answered-elsewhere");
    var body = c.querySelector(".pop-body");
    // Who answered is only told to those who may see calls.
    var note = el("p", "pop-answered-by", d.by ? t.tAnsweredBy.replace("{name}", d.by) : t.tAnsweredElsewhere);
    body.insertBefore(note, body.firstChild);
    var keys = c.querySelector(".pop-actions");
    if (keys) keys.remove();
  }
  // Call recording (issue 16): "Record" on the card of a call this user took, for those
  // allowed to listen; the server refuses a call whose recording policy is off.
  function recordButton(c, d) {
    if (t.canRecord !== "1" || c.querySelector(".pop-record")) return;
    var b = el("button", "pop-record", t.tRecord);
    b.type = "button";
    var msg = el("span", "pop-record-status muted");
    msg.setAttribute("role", "status");
    b.addEventListener("click", function () {
      b.disabled = true;
      var body = new URLSearchParams();
      body.set("call_id", d.call_id);
      fetch("/calls/record", {
        method: "POST",
        credentials: "same-origin",
        headers: {
          "x-csrf-token": document.body.dataset.csrf || "",
          "content-type": "application/x-www-form-urlencoded",
          "accept": "application/json"
        },
        body: body.toString()
      }).then(function (r) {
        return r.json().then(function (j) { return { ok: r.ok, j: j }; }, function () { return { ok: r.ok, j: {} }; });
      }).then(function (res) {
        msg.textContent = res.ok ? (res.j.message || "") : ((res.j.error && res.j.error.message) || "error");
        if (!res.ok) b.disabled = false;
      }, function () { b.disabled = false; msg.textContent = "network error"; });
    });
    var where = c.querySelector(".pop-body") || c;
    var p = el("p", "pop-record-row");
    p.appendChild(b);
    p.appendChild(document.createTextNode(" "));
    p.appendChild(msg);
    where.appendChild(p);
  }
  function onEnded(d) {
    var c = find(d.call_id);
    if (!c) return;
    var queue = document.getElementById("queue");
    // A call the queue placed is wrapped up in the queue's own form.
    if (queue && queue.dataset.callId === d.call_id) { c.remove(); return; }
    if (t.canWrap === "1" && c.classList.contains("answered-here")) wrapUp(c, d);
    else c.remove();
  }

  // The wrap-up: the card of a call this user took turns into a short form (outcome,
  // note, follow-up date) once the call ends.
  var outcomes = null;
  function loadOutcomes() {
    if (outcomes) return Promise.resolve(outcomes);
    return fetch("/api/v1/call-outcomes", { credentials: "same-origin" })
      .then(function (r) { return r.ok ? r.json() : []; })
      .then(function (all) { outcomes = all.filter(function (o) { return o.active; }); return outcomes; }, function () { return []; });
  }
  function outcomeName(o) {
    return { ru: o.name_ru, en: o.name_en, "uz-Cyrl": o.name_uz_cyrl }[lang] || o.name_uz;
  }
  function wrapUp(c, d) {
    c.classList.add("wrap-up");
    c.removeAttribute("role");
    var keep = c.querySelector(".pop-close");
    var title = el("h3", "", t.tWrapTitle);
    var who = c.querySelector(".pop-customer") || c.querySelector(".pop-number");
    var form = el("form", "wrap-form");
    form.dataset.callId = d.call_id;
    var sel = el("select");
    sel.name = "outcome";
    sel.required = true;
    var l1 = el("label", "", t.tOutcome + " ");
    l1.appendChild(sel);
    var note = el("textarea");
    note.name = "note";
    note.rows = 2;
    note.maxLength = 4000;
    var l2 = el("label", "", t.tNote + " ");
    l2.appendChild(note);
    var date = el("input");
    date.type = "date";
    date.name = "follow_up";
    var l3 = el("label", "", t.tFollowUp + " ");
    l3.appendChild(date);
    var save = el("button", "primary", t.tSave);
    save.type = "submit";
    var msg = el("p", "wrap-status muted");
    msg.setAttribute("role", "status");
    [l1, l2, l3, save, msg].forEach(function (x) { form.appendChild(x); });
    var nodes = [keep, title];
    if (who) nodes.push(who.cloneNode(true));
    nodes.push(form);
    c.replaceChildren.apply(c, nodes.filter(Boolean));
    loadOutcomes().then(function (all) {
      all.forEach(function (o) {
        var opt = el("option", "", outcomeName(o));
        opt.value = o.code;
        sel.appendChild(opt);
      });
    });
    form.addEventListener("submit", function (ev) {
      ev.preventDefault();
      var body = new URLSearchParams();
      body.set("call_id", d.call_id);
      body.set("outcome", sel.value);
      body.set("note", note.value);
      body.set("follow_up", date.value);
      save.disabled = true;
      fetch("/calls/wrap-up", {
        method: "POST",
        credentials: "same-origin",
        headers: {
          "x-csrf-token": document.body.dataset.csrf || "",
          "content-type": "application/x-www-form-urlencoded",
          "accept": "application/json"
        },
        body: body.toString()
      }).then(function (r) {
        return r.json().then(function (j) { return { ok: r.ok, j: j }; }, function () { return { ok: r.ok, j: {} }; });
      }).then(function (res) {
        save.disabled = false;
        if (res.ok) {
          msg.textContent = (res.j && res.j.message) || t.tSaved;
          c.classList.add("wrapped");
          setTimeout(function () { c.remove(); }, 1500);
        } else {
          msg.textContent = (res.j.error && res.j.error.message) || "error";
          msg.classList.add("flash-error");
        }
      }, function () { save.disabled = false; msg.textContent = "network error"; });
    });
  }

  // Who is on the other end: the customer's name, or the number as a dial link.
  function party(k) {
    return k.customer_name ? document.createTextNode(k.customer_name) : phoneLink(k.number);
  }
  function chip(k) {
    var s = el("span", "call-chip");
    if (k.answered_user_id) s.dataset.callUser = k.answered_user_id;
    s.dataset.since = k.answered_ms;
    s.appendChild(document.createTextNode((k.answered_user_name || "") + " ↔ "));
    s.appendChild(party(k));
    s.appendChild(document.createTextNode(" "));
    s.appendChild(el("span", "call-timer"));
    return s;
  }
  function onLive(d) {
    if (typeof d.now_ms === "number") skew = d.now_ms - Date.now();
    if (status) {
      var all = status.dataset.all === "1";
      status.textContent = "";
      d.calls.forEach(function (k) { if (all || k.answered_user_id === me) status.appendChild(chip(k)); });
    }
    document.querySelectorAll("[data-call-cell]").forEach(function (cell) {
      var uid = Number(cell.dataset.callCell);
      var k = d.calls.find(function (x) { return x.answered_user_id === uid; });
      cell.textContent = "";
      if (k) {
        cell.dataset.since = k.answered_ms;
        cell.appendChild(party(k));
        cell.appendChild(document.createTextNode(" "));
        cell.appendChild(el("span", "call-timer"));
      } else {
        delete cell.dataset.since;
      }
    });
    tick();
  }

  function tick() {
    var now = Date.now() + skew;
    document.querySelectorAll("[data-since] .call-timer").forEach(function (tm) {
      var since = Number(tm.parentNode.dataset.since);
      if (since) tm.textContent = clock(now - since);
    });
  }
  setInterval(tick, 1000);
  tick();

  document.addEventListener("crm:live", function (e) {
    var m = e.detail;
    if (!m || !m.data) return;
    if (m.type === "call.ringing") onRinging(m.data);
    else if (m.type === "call.answered") onAnswered(m.data);
    else if (m.type === "call.ended") onEnded(m.data);
    else if (m.type === "call.live") onLive(m.data);
  });

  // Alt+C: the caller's customer (or a new one with the number); Alt+O: a new order for
  // them; Esc: hide the newest card. Only while a card is up.
  document.addEventListener("keydown", function (e) {
    var top = pops.querySelector(".call-pop:not(.answered-elsewhere)") || pops.querySelector(".call-pop");
    if (!top || !top._call) return;
    var d = top._call;
    var k = (e.key || "").toLowerCase();
    if (e.altKey && (k === "c" || e.code === "KeyC")) {
      if (t.canCustomers === "1" || (!d.customer && t.canEditCustomers === "1")) { e.preventDefault(); location.href = customerUrl(d); }
    } else if (e.altKey && (k === "o" || e.code === "KeyO")) {
      if (t.canOrders === "1") { e.preventDefault(); location.href = orderUrl(d); }
    } else if (k === "escape") {
      top.remove();
    }
  });
})();
