// The browser softphone (issue 16): JsSIP over the box's SIP WebSocket (/sip/ws, signed
// in by this page's session), media by WebRTC to the box, which relays it to the desk
// phones and the trunk. Loaded only for a user with an extension (see layout.rs).
(function () {
  "use strict";
  var root = document.getElementById("softphone");
  if (!root || !window.JsSIP) return;
  var d = root.dataset;
  var $ = function (id) { return document.getElementById(id); };
  var state = $("sp-state"), status = $("sp-status"), audio = $("sp-audio");
  var bAnswer = $("sp-answer"), bHangup = $("sp-hangup"), bMute = $("sp-mute"), bHold = $("sp-hold");
  var fTransfer = $("sp-transfer");
  var session = null, ring = null;
  var media = { mediaConstraints: { audio: true, video: false }, pcConfig: { iceServers: [] } };

  function setState(s) { state.dataset.state = s; state.textContent = d["t" + s.charAt(0).toUpperCase() + s.slice(1)] || s; }
  function say(t) { status.textContent = t || ""; }
  function uri(n) { return "sip:" + String(n).replace(/[^0-9*#+]/g, "") + "@" + d.domain; }

  // The ring: two tones, one second on, three off, made by WebAudio (no file).
  function ringStart() {
    if (ring) return;
    var Ctx = window.AudioContext || window.webkitAudioContext;
    if (!Ctx) return;
    var ctx = new Ctx(), gain = ctx.createGain();
    gain.gain.value = 0;
    gain.connect(ctx.destination);
    [440, 480].forEach(function (f) { var o = ctx.createOscillator(); o.frequency.value = f; o.connect(gain); o.start(); });
    var on = function () { var t = ctx.currentTime; gain.gain.setValueAtTime(0.15, t); gain.gain.setValueAtTime(0, t + 1); };
    on();
    ring = { ctx: ctx, timer: setInterval(on, 4000) };
  }
  function ringStop() {
    if (!ring) return;
    clearInterval(ring.timer);
    ring.ctx.close();
    ring = null;
  }

  function buttons() {
    var live = !!session, up = live && session.isEstablished();
    bAnswer.hidden = !(live && session.direction === "incoming" && !up);
    bHangup.hidden = !live;
    bMute.hidden = bHold.hidden = fTransfer.hidden = !up;
    if (up) {
      bMute.textContent = session.isMuted().audio ? d.tUnmute : d.tMute;
      bHold.textContent = session.isOnHold().local ? d.tResume : d.tHold;
    }
    root.classList.toggle("sp-busy", live);
    cardButtons();
  }

  function attach(pc) {
    pc.addEventListener("track", function (e) { if (e.streams && e.streams[0]) audio.srcObject = e.streams[0]; });
  }

  function track(s) {
    session = s;
    s.on("peerconnection", function (e) { attach(e.peerconnection); });
    if (s.connection) attach(s.connection);
    s.on("progress", function () { if (s.direction === "outgoing") say(d.tCalling); });
    s.on("accepted", function () { ringStop(); say(d.tInCall); buttons(); });
    s.on("confirmed", function () { say(d.tInCall); buttons(); });
    ["muted", "unmuted", "hold", "unhold"].forEach(function (ev) { s.on(ev, buttons); });
    var done = function (e) {
      ringStop();
      if (session === s) session = null;
      // JsSIP's cause (Busy, Rejected, User Denied Media Access...) after the words.
      say(d.tEnded + (e && e.cause && e.cause !== "Terminated" && e.cause !== "BYE" ? " (" + e.cause + ")" : ""));
      buttons();
    };
    s.on("ended", done);
    s.on("failed", done);
    buttons();
  }

  // Answer and hang up on the screen-pop card of the call ringing here too.
  function cardButtons() {
    var pops = document.querySelectorAll(".call-pop");
    pops.forEach(function (c) { var x = c.querySelector(".sp-card"); if (x) x.remove(); });
    if (!session || session.isEnded()) return;
    var id = session.request && session.request.call_id;
    var card = Array.prototype.find.call(pops, function (c) { return c.dataset.callId === id; }) || pops[pops.length - 1];
    if (!card) return;
    var box = document.createElement("div");
    box.className = "sp-card";
    if (!bAnswer.hidden) {
      var a = document.createElement("button");
      a.type = "button"; a.className = "sp-card-answer"; a.textContent = d.tAnswer;
      a.addEventListener("click", answer);
      box.appendChild(a);
    }
    var h = document.createElement("button");
    h.type = "button"; h.className = "sp-card-hangup"; h.textContent = d.tHangup;
    h.addEventListener("click", hangup);
    box.appendChild(h);
    card.appendChild(box);
  }
  var pops = document.getElementById("call-pops");
  if (pops) new MutationObserver(function (m) {
    if (m.some(function (r) { return Array.prototype.some.call(r.addedNodes, function (n) { return n.classList && n.classList.contains("call-pop"); }); })) cardButtons();
  }).observe(pops, { childList: true });

  function answer() { if (session && !session.isEstablished()) { ringStop(); session.answer(media); } }
  function hangup() { if (session) session.terminate(); }

  if (!navigator.mediaDevices || !window.RTCPeerConnection) {
    setState("failed");
    say(d.tNoMic);
    return;
  }

  var proto = location.protocol === "https:" ? "wss:" : "ws:";
  var ua = new JsSIP.UA({
    sockets: [new JsSIP.WebSocketInterface(proto + "//" + location.host + d.ws)],
    uri: "sip:" + d.ext + "@" + d.domain,
    register: true,
    register_expires: 600,
    session_timers: false,
    user_agent: "crm-softphone"
  });
  ua.on("connecting", function () { setState("connecting"); });
  ua.on("disconnected", function () { setState("offline"); });
  ua.on("registered", function () { setState("ready"); });
  ua.on("unregistered", function () { setState("offline"); });
  ua.on("registrationFailed", function () { setState("failed"); });
  ua.on("newRTCSession", function (e) {
    if (e.originator === "remote") {
      if (session) { e.session.terminate({ status_code: 486 }); return; }
      track(e.session);
      say(d.tIncoming + ": " + (e.request.from.uri.user || ""));
      root.open = true;
      ringStart();
    }
  });
  setState("connecting");
  ua.start();

  $("sp-dial").addEventListener("submit", function (e) {
    e.preventDefault();
    var n = $("sp-number").value.trim();
    if (!n || session) return;
    track(ua.call(uri(n), media));
    say(d.tCalling);
  });
  bAnswer.addEventListener("click", answer);
  bHangup.addEventListener("click", hangup);
  bMute.addEventListener("click", function () {
    if (!session) return;
    if (session.isMuted().audio) session.unmute({ audio: true }); else session.mute({ audio: true });
  });
  bHold.addEventListener("click", function () {
    if (!session) return;
    if (session.isOnHold().local) session.unhold(); else session.hold();
  });
  fTransfer.addEventListener("submit", function (e) {
    e.preventDefault();
    var n = $("sp-transfer-to").value.trim();
    if (session && n) session.refer(uri(n));
  });
  $("sp-keypad").addEventListener("click", function (e) {
    var k = e.target.dataset && e.target.dataset.dtmf;
    if (!k) return;
    if (session && session.isEstablished()) session.sendDTMF(k, { transportType: "RFC2833" });
    else $("sp-number").value += k;
  });
  window.addEventListener("beforeunload", function () { ua.stop(); });
  // For tests and the curious: the UA's state.
  root.softphone = { ua: ua, current: function () { return session; } };
})();
