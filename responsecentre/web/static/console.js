/* Operator console and login page. Plain JavaScript, no dependencies, no build step.
 *
 * One script for both pages (chosen by <body data-page>), so neither page needs an inline
 * script and a strict Content-Security-Policy (script-src 'self') works.
 *
 * The queue is kept as a Map id -> alarm. The WebSocket /ws first sends a snapshot of all
 * open alarms (which replaces the Map), then one message per change; an alarm that is
 * resolved or cancelled leaves the queue. On a lost connection the banner says so at once
 * and the client reconnects with backoff (0.5 s doubling to 5 s, forever); the new snapshot
 * replaces the list, so no update is lost.
 */
(function () {
  "use strict";

  // ---------------------------------------------------------------------------------------
  // Every user-visible string. Add a language by adding a key (e.g. `nb`) with the same
  // keys; the page's language is <html lang> or localStorage "rc.lang".
  // ---------------------------------------------------------------------------------------
  var STRINGS = {
    en: {
      locale: "en-GB",
      product: "Response centre",
      skip: "Skip to the alarm queue",
      "doc.title": "Response centre",
      "doc.titleCount": "({count}) Response centre",
      "header.open": "Open alarms",
      "header.logout": "Log out",
      "conn.connecting": "Connecting…",
      "conn.live": "Connected — live",
      "conn.lost": "Connection lost — reconnecting… The list may be out of date.",
      "conn.never": "Cannot reach the server — reconnecting…",
      "notice.dismiss": "Dismiss",
      "queue.title": "Alarm queue",
      "queue.empty": "No open alarms.",
      "queue.stale": "The list may be out of date until the connection is back.",
      "keys.help": "Keys: j / k move · Enter details · a acknowledge · r resolve · Esc close",
      "col.priority": "Priority",
      "col.kind": "Alarm",
      "col.home": "Home",
      "col.zone": "Zone",
      "col.state": "State",
      "col.step": "Step",
      "col.waiting": "Waiting",
      "col.triggers": "Triggers",
      "col.actions": "Actions",
      unhandled: "UNHANDLED",
      "step.round": "round {round}",
      "action.ack": "Acknowledge",
      "action.resolve": "Resolve",
      "action.ackLabel": "Acknowledge {kind} alarm at {home}",
      "action.resolveLabel": "Resolve {kind} alarm at {home}",
      "action.acked": "Acknowledged: {kind} at {home}.",
      "action.resolved": "Resolved: {kind} at {home}.",
      "announce.new": "New {priority} alarm: {kind} at {home}.",
      "announce.unhandled": "Alarm UNHANDLED: {kind} at {home}.",
      "detail.close": "Close",
      "detail.timeline": "Timeline",
      "detail.loading": "Loading…",
      "detail.failed": "Could not load the alarm details.",
      "detail.closed": "This alarm is no longer in the queue.",
      "detail.title": "{kind} — {home}",
      "detail.noTimeline": "No entries yet.",
      "field.priority": "Priority",
      "field.state": "State",
      "field.home": "Home",
      "field.zone": "Zone",
      "field.chain": "Alert chain",
      "field.rule": "Rule",
      "field.raised": "Raised",
      "field.waiting": "Waiting",
      "field.acknowledged": "Acknowledged",
      "field.triggers": "Triggers",
      "field.ackBy": "{time} by {who}",
      "chain.value": "{chain}, step {step} of {steps}",
      "resolve.title": "Resolve alarm",
      "resolve.code": "Closing code",
      "resolve.note": "Note (optional)",
      "resolve.cancel": "Cancel",
      "resolve.submit": "Resolve",
      "resolve.choose": "Choose a closing code…",
      "resolve.noCodes": "Could not load the closing codes. Try again.",
      "resolve.needCode": "Choose a closing code.",
      "error.generic": "Something went wrong ({status}). Try again.",
      "error.network": "The server did not answer. Check the connection and try again.",
      "error.conflict": "Not possible now: {detail}",
      "error.forbidden": "Not allowed: {detail}",
      "error.notFound": "The alarm is no longer there.",
      "login.title": "Sign in",
      "login.username": "User name",
      "login.password": "Password",
      "login.submit": "Sign in",
      "login.error": "Wrong user name or password. Try again.",
      priority: { critical: "Critical", high: "High", medium: "Medium", low: "Low" },
      state: {
        raised: "Raised",
        acknowledged: "Acknowledged",
        en_route: "En route",
        on_site: "On site",
        resolved: "Resolved",
        cancelled: "Cancelled"
      },
      kind: {
        fall: "Fall",
        alarm_button: "Safety alarm",
        button: "Safety alarm",
        safety_alarm: "Safety alarm",
        wandering: "Wandering",
        missed_dose: "Missed dose",
        inactivity: "Inactivity",
        device_offline: "Device offline",
        low_battery: "Low battery",
        cold_home: "Cold home",
        smoke: "Smoke",
        water_leak: "Water leak",
        seizure: "Seizure",
        geofence: "Left safe area",
        tamper: "Device tampered with",
        assistance: "Safety alarm",
        fire: "Fire",
        door_open: "Door left open",
        dispenser_empty: "Dispenser empty",
        repeated_falls: "Repeated falls",
        night_wandering: "Restless at night",
        not_back_in_bed: "Not back in bed",
        hot_home: "Hot home",
        stove_heat: "Stove heat",
        medication_review: "Doses missed this week",
        battery_critical: "Battery almost flat"
      },
      what: {
        raised: "Raised",
        trigger: "Trigger",
        notified: "Notified",
        escalated: "Escalated",
        acknowledged: "Acknowledged",
        accepted: "Accepted",
        declined: "Declined",
        en_route: "En route",
        on_site: "On site",
        reply_rejected: "Reply rejected",
        resolved: "Resolved",
        cancelled: "Cancelled",
        unhandled: "UNHANDLED — alert chain exhausted",
        note: "Note"
      }
    }
  };

  var PRIORITY_RANK = { critical: 0, high: 1, medium: 2, low: 3 };
  var CLOSED_STATES = { resolved: true, cancelled: true };
  var BACKOFF_MIN_MS = 500;
  var BACKOFF_MAX_MS = 5000;
  var LOGIN_URL = "/login?next=/console";

  function pickLanguage() {
    var stored = null;
    try {
      stored = window.localStorage.getItem("rc.lang");
    } catch (e) {
      stored = null;
    }
    var lang = stored || document.documentElement.lang || "en";
    if (!STRINGS[lang]) lang = lang.split("-")[0];
    return STRINGS[lang] ? lang : "en";
  }

  var LANG = pickLanguage();
  var S = STRINGS[LANG];

  /** The string for `key` (dotted keys are flat; `a.b` looks up S["a.b"] then S.a.b). */
  function lookup(key) {
    if (Object.prototype.hasOwnProperty.call(S, key)) return S[key];
    var dot = key.indexOf(".");
    if (dot > 0) {
      var group = S[key.slice(0, dot)];
      if (group && typeof group === "object" && Object.prototype.hasOwnProperty.call(group, key.slice(dot + 1))) {
        return group[key.slice(dot + 1)];
      }
    }
    if (STRINGS.en !== S) {
      var fallback = STRINGS.en[key];
      if (typeof fallback === "string") return fallback;
    }
    return null;
  }

  function t(key, params) {
    var text = lookup(key);
    if (typeof text !== "string") text = key;
    if (params) {
      text = text.replace(/\{(\w+)\}/g, function (match, name) {
        return Object.prototype.hasOwnProperty.call(params, name) ? String(params[name]) : match;
      });
    }
    return text;
  }

  function humanize(code) {
    var text = String(code || "").replace(/[_.]+/g, " ").trim();
    return text ? text.charAt(0).toUpperCase() + text.slice(1) : "";
  }

  function label(group, code) {
    var table = S[group] || {};
    if (Object.prototype.hasOwnProperty.call(table, code)) return table[code];
    var en = STRINGS.en[group] || {};
    if (Object.prototype.hasOwnProperty.call(en, code)) return en[code];
    return humanize(code);
  }

  function applyStrings(root) {
    document.documentElement.lang = LANG;
    var nodes = root.querySelectorAll("[data-i18n]");
    for (var i = 0; i < nodes.length; i++) {
      var text = lookup(nodes[i].getAttribute("data-i18n"));
      if (typeof text === "string") nodes[i].textContent = text;
    }
  }

  // ---------------------------------------------------------------------------------------
  // Small helpers
  // ---------------------------------------------------------------------------------------

  function $(id) {
    return document.getElementById(id);
  }

  function el(tag, attrs, children) {
    var node = document.createElement(tag);
    if (attrs) {
      for (var name in attrs) {
        if (!Object.prototype.hasOwnProperty.call(attrs, name) || attrs[name] == null) continue;
        if (name === "text") node.textContent = attrs[name];
        else if (name === "className") node.className = attrs[name];
        else node.setAttribute(name, attrs[name]);
      }
    }
    if (children) {
      for (var i = 0; i < children.length; i++) {
        if (children[i] != null) node.appendChild(children[i]);
      }
    }
    return node;
  }

  function readCookie(name) {
    var parts = document.cookie ? document.cookie.split(";") : [];
    for (var i = 0; i < parts.length; i++) {
      var part = parts[i].trim();
      var eq = part.indexOf("=");
      if (eq > 0 && part.slice(0, eq) === name) {
        try {
          return decodeURIComponent(part.slice(eq + 1));
        } catch (e) {
          return part.slice(eq + 1);
        }
      }
    }
    return "";
  }

  function parseTime(value) {
    if (value == null || value === "") return NaN;
    if (typeof value === "number") return value;
    return Date.parse(value);
  }

  function pad2(n) {
    return n < 10 ? "0" + n : String(n);
  }

  /** Waiting time: mm:ss, or h:mm:ss from an hour on. */
  function formatWaiting(ms) {
    if (!isFinite(ms) || ms < 0) ms = 0;
    var total = Math.floor(ms / 1000);
    var h = Math.floor(total / 3600);
    var m = Math.floor((total % 3600) / 60);
    var s = total % 60;
    return h > 0 ? h + ":" + pad2(m) + ":" + pad2(s) : pad2(m) + ":" + pad2(s);
  }

  var timeFormat = new Intl.DateTimeFormat(S.locale, { hour: "2-digit", minute: "2-digit", second: "2-digit", hour12: false });
  var dateTimeFormat = new Intl.DateTimeFormat(S.locale, {
    day: "2-digit", month: "short", hour: "2-digit", minute: "2-digit", second: "2-digit", hour12: false
  });

  function formatClock(value) {
    var ms = parseTime(value);
    if (!isFinite(ms)) return "";
    var d = new Date(ms);
    var today = new Date();
    return d.toDateString() === today.toDateString() ? timeFormat.format(d) : dateTimeFormat.format(d);
  }

  // ---------------------------------------------------------------------------------------
  // Login page
  // ---------------------------------------------------------------------------------------

  function safeNext(value) {
    // Only a path on this site: "/console", never "//evil.example" or "https://...".
    if (typeof value !== "string" || value.charAt(0) !== "/" || value.charAt(1) === "/" || value.charAt(1) === "\\") {
      return "/console";
    }
    return value;
  }

  function initLogin() {
    applyStrings(document);
    document.title = t("login.title") + " — " + t("product");
    var params = new URLSearchParams(window.location.search);
    $("login-next").value = safeNext(params.get("next"));
    if (params.get("error")) {
      $("login-error").hidden = false;
      $("login-username").focus();
    }
  }

  // ---------------------------------------------------------------------------------------
  // Console state
  // ---------------------------------------------------------------------------------------

  var alarms = new Map(); // id -> Alarm (open alarms only)
  var rows = new Map(); // id -> <tr>
  var selectedId = null;
  var detailId = null; // the alarm shown in the side panel
  var detailAlarm = null;
  var detailToken = 0;
  var detailTimer = null;
  var haveSnapshot = false;
  var everConnected = false;
  var lastPosition = null; // opaque feed position (room for resume-from-position later)
  var socket = null;
  var backoffMs = BACKOFF_MIN_MS;
  var reconnectTimer = null;
  var failedAttempts = 0;
  var closingCodes = null;
  var resolveTarget = null;
  var pending = {}; // "ack:ID" -> true while a request is in flight
  var noticeTimer = null;

  function isOpen(alarm) {
    return alarm && !CLOSED_STATES[alarm.state];
  }

  function compareAlarms(a, b) {
    var ua = a.unhandled ? 0 : 1;
    var ub = b.unhandled ? 0 : 1;
    if (ua !== ub) return ua - ub;
    var pa = Object.prototype.hasOwnProperty.call(PRIORITY_RANK, a.priority) ? PRIORITY_RANK[a.priority] : 9;
    var pb = Object.prototype.hasOwnProperty.call(PRIORITY_RANK, b.priority) ? PRIORITY_RANK[b.priority] : 9;
    if (pa !== pb) return pa - pb;
    var ta = parseTime(a.raised_at);
    var tb = parseTime(b.raised_at);
    if (isFinite(ta) && isFinite(tb) && ta !== tb) return ta - tb;
    return a.id < b.id ? -1 : a.id > b.id ? 1 : 0;
  }

  function sortedAlarms() {
    var list = Array.from(alarms.values());
    list.sort(compareAlarms);
    return list;
  }

  function homeText(alarm) {
    return alarm.home_id || "";
  }

  function kindText(alarm) {
    return label("kind", alarm.kind);
  }

  function stepText(alarm) {
    if (!alarm.steps) return "–";
    var text = (alarm.step || 0) + "/" + alarm.steps;
    if (alarm.round) text += " · " + t("step.round", { round: alarm.round + 1 });
    return text;
  }

  function waitingMs(alarm) {
    return Date.now() - parseTime(alarm.raised_at);
  }

  // ---------------------------------------------------------------------------------------
  // Rendering the queue
  // ---------------------------------------------------------------------------------------

  var COLUMNS = ["priority", "kind", "home", "zone", "state", "step", "waiting", "triggers", "actions"];

  function buildRow(id) {
    // Explicit roles: at narrow widths (200 % zoom) CSS lays rows out as cards, and some
    // browsers drop table semantics when a row's display changes.
    var tr = el("tr", { className: "alarm", role: "row", "data-alarm-id": id, tabindex: "-1" });
    for (var i = 0; i < COLUMNS.length; i++) {
      // data-label: the column's name, shown above the value in the card layout.
      tr.appendChild(el("td", { className: "c-" + COLUMNS[i], role: "cell", "data-label": t("col." + COLUMNS[i]) }));
    }
    return tr;
  }

  function fillRow(tr, alarm) {
    var cells = tr.children;
    tr.setAttribute("data-state", alarm.state);
    tr.setAttribute("data-priority", alarm.priority);
    tr.setAttribute("data-unhandled", alarm.unhandled ? "true" : "false");
    tr.className = "alarm" + (alarm.unhandled ? " unhandled" : "") +
      (alarm.id === selectedId ? " selected" : "") + (tr.classList.contains("fresh") ? " fresh" : "");
    tr.setAttribute("aria-selected", alarm.id === selectedId ? "true" : "false");

    var prio = cells[0];
    prio.textContent = "";
    if (alarm.unhandled) prio.appendChild(el("span", { className: "badge badge-unhandled", text: t("unhandled") }));
    prio.appendChild(el("span", { className: "prio prio-" + alarm.priority, text: label("priority", alarm.priority) }));

    cells[1].textContent = kindText(alarm);
    cells[2].textContent = "";
    cells[2].appendChild(el("span", { className: "home-id", text: homeText(alarm) }));
    if (alarm.tenant) cells[2].appendChild(el("span", { className: "tenant", text: alarm.tenant }));
    cells[3].textContent = alarm.zone || "";
    cells[4].textContent = "";
    cells[4].appendChild(el("span", { className: "state state-" + alarm.state, text: label("state", alarm.state) }));
    cells[5].textContent = stepText(alarm);
    cells[6].textContent = formatWaiting(waitingMs(alarm));
    cells[7].textContent = alarm.triggers != null ? String(alarm.triggers) : "";

    var actions = cells[8];
    actions.textContent = "";
    var names = { kind: kindText(alarm), home: homeText(alarm) };
    if (alarm.state === "raised") {
      var ack = el("button", {
        type: "button", className: "btn btn-ack", "data-action": "ack",
        "aria-label": t("action.ackLabel", names), text: t("action.ack")
      });
      if (pending["ack:" + alarm.id]) ack.disabled = true;
      actions.appendChild(ack);
    }
    actions.appendChild(el("button", {
      type: "button", className: "btn btn-resolve", "data-action": "resolve",
      "aria-label": t("action.resolveLabel", names), text: t("action.resolve")
    }));

  }

  function render() {
    var body = $("queue-body");
    var list = sortedAlarms();
    var active = document.activeElement;
    var focusWasInQueue = active && body.contains(active);
    var focusedRowId = null;
    if (focusWasInQueue) {
      var focusedRow = active.closest("tr.alarm");
      focusedRowId = focusedRow ? focusedRow.getAttribute("data-alarm-id") : null;
    }

    // Drop rows of alarms that left the queue.
    rows.forEach(function (tr, id) {
      if (!alarms.has(id)) {
        tr.remove();
        rows.delete(id);
      }
    });
    if (selectedId !== null && !alarms.has(selectedId)) {
      selectedId = null;
    }

    // Place rows in order, moving a node only when it is not already in place (a moved
    // node loses focus, so as few moves as possible, and focus is restored below).
    for (var i = 0; i < list.length; i++) {
      var alarm = list[i];
      var tr = rows.get(alarm.id);
      if (!tr) {
        tr = buildRow(alarm.id);
        rows.set(alarm.id, tr);
      }
      fillRow(tr, alarm);
      var current = body.children[i];
      if (current !== tr) body.insertBefore(tr, current || null);
    }

    if (selectedId === null && list.length && focusWasInQueue) {
      selectedId = list[Math.min(list.length - 1, lastSelectedIndex)].id;
    }
    updateRovingTabindex(list);
    if (focusWasInQueue && document.activeElement !== active) {
      var target = (focusedRowId && rows.get(focusedRowId)) || (selectedId && rows.get(selectedId));
      if (target) {
        var restore = active && active.getAttribute && active.getAttribute("data-action");
        var button = restore ? target.querySelector('[data-action="' + restore + '"]') : null;
        (button || target).focus({ preventScroll: true });
      }
    }

    $("open-count").textContent = String(list.length);
    $("queue-empty").hidden = list.length > 0;
    document.title = list.length ? t("doc.titleCount", { count: list.length }) : t("doc.title");
  }

  var lastSelectedIndex = 0;

  function updateRovingTabindex(list) {
    var first = list.length ? list[0].id : null;
    var tabStop = selectedId !== null ? selectedId : first;
    rows.forEach(function (tr, id) {
      var selected = id === selectedId;
      tr.setAttribute("tabindex", id === tabStop ? "0" : "-1");
      tr.classList.toggle("selected", selected);
      tr.setAttribute("aria-selected", selected ? "true" : "false");
    });
    if (selectedId !== null) {
      for (var i = 0; i < list.length; i++) {
        if (list[i].id === selectedId) {
          lastSelectedIndex = i;
          break;
        }
      }
    }
  }

  function tick() {
    rows.forEach(function (tr, id) {
      var alarm = alarms.get(id);
      if (alarm) tr.children[6].textContent = formatWaiting(waitingMs(alarm));
    });
    if (detailAlarm) {
      var waiting = $("detail-waiting");
      if (waiting) waiting.textContent = formatWaiting(waitingMs(detailAlarm));
    }
  }

  // ---------------------------------------------------------------------------------------
  // Selection and keyboard
  // ---------------------------------------------------------------------------------------

  function select(id, opts) {
    if (id === null || !alarms.has(id)) return;
    selectedId = id;
    updateRovingTabindex(sortedAlarms());
    var tr = rows.get(id);
    if (tr && (!opts || opts.focus !== false)) {
      tr.focus({ preventScroll: true });
      tr.scrollIntoView({ block: "nearest" });
    }
    if (detailId !== null && detailId !== id && !$("detail").hidden) {
      // The panel follows the selection, a moment after the keys stop.
      clearTimeout(detailTimer);
      detailTimer = setTimeout(function () {
        openDetail(id, { focus: false });
      }, 250);
    }
  }

  function move(delta) {
    var list = sortedAlarms();
    if (!list.length) return;
    var index = -1;
    for (var i = 0; i < list.length; i++) {
      if (list[i].id === selectedId) {
        index = i;
        break;
      }
    }
    var next = index < 0 ? (delta > 0 ? 0 : list.length - 1) : Math.max(0, Math.min(list.length - 1, index + delta));
    select(list[next].id);
  }

  function isTyping(target) {
    if (!target || !target.tagName) return false;
    var tag = target.tagName;
    return tag === "INPUT" || tag === "TEXTAREA" || tag === "SELECT" || target.isContentEditable;
  }

  function onKeyDown(event) {
    if (event.defaultPrevented || event.ctrlKey || event.metaKey || event.altKey) return;
    if ($("resolve-dialog").open || isTyping(event.target)) return;
    var key = event.key;
    if (key === "j" || key === "ArrowDown") {
      if (key === "ArrowDown" && !(event.target.closest && event.target.closest("tr.alarm"))) return;
      event.preventDefault();
      move(1);
    } else if (key === "k" || key === "ArrowUp") {
      if (key === "ArrowUp" && !(event.target.closest && event.target.closest("tr.alarm"))) return;
      event.preventDefault();
      move(-1);
    } else if (key === "a") {
      if (selectedId !== null) {
        event.preventDefault();
        var alarm = alarms.get(selectedId);
        if (alarm && alarm.state === "raised") acknowledge(selectedId);
      }
    } else if (key === "r") {
      if (selectedId !== null) {
        event.preventDefault();
        openResolve(selectedId);
      }
    } else if (key === "Enter") {
      var row = event.target.closest && event.target.closest("tr.alarm");
      if (row && event.target === row) {
        event.preventDefault();
        openDetail(row.getAttribute("data-alarm-id"), { focus: true });
      }
    } else if (key === "Escape") {
      if (!$("detail").hidden) {
        event.preventDefault();
        closeDetail();
      }
    }
  }

  function onQueueClick(event) {
    var tr = event.target.closest("tr.alarm");
    if (!tr) return;
    var id = tr.getAttribute("data-alarm-id");
    var button = event.target.closest("button[data-action]");
    if (button) {
      selectedId = id;
      updateRovingTabindex(sortedAlarms());
      if (button.getAttribute("data-action") === "ack") acknowledge(id);
      else openResolve(id);
      return;
    }
    select(id, { focus: true });
    openDetail(id, { focus: false, reveal: true });
  }

  // ---------------------------------------------------------------------------------------
  // HTTP
  // ---------------------------------------------------------------------------------------

  function toLogin() {
    window.location.assign(LOGIN_URL);
  }

  /** fetch JSON; resolves {ok, status, data}; a 401 goes to the login page. */
  function api(method, path, body) {
    var headers = { Accept: "application/json" };
    var init = { method: method, headers: headers, credentials: "same-origin", cache: "no-store" };
    if (method !== "GET") {
      headers["Content-Type"] = "application/json";
      headers["X-CSRF-Token"] = readCookie("rc_csrf");
      init.body = JSON.stringify(body || {});
    }
    return fetch(path, init).then(
      function (response) {
        if (response.status === 401) {
          toLogin();
          return { ok: false, status: 401, data: null };
        }
        return response.text().then(function (text) {
          var data = null;
          try {
            data = text ? JSON.parse(text) : null;
          } catch (e) {
            data = null;
          }
          return { ok: response.ok, status: response.status, data: data };
        });
      },
      function () {
        return { ok: false, status: 0, data: null };
      }
    );
  }

  function errorText(result) {
    var detail = result.data && typeof result.data.detail === "string" ? result.data.detail : "";
    if (result.status === 0) return t("error.network");
    if (result.status === 404) return t("error.notFound");
    if (result.status === 409) return t("error.conflict", { detail: detail || result.status });
    if (result.status === 403) return t("error.forbidden", { detail: detail || result.status });
    return t("error.generic", { status: result.status });
  }

  function showNotice(text) {
    $("notice-text").textContent = text;
    $("notice").hidden = false;
    clearTimeout(noticeTimer);
    noticeTimer = setTimeout(hideNotice, 10000);
  }

  function hideNotice() {
    $("notice").hidden = true;
  }

  function announce(text) {
    var region = $("announcer");
    region.textContent = "";
    // A fresh text node after a tick, so screen readers announce a repeat too.
    setTimeout(function () {
      region.textContent = text;
    }, 50);
  }

  /** Apply an alarm the server returned (from an action or the feed). */
  function applyAlarm(alarm, fromFeed) {
    if (!alarm || !alarm.id) return;
    var known = alarms.get(alarm.id);
    if (!fromFeed) {
      // An action's answer may arrive after the feed moved on: it never brings back an
      // alarm the feed removed, nor overwrites a newer version.
      if (!known) return;
      if (known.updated_at && alarm.updated_at && parseTime(alarm.updated_at) < parseTime(known.updated_at)) return;
    }
    if (isOpen(alarm)) {
      if (!known && haveSnapshot && fromFeed) noticeNew(alarm);
      else if (known && !known.unhandled && alarm.unhandled) announce(t("announce.unhandled", { kind: kindText(alarm), home: homeText(alarm) }));
      alarms.set(alarm.id, alarm);
    } else {
      alarms.delete(alarm.id);
    }
    if (detailId === alarm.id) {
      detailAlarm = alarm;
      renderDetailFields(alarm);
      scheduleDetailRefresh();
    }
  }

  function noticeNew(alarm) {
    // A visible, calm highlight (and room for a sound per issue 6) for a new alarm.
    var id = alarm.id;
    setTimeout(function () {
      var tr = rows.get(id);
      if (!tr) return;
      tr.classList.add("fresh");
      setTimeout(function () {
        tr.classList.remove("fresh");
      }, 6000);
    }, 0);
    announce(t("announce.new", { priority: label("priority", alarm.priority), kind: kindText(alarm), home: homeText(alarm) }));
  }

  function acknowledge(id) {
    var alarm = alarms.get(id);
    if (!alarm || alarm.state !== "raised" || pending["ack:" + id]) return;
    pending["ack:" + id] = true;
    render();
    api("POST", "/api/alarms/" + encodeURIComponent(id) + "/ack", {}).then(function (result) {
      delete pending["ack:" + id];
      if (result.ok) {
        applyAlarm(result.data, false);
        announce(t("action.acked", { kind: kindText(alarm), home: homeText(alarm) }));
      } else if (result.status !== 401) {
        showNotice(errorText(result));
      }
      render();
    });
  }

  // ---------------------------------------------------------------------------------------
  // Resolve dialog
  // ---------------------------------------------------------------------------------------

  function loadClosingCodes() {
    if (closingCodes) return Promise.resolve(closingCodes);
    return api("GET", "/api/closing-codes").then(function (result) {
      if (result.ok && result.data && Array.isArray(result.data.codes)) {
        closingCodes = result.data.codes;
        return closingCodes;
      }
      return null;
    });
  }

  function fillCodes(codes) {
    var select = $("resolve-code");
    select.textContent = "";
    select.appendChild(el("option", { value: "", text: t("resolve.choose") }));
    for (var i = 0; i < codes.length; i++) {
      select.appendChild(el("option", { value: codes[i].code, text: codes[i].label || humanize(codes[i].code) }));
    }
  }

  function openResolve(id) {
    var alarm = alarms.get(id) || (detailAlarm && detailAlarm.id === id ? detailAlarm : null);
    if (!alarm || !isOpen(alarm)) return;
    resolveTarget = id;
    var dialog = $("resolve-dialog");
    $("resolve-subject").textContent = label("priority", alarm.priority) + " · " + kindText(alarm) + " · " + homeText(alarm) +
      (alarm.zone ? " (" + alarm.zone + ")" : "");
    $("resolve-note").value = "";
    $("resolve-error").hidden = true;
    $("resolve-submit").disabled = true;
    fillCodes(closingCodes || []);
    if (!dialog.open) dialog.showModal();
    $("resolve-code").focus();
    loadClosingCodes().then(function (codes) {
      if (resolveTarget !== id) return;
      if (!codes) {
        $("resolve-error").textContent = t("resolve.noCodes");
        $("resolve-error").hidden = false;
        return;
      }
      var chosen = $("resolve-code").value;
      fillCodes(codes);
      $("resolve-code").value = chosen;
      $("resolve-submit").disabled = false;
    });
  }

  function closeResolve() {
    var dialog = $("resolve-dialog");
    if (dialog.open) dialog.close();
  }

  function onResolveClosed() {
    var id = resolveTarget;
    resolveTarget = null;
    if (id && rows.get(id)) {
      rows.get(id).focus({ preventScroll: true });
      return;
    }
    focusNearestRow();
  }

  /** Focus the selected row, or the row now at the place of the one that left. */
  function focusNearestRow() {
    var list = sortedAlarms();
    if (!list.length) return;
    if (selectedId === null || !rows.get(selectedId)) {
      selectedId = list[Math.min(list.length - 1, lastSelectedIndex)].id;
      updateRovingTabindex(list);
    }
    rows.get(selectedId).focus({ preventScroll: true });
  }

  function submitResolve(event) {
    event.preventDefault();
    var id = resolveTarget;
    var code = $("resolve-code").value;
    if (!id) return closeResolve();
    if (!code) {
      $("resolve-error").textContent = t("resolve.needCode");
      $("resolve-error").hidden = false;
      $("resolve-code").focus();
      return;
    }
    var alarm = alarms.get(id) || detailAlarm;
    var note = $("resolve-note").value.trim();
    $("resolve-submit").disabled = true;
    api("POST", "/api/alarms/" + encodeURIComponent(id) + "/resolve", { code: code, note: note }).then(function (result) {
      $("resolve-submit").disabled = false;
      if (result.ok) {
        applyAlarm(result.data, false);
        if (alarm) announce(t("action.resolved", { kind: kindText(alarm), home: homeText(alarm) }));
        closeResolve();
        render();
      } else if (result.status !== 401) {
        $("resolve-error").textContent = errorText(result);
        $("resolve-error").hidden = false;
      }
    });
  }

  // ---------------------------------------------------------------------------------------
  // Detail panel
  // ---------------------------------------------------------------------------------------

  function openDetail(id, opts) {
    if (!id) return;
    clearTimeout(detailTimer);
    var panel = $("detail");
    var alarm = alarms.get(id) || null;
    var changed = detailId !== id;
    detailId = id;
    if (changed) {
      detailAlarm = alarm;
      $("timeline").textContent = "";
      $("detail-status").textContent = t("detail.loading");
    }
    panel.hidden = false;
    $("layout").classList.add("with-detail");
    if (alarm) renderDetailFields(alarm);
    if (opts && opts.focus) $("detail-title").focus();
    else if (opts && opts.reveal && window.matchMedia("(max-width: 62em)").matches) {
      panel.scrollIntoView({ block: "start" }); // one column: the panel is below the queue
    }
    fetchDetail(id);
  }

  function fetchDetail(id) {
    var token = ++detailToken;
    api("GET", "/api/alarms/" + encodeURIComponent(id)).then(function (result) {
      if (token !== detailToken || detailId !== id) return; // a newer request or another alarm
      if (!result.ok) {
        if (result.status !== 401) $("detail-status").textContent = t("detail.failed");
        return;
      }
      var alarm = result.data;
      var known = alarms.get(id);
      if (known && known.updated_at && alarm.updated_at && parseTime(known.updated_at) > parseTime(alarm.updated_at)) {
        alarm = Object.assign({}, alarm, known, { timeline: alarm.timeline });
      }
      detailAlarm = alarm;
      renderDetailFields(alarm);
      renderTimeline(alarm.timeline || []);
    });
  }

  function scheduleDetailRefresh() {
    clearTimeout(detailTimer);
    var id = detailId;
    detailTimer = setTimeout(function () {
      if (detailId === id && !$("detail").hidden) fetchDetail(id);
    }, 300);
  }

  function closeDetail() {
    clearTimeout(detailTimer);
    detailToken++;
    detailId = null;
    detailAlarm = null;
    $("detail").hidden = true;
    $("layout").classList.remove("with-detail");
    focusNearestRow();
  }

  function field(dl, key, valueNode, id) {
    dl.appendChild(el("dt", { text: t(key) }));
    var dd = el("dd", id ? { id: id } : null);
    if (typeof valueNode === "string") dd.textContent = valueNode;
    else if (valueNode) dd.appendChild(valueNode);
    dl.appendChild(dd);
  }

  function renderDetailFields(alarm) {
    $("detail-title").textContent = t("detail.title", { kind: kindText(alarm), home: homeText(alarm) });
    $("detail").setAttribute("data-alarm-id", alarm.id);
    $("detail").setAttribute("data-state", alarm.state);
    $("detail-status").textContent = isOpen(alarm) ? "" : t("detail.closed");
    var dl = $("detail-fields");
    dl.textContent = "";
    var prio = el("span", null, [
      alarm.unhandled ? el("span", { className: "badge badge-unhandled", text: t("unhandled") }) : null,
      el("span", { className: "prio prio-" + alarm.priority, text: label("priority", alarm.priority) })
    ]);
    field(dl, "field.priority", prio);
    field(dl, "field.state", label("state", alarm.state));
    field(dl, "field.home", homeText(alarm) + (alarm.tenant ? " · " + alarm.tenant : ""));
    field(dl, "field.zone", alarm.zone || "–");
    if (alarm.chain) {
      field(dl, "field.chain", t("chain.value", { chain: alarm.chain, step: alarm.step || 0, steps: alarm.steps || 0 }) +
        (alarm.round ? " · " + t("step.round", { round: alarm.round + 1 }) : ""));
    }
    if (alarm.rule) field(dl, "field.rule", alarm.rule);
    field(dl, "field.raised", formatClock(alarm.raised_at));
    if (isOpen(alarm)) field(dl, "field.waiting", formatWaiting(waitingMs(alarm)), "detail-waiting");
    if (alarm.acknowledged_at) {
      field(dl, "field.acknowledged", t("field.ackBy", { time: formatClock(alarm.acknowledged_at), who: alarm.acknowledged_by || "?" }));
    }
    field(dl, "field.triggers", alarm.triggers != null ? String(alarm.triggers) : "–");

    var actions = $("detail-actions");
    actions.textContent = "";
    if (isOpen(alarm)) {
      var names = { kind: kindText(alarm), home: homeText(alarm) };
      if (alarm.state === "raised") {
        var ack = el("button", { type: "button", className: "btn btn-ack", "data-action": "ack", "aria-label": t("action.ackLabel", names), text: t("action.ack") });
        ack.disabled = !!pending["ack:" + alarm.id];
        actions.appendChild(ack);
      }
      actions.appendChild(el("button", { type: "button", className: "btn btn-resolve", "data-action": "resolve", "aria-label": t("action.resolveLabel", names), text: t("action.resolve") }));
    }
  }

  function detailText(detail) {
    if (detail == null) return "";
    if (typeof detail !== "object") return String(detail);
    var parts = [];
    for (var key in detail) {
      if (!Object.prototype.hasOwnProperty.call(detail, key)) continue;
      var value = detail[key];
      if (value == null || value === "") continue;
      parts.push(humanize(key) + ": " + (typeof value === "object" ? JSON.stringify(value) : String(value)));
    }
    return parts.join(" · ");
  }

  function renderTimeline(entries) {
    var list = $("timeline");
    list.textContent = "";
    if (!entries.length) {
      list.appendChild(el("li", { className: "timeline-empty", text: t("detail.noTimeline") }));
      return;
    }
    for (var i = 0; i < entries.length; i++) {
      var entry = entries[i];
      var what = String(entry.what || "");
      var item = el("li", { className: "tl tl-" + what.replace(/[^a-z0-9_-]/gi, ""), "data-what": what }, [
        el("time", { className: "tl-time", datetime: entry.ts || "", text: formatClock(entry.ts) }),
        el("span", { className: "tl-what", text: label("what", what) }),
        entry.by ? el("span", { className: "tl-by", text: entry.by }) : null,
        detailText(entry.detail) ? el("span", { className: "tl-detail", text: detailText(entry.detail) }) : null
      ]);
      list.appendChild(item);
    }
  }

  function onDetailClick(event) {
    var button = event.target.closest("button[data-action]");
    if (!button || !detailId) return;
    selectedId = alarms.has(detailId) ? detailId : selectedId;
    if (button.getAttribute("data-action") === "ack") acknowledge(detailId);
    else openResolve(detailId);
  }

  // ---------------------------------------------------------------------------------------
  // Live feed
  // ---------------------------------------------------------------------------------------

  function setConnection(state) {
    var banner = $("connection");
    banner.setAttribute("data-state", state);
    var key = state === "live" ? "conn.live" : state === "connecting" ? "conn.connecting" : everConnected ? "conn.lost" : "conn.never";
    banner.textContent = t(key);
    document.body.classList.toggle("offline", state === "reconnecting");
    $("queue").classList.toggle("stale", state === "reconnecting");
  }

  function wsUrl() {
    var scheme = window.location.protocol === "https:" ? "wss:" : "ws:";
    return scheme + "//" + window.location.host + "/ws";
  }

  function connect() {
    clearTimeout(reconnectTimer);
    reconnectTimer = null;
    var opened = false;
    var ws;
    try {
      ws = new WebSocket(wsUrl());
    } catch (e) {
      scheduleReconnect(false);
      return;
    }
    socket = ws;
    ws.onopen = function () {
      opened = true;
    };
    ws.onmessage = function (event) {
      if (socket !== ws) return;
      var message;
      try {
        message = JSON.parse(event.data);
      } catch (e) {
        return;
      }
      onFeedMessage(message);
    };
    ws.onclose = function (event) {
      if (socket !== ws) return;
      socket = null;
      haveSnapshot = false;
      // 4401: the session ended (logged out elsewhere, password changed, expired).
      if (event && event.code === 4401) {
        toLogin();
        return;
      }
      scheduleReconnect(opened);
    };
    ws.onerror = function () {
      // onclose follows and handles it.
    };
  }

  function scheduleReconnect(wasOpen) {
    setConnection("reconnecting");
    if (reconnectTimer !== null) return;
    if (!wasOpen) {
      failedAttempts++;
      // A handshake the server refused looks like any other failure in a browser: ask
      // the API whether the session is still valid (a 401 goes to the login page).
      if (failedAttempts % 3 === 1) api("GET", "/api/closing-codes");
    }
    var delay = backoffMs;
    backoffMs = Math.min(BACKOFF_MAX_MS, backoffMs * 2);
    reconnectTimer = setTimeout(connect, delay);
  }

  function onFeedMessage(message) {
    if (!message || typeof message !== "object") return;
    if (message.type === "snapshot") {
      var fresh = new Map();
      var list = Array.isArray(message.alarms) ? message.alarms : [];
      for (var i = 0; i < list.length; i++) {
        if (list[i] && list[i].id && isOpen(list[i])) fresh.set(list[i].id, list[i]);
      }
      alarms = fresh;
      lastPosition = message.position || null;
      haveSnapshot = true;
      everConnected = true;
      failedAttempts = 0;
      backoffMs = BACKOFF_MIN_MS;
      setConnection("live");
      if (detailId !== null) {
        if (alarms.has(detailId)) detailAlarm = alarms.get(detailId);
        scheduleDetailRefresh();
      }
      render();
    } else if (message.type === "alarm") {
      if (message.position) lastPosition = message.position;
      applyAlarm(message.alarm, true);
      render();
    }
  }

  // ---------------------------------------------------------------------------------------
  // Start
  // ---------------------------------------------------------------------------------------

  function loadUser() {
    // Optional: shows who is signed in when the server offers GET /api/me.
    fetch("/api/me", { credentials: "same-origin", headers: { Accept: "application/json" } }).then(function (response) {
      if (!response.ok) return null;
      return response.json();
    }).then(function (me) {
      if (me && (me.username || me.name)) {
        $("user-name").textContent = (me.name || me.username) + (me.role ? " (" + me.role + ")" : "");
      }
    }).catch(function () {});
  }

  function initialLoad() {
    // A quick first paint and a session check; the WebSocket snapshot is the truth and
    // wins if it arrives first.
    api("GET", "/api/alarms").then(function (result) {
      if (!result.ok || haveSnapshot || !result.data || !Array.isArray(result.data.alarms)) return;
      alarms = new Map();
      for (var i = 0; i < result.data.alarms.length; i++) {
        var alarm = result.data.alarms[i];
        if (alarm && alarm.id && isOpen(alarm)) alarms.set(alarm.id, alarm);
      }
      render();
    });
  }

  function onLogout(event) {
    event.preventDefault();
    var form = event.target;
    fetch("/logout", {
      method: "POST",
      credentials: "same-origin",
      headers: { "X-CSRF-Token": readCookie("rc_csrf") }
    }).then(function () {
      window.location.assign("/login");
    }, function () {
      form.submit();
    });
  }

  function initConsole() {
    applyStrings(document);
    setConnection("connecting");
    render();
    $("queue-body").addEventListener("click", onQueueClick);
    $("queue-body").addEventListener("focusin", function (event) {
      var tr = event.target.closest("tr.alarm");
      if (tr && tr.getAttribute("data-alarm-id") !== selectedId) {
        selectedId = tr.getAttribute("data-alarm-id");
        updateRovingTabindex(sortedAlarms());
      }
    });
    $("detail-actions").addEventListener("click", onDetailClick);
    $("detail-close").addEventListener("click", closeDetail);
    $("notice-close").addEventListener("click", hideNotice);
    $("resolve-form").addEventListener("submit", submitResolve);
    $("resolve-cancel").addEventListener("click", closeResolve);
    $("resolve-dialog").addEventListener("close", onResolveClosed);
    $("resolve-code").addEventListener("change", function () {
      if ($("resolve-code").value) $("resolve-error").hidden = true;
    });
    $("logout-form").addEventListener("submit", onLogout);
    document.addEventListener("keydown", onKeyDown);
    setInterval(tick, 1000);
    loadUser();
    initialLoad();
    loadClosingCodes();
    connect();
  }

  function start() {
    var page = document.body.getAttribute("data-page");
    if (page === "login") initLogin();
    else if (page === "console") initConsole();
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
  else start();
})();
