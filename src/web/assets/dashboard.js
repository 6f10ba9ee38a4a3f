// rentabot dashboard: served by rentabot at /static/dashboard.js (no build step, no
// dependencies). Keeps the server-rendered page live:
// - listens to the event stream (/api/v1/events) and, on any event, fetches the live
//   part again (/dashboard/fragment with the page's own query), at most 4 times a
//   second, and swaps it in; <body data-live> says whether the stream is open and
//   data-last-event the last event whose change the page shows;
// - ticks countdowns (time.countdown) and waits (time.elapsed) each second, marks a
//   row `warn` inside the expiry warning, and writes times in the browser's local time;
// - the operator buttons call the JSON API with the key typed into #api-key.
// With auth on, a page loaded without a key (<body data-auth="key">) shows no lab data:
// the script then sends the typed key as X-API-Key on its reads, and reads the event
// stream with fetch() (EventSource cannot send a header).
(function () {
  "use strict";

  var EVENT_TYPES = [
    "locked", "extended", "unlocked", "expired", "reservation_created",
    "reservation_fulfilled", "reservation_claimed", "reservation_ended",
    "force_unlocked", "maintenance_scheduled", "maintenance_started",
    "maintenance_ended", "resource_added", "resource_updated", "resource_retiring",
    "resource_removed", "lagged"
  ];
  var MIN_INTERVAL_MS = 250; // at most 4 refreshes a second
  // A backstop for what changes with time alone and sends no event (a waiter's aged
  // priority, the estimates): refresh every 30 s anyway.
  var BACKSTOP_MS = 30000;
  var KEY_STORAGE = "rentabot-api-key";

  var body = document.body;
  var live = document.getElementById("live");
  var warningMs = Number(body.getAttribute("data-warning") || "300") * 1000;
  var fragmentPath = body.getAttribute("data-fragment") || "/dashboard/fragment";
  var needKey = body.getAttribute("data-auth") === "key";
  // Server time minus browser time: countdowns follow the server's clock.
  var skewMs = 0;

  var lastSeen = null;    // the newest event id received
  var inFlight = false;
  var dirty = false;
  var lastStart = 0;
  var timer = null;

  function pad(n) { return (n < 10 ? "0" : "") + n; }

  // Whole seconds: "1h 02m 03s", "4m 05s", "12s" (the server renders the same).
  function formatDuration(ms) {
    var secs = Math.max(0, Math.floor(ms / 1000));
    var h = Math.floor(secs / 3600), m = Math.floor(secs / 60) % 60, s = secs % 60;
    if (h > 0) { return h + "h " + pad(m) + "m " + pad(s) + "s"; }
    if (m > 0) { return m + "m " + pad(s) + "s"; }
    return s + "s";
  }

  function serverNow() { return Date.now() + skewMs; }

  function readSkew() {
    var overview = document.getElementById("overview");
    var now = overview && Number(overview.getAttribute("data-now"));
    if (now) { skewMs = now - Date.now(); }
  }

  function setText(el, text) {
    if (el.textContent !== text) { el.textContent = text; }
  }

  // Every 250 ms, so that a display changes within a quarter second of the second it
  // shows (a 1 s timer out of phase with the deadline would lag up to a second).
  var TICK_MS = 250;

  function tick() {
    var now = serverNow();
    var countdowns = document.querySelectorAll("time.countdown");
    for (var i = 0; i < countdowns.length; i++) {
      var el = countdowns[i];
      var left = Date.parse(el.getAttribute("datetime")) - now;
      setText(el, left > 0 ? formatDuration(left) + " left" : "expiring");
      var row = el.closest("tr");
      if (row) { row.classList.toggle("warn", left <= warningMs); }
    }
    var waits = document.querySelectorAll("time.elapsed");
    for (var j = 0; j < waits.length; j++) {
      var since = Date.parse(waits[j].getAttribute("datetime"));
      setText(waits[j], formatDuration(now - since));
    }
  }

  function localTimes(root) {
    var times = root.querySelectorAll("time.local, time.rendered");
    for (var i = 0; i < times.length; i++) {
      var d = new Date(times[i].getAttribute("datetime"));
      if (!isNaN(d.getTime())) {
        times[i].textContent = d.toLocaleString();
        times[i].title = times[i].getAttribute("datetime");
      }
    }
  }

  function refresh() {
    timer = null;
    if (inFlight) { dirty = true; return; }
    inFlight = true;
    dirty = false;
    lastStart = Date.now();
    var shown = lastSeen;
    var h = { "Accept": "text/html" };
    if (needKey) {
      if (!currentKey()) { inFlight = false; return; }
      h["X-API-Key"] = currentKey();
    }
    fetch(fragmentPath + window.location.search, {
      headers: h,
      cache: "no-store",
      credentials: "same-origin"
    }).then(function (response) {
      if (!response.ok) {
        return response.text().then(function (text) {
          var message = text;
          try { message = JSON.parse(text).message || text; } catch (e) { /* not JSON */ }
          if (needKey) { statusLine.textContent = "Refused: " + response.status + " " + message; }
          throw new Error("HTTP " + response.status);
        });
      }
      return response.text();
    }).then(function (html) {
      live.innerHTML = html;
      readSkew();
      localTimes(live);
      tick();
      if (shown !== null) { body.setAttribute("data-last-event", shown); }
    }).catch(function () {
      // Keep what is shown; the next event tries again.
    }).then(function () {
      inFlight = false;
      if (dirty) { schedule(); }
    });
  }

  // Debounced: a burst of events costs one fetch per MIN_INTERVAL_MS.
  function schedule() {
    if (timer !== null) { return; }
    if (inFlight) { dirty = true; return; }
    var wait = Math.max(0, MIN_INTERVAL_MS - (Date.now() - lastStart));
    timer = window.setTimeout(refresh, wait);
  }

  function listen() {
    if (needKey) { listenWithKey(); return; }
    if (!window.EventSource) { return; }
    body.setAttribute("data-live", "connecting");
    var source = new EventSource("/api/v1/events");
    var opened = false;
    source.onopen = function () {
      body.setAttribute("data-live", "live");
      // After a reconnection, what happened in between is replayed (Last-Event-ID);
      // refresh anyway in case the stream could not keep it all.
      if (opened) { schedule(); }
      opened = true;
    };
    source.onerror = function () {
      body.setAttribute("data-live", source.readyState === EventSource.CLOSED ? "off" : "connecting");
    };
    var onEvent = function (event) {
      if (event.lastEventId) { lastSeen = event.lastEventId; }
      schedule();
    };
    for (var i = 0; i < EVENT_TYPES.length; i++) {
      source.addEventListener(EVENT_TYPES[i], onEvent);
    }
    source.onmessage = onEvent;
  }

  // The event stream read with fetch(), so that it carries the key: the same frames as
  // EventSource parses (id, event, data, blank line), reconnecting with Last-Event-ID.
  var streamAbort = null;
  var RETRY_MS = 3000;

  function listenWithKey() {
    if (streamAbort) { streamAbort.abort(); streamAbort = null; }
    var key = currentKey();
    if (!key || !window.fetch || !window.AbortController || !window.TextDecoder) {
      body.setAttribute("data-live", "off");
      return;
    }
    var controller = new AbortController();
    streamAbort = controller;
    body.setAttribute("data-live", "connecting");
    var h = { "Accept": "text/event-stream", "X-API-Key": key };
    if (lastSeen !== null) { h["Last-Event-ID"] = lastSeen; }
    fetch("/api/v1/events", { headers: h, signal: controller.signal, cache: "no-store" })
      .then(function (response) {
        if (!response.ok || !response.body) {
          body.setAttribute("data-live", "off");
          return response.text().then(function (text) {
            var message = text;
            try { message = JSON.parse(text).message || text; } catch (e) { /* not JSON */ }
            statusLine.textContent = "Refused: " + response.status + " " + message;
            controller.abort();
          });
        }
        body.setAttribute("data-live", "live");
        schedule();
        var reader = response.body.getReader();
        var decoder = new TextDecoder();
        var buffer = "";
        var id = null;
        var any = false;
        function line(text) {
          if (text === "") {
            if (any) {
              if (id !== null) { lastSeen = id; }
              schedule();
            }
            id = null;
            any = false;
          } else if (text.charAt(0) === ":") {
            // A comment: the keep-alive.
          } else if (text.indexOf("id:") === 0) {
            id = text.slice(3).trim();
            any = true;
          } else {
            any = true;
          }
        }
        function pump() {
          return reader.read().then(function (chunk) {
            if (chunk.done) { throw new Error("the stream ended"); }
            buffer += decoder.decode(chunk.value, { stream: true });
            var lines = buffer.split(/\r\n|\r|\n/);
            buffer = lines.pop();
            for (var i = 0; i < lines.length; i++) { line(lines[i]); }
            return pump();
          });
        }
        return pump();
      })
      .catch(function () {
        if (controller.signal.aborted) { return; }
        body.setAttribute("data-live", "connecting");
        window.setTimeout(function () {
          if (streamAbort === controller) { listenWithKey(); }
        }, RETRY_MS);
      });
  }

  // Operator actions.
  var keyInput = document.getElementById("api-key");
  var reasonInput = document.getElementById("action-reason");
  var statusLine = document.getElementById("action-status");

  function restoreKey() {
    try {
      var saved = window.sessionStorage.getItem(KEY_STORAGE);
      if (saved && keyInput && !keyInput.value) { keyInput.value = saved; }
    } catch (e) { /* storage may be off */ }
  }

  function saveKey() {
    try {
      if (keyInput.value) { window.sessionStorage.setItem(KEY_STORAGE, keyInput.value); }
      else { window.sessionStorage.removeItem(KEY_STORAGE); }
    } catch (e) { /* storage may be off */ }
  }

  function currentKey() { return keyInput ? keyInput.value.trim() : ""; }

  function headers(json) {
    var h = { "Accept": "application/json" };
    if (json) { h["Content-Type"] = "application/json"; }
    if (keyInput && keyInput.value) { h["X-API-Key"] = keyInput.value; }
    return h;
  }

  function call(method, path, payload, extra) {
    var h = headers(payload !== undefined);
    if (extra) { for (var k in extra) { h[k] = extra[k]; } }
    return fetch(path, {
      method: method,
      headers: h,
      body: payload === undefined ? undefined : JSON.stringify(payload),
      credentials: "same-origin",
      cache: "no-store"
    }).then(function (response) {
      return response.text().then(function (text) {
        var data = null;
        try { data = JSON.parse(text); } catch (e) { data = null; }
        return { ok: response.ok, status: response.status, data: data, text: text };
      });
    });
  }

  function report(result, what) {
    var message = result.data && result.data.message ? result.data.message : result.text;
    if (result.ok) {
      statusLine.textContent = "Done: " + what + (message ? " (" + message + ")" : "");
    } else {
      statusLine.textContent = "Refused: " + result.status + " " + (message || "");
    }
  }

  function reason(fallback) {
    var r = reasonInput && reasonInput.value.trim();
    return r || fallback;
  }

  function act(button) {
    var action = button.getAttribute("data-action");
    var id = button.getAttribute("data-id");
    var base = "/api/v1/resources/" + encodeURIComponent(id);
    var row = button.closest("tr");
    var name = row ? row.getAttribute("data-name") : id;
    var done;
    statusLine.textContent = "Working: " + action + " " + name + "…";
    if (action === "unavailable") {
      done = call("POST", base + "/unavailable", { reason: reason("maintenance from the dashboard") })
        .then(function (r) { report(r, name + " marked unavailable"); });
    } else if (action === "available") {
      done = call("POST", base + "/available")
        .then(function (r) { report(r, name + " marked available"); });
    } else if (action === "force-unlock") {
      done = call("POST", base + "/force-unlock", { reason: reason("force-unlocked from the dashboard") })
        .then(function (r) { report(r, name + " force-unlocked"); });
    } else if (action === "unlock") {
      // The token shows only to the lock's owner (and admins): read it with the key,
      // then unlock with it. Anyone else is refused by the API.
      done = call("GET", base).then(function (r) {
        if (!r.ok) { report(r, ""); return null; }
        var token = r.data && r.data.resource ? r.data.resource["lock-token"] : "";
        var extra = token && token !== "<hidden>" ? { "X-Lock-Token": token } : undefined;
        return call("POST", base + "/unlock", undefined, extra)
          .then(function (u) { report(u, name + " unlocked"); });
      });
    } else {
      return;
    }
    done.catch(function (e) {
      statusLine.textContent = "Refused: 0 " + e;
    }).then(schedule);
  }

  document.addEventListener("click", function (event) {
    var button = event.target.closest ? event.target.closest("button[data-action]") : null;
    if (button) { act(button); }
  });

  restoreKey();
  var keyTimer = null;
  if (keyInput) {
    keyInput.addEventListener("input", function () {
      saveKey();
      if (!needKey) { return; }
      // A new key: read the lab and the stream with it (once typing pauses).
      if (keyTimer !== null) { window.clearTimeout(keyTimer); }
      keyTimer = window.setTimeout(function () {
        keyTimer = null;
        statusLine.textContent = "";
        listenWithKey();
      }, 400);
    });
  }
  readSkew();
  localTimes(document);
  tick();
  window.setInterval(tick, TICK_MS);
  window.setInterval(schedule, BACKSTOP_MS);
  listen();
})();
