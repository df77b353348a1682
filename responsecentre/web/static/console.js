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
      "keys.help": "Keys: j / k move · Enter details (on an incident: show or hide its alarms) · a acknowledge · r resolve · Esc close",
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
      "step.paused": "paused",
      "step.viaIncident": "via the incident",
      "action.ack": "Acknowledge",
      "action.resolve": "Resolve",
      "action.ackLabel": "Acknowledge {kind} alarm at {home}",
      "action.resolveLabel": "Resolve {kind} alarm at {home}",
      "action.acked": "Acknowledged: {kind} at {home}.",
      "action.resolved": "Resolved: {kind} at {home}.",
      "announce.new": "New {priority} alarm: {kind} at {home}.",
      "announce.unhandled": "Alarm UNHANDLED: {kind} at {home}.",
      "announce.incident": "New incident: {kind}. Its alarms are grouped in one row of the queue.",
      "incident.title": "Incident: {kind} × {count}",
      "incident.homes": "{count} homes",
      "incident.home": "1 home",
      "incident.expand": "Show the {count} alarms of the incident {kind}",
      "incident.collapse": "Hide the {count} alarms of the incident {kind}",
      "incident.member": "(in incident)",
      "incident.lead": "Lead",
      "incident.leadTitle": "This alarm's alert chain pages for the whole incident",
      "incident.noLead": "No escalation",
      "incident.resolve": "Resolve incident",
      "incident.resolveLabel": "Resolve the incident {kind} with its {count} alarms",
      "incident.resolveTitle": "Resolve incident",
      "incident.resolveSubject": "Incident: {kind} × {count} — every alarm still open in it is resolved with this code.",
      "incident.resolved": "Resolved incident {kind}: {count} alarms.",
      "incident.notFound": "The incident is no longer open (it may have been resolved already).",
      "dispatch.open": "Dispatch…",
      "dispatch.openLabel": "Dispatch someone to {kind} alarm at {home}",
      "dispatch.title": "Dispatch someone",
      "dispatch.loading": "Loading who is on duty…",
      "dispatch.failed": "Could not load who is on duty. Try again.",
      "dispatch.none": "Nobody is on duty in zone {zone} now.",
      "dispatch.zone": "On duty in zone {zone} now:",
      "dispatch.pick": "Dispatch {name} ({role})",
      "dispatch.sending": "Dispatching {name}…",
      "dispatch.done": "Dispatched {name}: {status}.",
      "dispatch.refused": "Not dispatched: {reason}",
      "dispatch.close": "Close the list",
      "dispatch.already": "already {status}",
      "detail.timeline": "Timeline",
      "detail.close": "Close",
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
      "field.dispatches": "Dispatched",
      "field.acceptedBy": "Accepted by",
      "field.incident": "Incident",
      "incident.leadField": "{id} — this alarm pages for the incident",
      "chain.value": "{chain}, step {step} of {steps}",
      "chain.turn": "person {turn} in turn",
      "chain.paused": "paused — held by {staff}",
      "chain.pausedNobody": "paused",
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
      "tl.delivery": "{channel} to {address}: {outcome}",
      "tl.deliveryTook": "in {duration}",
      "tl.deliveryTry": "try {try}",
      "tl.deliveryFallback": "next: {fallback}",
      "tl.deliveryFailed": "No channel reached {recipient} ({count} tried).",
      "tl.paged": "{recipient} by {channel} ({address}), step {step}",
      "tl.pagedDispatched": "{recipient} by {channel} ({address}), dispatched",
      "tl.declined": "{staff} cannot take it (step {step})",
      "tl.declinedDispatched": "{staff} cannot take it (dispatched)",
      "tl.accepted": "{staff} takes it, after {waited}",
      "tl.acceptedDispatched": "{staff} takes it (dispatched), after {waited}",
      "tl.released": "{staff} hands it back",
      "tl.releasedResumed": "{staff} hands it back; the alert chain starts again",
      "tl.dispatch": "{staff} paged by the operator",
      "tl.chainPaused": "The alert chain waits at step {step}: {staff} has the alarm",
      "tl.chainResumed": "The alert chain starts again at step {step} ({staff} handed it back)",
      "tl.rechained": "From chain {from} to {to} (priority {priority})",
      "tl.stepSkipped": "Step {step} skipped: nobody on duty to tell",
      "tl.rosterWarning": "Only {on_duty} {role} on duty in zone {zone} (minimum {minimum})",
      "tl.joinedIncident": "Member of incident {incident}",
      "tl.incidentLead": "Pages for incident {incident} ({reason})",
      "tl.enRoute": "{staff} is on the way",
      "tl.onSite": "{staff} is with the resident",
      "tl.onSiteTravel": "{staff} is with the resident, {travel} after setting off",
      "tl.via": "via {via}",
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
      role: {
        nurse: "Nurse",
        team_lead: "Team lead",
        technician: "Technician",
        operator: "Operator",
        admin: "Admin"
      },
      dispatchStatus: {
        paged: "Paged",
        accepted: "Accepted",
        declined: "Declined",
        released: "Handed back"
      },
      outcome: {
        delivered: "delivered",
        failed: "failed, will retry",
        fell_back: "failed, trying the next contact",
        dead: "not delivered",
        cancelled: "cancelled (no longer needed)"
      },
      channel: {
        handset: "Handset",
        sms: "SMS",
        email: "E-mail",
        webhook: "Webhook",
        console: "Console",
        mqtt: "Handset"
      },
      planWarning: {
        unknown_staff: "{who} is not on the roster (paged on the handset anyway)",
        no_contact: "{who} cannot be reached over this step's channels"
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
        note: "Note",
        paged: "Paged",
        delivery: "Delivery",
        delivery_failed: "Delivery failed",
        released: "Handed back",
        dispatch: "Dispatched",
        chain_paused: "Alert chain paused",
        chain_resumed: "Alert chain resumed",
        rechained: "Alert chain changed",
        step_skipped: "Step skipped",
        roster_warning: "Roster warning",
        plan_warning: "Paging problem",
        joined_incident: "Joined incident",
        incident_lead: "Incident escalation"
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
  var resolveIncidentTarget = null; // {id, tenant, kind, count} while the dialog resolves an incident
  var pending = {}; // "ack:ID", "dispatch:ID", "incident:ID" -> true while a request is in flight
  var noticeTimer = null;
  var userRole = null; // from /api/me; actions for operators and admins wait for it
  var staffNames = {}; // staff id -> name, from the dispatch lists seen
  var dispatchFor = null; // the alarm whose dispatch list is open
  var dispatchToken = 0;
  var announcedIncidents = new Set();

  /** Operators and admins dispatch people and resolve incidents (the API checks too). */
  function canManage() {
    return userRole === "operator" || userRole === "admin";
  }

  function staffText(id) {
    if (id == null || id === "") return "?";
    return Object.prototype.hasOwnProperty.call(staffNames, id) ? staffNames[id] + " (" + id + ")" : String(id);
  }

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
    if (alarm.paused) text += " · " + t("step.paused");
    return text;
  }

  function waitingMs(alarm) {
    return Date.now() - parseTime(alarm.raised_at);
  }

  // ---------------------------------------------------------------------------------------
  // Rendering the queue
  // ---------------------------------------------------------------------------------------

  var COLUMNS = ["priority", "kind", "home", "zone", "state", "step", "waiting", "triggers", "actions"];

  // Every row of the queue has a key: an alarm row its alarm id, an incident row
  // INCIDENT_KEY + the incident id. `rows` and `selectedId` use these keys.
  var INCIDENT_KEY = "incident:";
  var MEMBERS_SHOWN = 5; // an incident with more members starts collapsed
  var expandedIncidents = new Map(); // incident id -> true/false, once the operator chose
  var shownItems = []; // the rows of the last render, in order
  var incidentsById = new Map(); // incident id -> group, from the last render

  function incidentKey(id) {
    return INCIDENT_KEY + id;
  }

  function isIncidentKey(key) {
    return typeof key === "string" && key.indexOf(INCIDENT_KEY) === 0;
  }

  function isExpanded(group) {
    if (expandedIncidents.has(group.id)) return expandedIncidents.get(group.id);
    return group.members.length <= MEMBERS_SHOWN;
  }

  /**
   * The queue as rows, in order. An alarm of an incident is not a row of its own at the top
   * level: the incident is one row at the place of its first member (queue order), followed
   * by its members unless it is collapsed. So 300 device_offline alarms are one row.
   */
  function queueItems() {
    var list = sortedAlarms();
    var top = [];
    var groups = new Map();
    for (var i = 0; i < list.length; i++) {
      var alarm = list[i];
      if (!alarm.incident_id) {
        top.push({ key: alarm.id, alarm: alarm });
        continue;
      }
      var group = groups.get(alarm.incident_id);
      if (!group) {
        group = { id: alarm.incident_id, key: incidentKey(alarm.incident_id), tenant: alarm.tenant, kind: alarm.kind, members: [], lead: null };
        groups.set(alarm.incident_id, group);
        top.push({ key: group.key, incident: group });
      }
      group.members.push(alarm);
      if (alarm.incident_lead && !group.lead) group.lead = alarm;
    }
    var items = [];
    for (var j = 0; j < top.length; j++) {
      items.push(top[j]);
      var inc = top[j].incident;
      if (inc && isExpanded(inc)) {
        for (var m = 0; m < inc.members.length; m++) {
          items.push({ key: inc.members[m].id, alarm: inc.members[m], member: inc });
        }
      }
    }
    incidentsById = groups;
    return items;
  }

  function indexOfKey(items, key) {
    for (var i = 0; i < items.length; i++) {
      if (items[i].key === key) return i;
    }
    return -1;
  }

  function itemFor(key) {
    var index = indexOfKey(shownItems, key);
    return index < 0 ? null : shownItems[index];
  }

  function incidentNames(group) {
    return { kind: label("kind", group.kind), count: group.members.length };
  }

  function buildRow(key, isIncident) {
    // Explicit roles: at narrow widths (200 % zoom) CSS lays rows out as cards, and some
    // browsers drop table semantics when a row's display changes.
    var attrs = { className: isIncident ? "incident" : "alarm", role: "row", "data-key": key, tabindex: "-1" };
    if (isIncident) attrs["data-incident-id"] = key.slice(INCIDENT_KEY.length);
    else attrs["data-alarm-id"] = key;
    var tr = el("tr", attrs);
    for (var i = 0; i < COLUMNS.length; i++) {
      // data-label: the column's name, shown above the value in the card layout.
      tr.appendChild(el("td", { className: "c-" + COLUMNS[i], role: "cell", "data-label": t("col." + COLUMNS[i]) }));
    }
    return tr;
  }

  function fillRow(tr, alarm, group) {
    var cells = tr.children;
    tr.setAttribute("data-state", alarm.state);
    tr.setAttribute("data-priority", alarm.priority);
    tr.setAttribute("data-unhandled", alarm.unhandled ? "true" : "false");
    if (group) tr.setAttribute("data-incident-id", group.id);
    else tr.removeAttribute("data-incident-id");
    tr.className = "alarm" + (alarm.unhandled ? " unhandled" : "") + (group ? " member" : "") +
      (alarm.id === selectedId ? " selected" : "") + (tr.classList.contains("fresh") ? " fresh" : "");
    tr.setAttribute("aria-selected", alarm.id === selectedId ? "true" : "false");

    var prio = cells[0];
    prio.textContent = "";
    if (alarm.unhandled) prio.appendChild(el("span", { className: "badge badge-unhandled", text: t("unhandled") }));
    prio.appendChild(el("span", { className: "prio prio-" + alarm.priority, text: label("priority", alarm.priority) }));

    cells[1].textContent = "";
    if (group) {
      cells[1].appendChild(el("span", { className: "member-mark", "aria-hidden": "true", text: "↳ " }));
      cells[1].appendChild(document.createTextNode(kindText(alarm)));
      cells[1].appendChild(el("span", { className: "visually-hidden", text: " " + t("incident.member") }));
      if (alarm.incident_lead) {
        cells[1].appendChild(el("span", { className: "badge badge-lead", title: t("incident.leadTitle"), text: t("incident.lead") }));
      }
    } else {
      cells[1].textContent = kindText(alarm);
    }
    cells[2].textContent = "";
    cells[2].appendChild(el("span", { className: "home-id", text: homeText(alarm) }));
    if (alarm.tenant) cells[2].appendChild(el("span", { className: "tenant", text: alarm.tenant }));
    cells[3].textContent = alarm.zone || "";
    cells[4].textContent = "";
    cells[4].appendChild(el("span", { className: "state state-" + alarm.state, text: label("state", alarm.state) }));
    // A member other than the lead has no chain of its own: the lead pages for all.
    cells[5].textContent = group && !alarm.incident_lead ? t("step.viaIncident") : stepText(alarm);
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

  /** An incident's row: its kind and size, the lead's state and step, its actions. */
  function fillIncidentRow(tr, group) {
    var cells = tr.children;
    var first = group.members[0]; // the most urgent member (queue order)
    var lead = group.lead;
    var expanded = isExpanded(group);
    var names = incidentNames(group);
    var unhandled = group.members.some(function (a) {
      return a.unhandled;
    });
    tr.setAttribute("data-state", lead ? lead.state : first.state);
    tr.setAttribute("data-priority", first.priority);
    tr.setAttribute("data-unhandled", unhandled ? "true" : "false");
    tr.setAttribute("data-members", String(group.members.length));
    tr.setAttribute("data-expanded", expanded ? "true" : "false");
    tr.className = "incident" + (unhandled ? " unhandled" : "") + (group.key === selectedId ? " selected" : "");
    tr.setAttribute("aria-selected", group.key === selectedId ? "true" : "false");

    var prio = cells[0];
    prio.textContent = "";
    if (unhandled) prio.appendChild(el("span", { className: "badge badge-unhandled", text: t("unhandled") }));
    prio.appendChild(el("span", { className: "prio prio-" + first.priority, text: label("priority", first.priority) }));

    cells[1].textContent = "";
    var toggle = el("button", {
      type: "button", className: "btn btn-small btn-toggle", "data-action": "toggle",
      "aria-expanded": expanded ? "true" : "false",
      "aria-label": t(expanded ? "incident.collapse" : "incident.expand", names)
    }, [el("span", { "aria-hidden": "true", text: expanded ? "▾" : "▸" })]);
    cells[1].appendChild(toggle);
    cells[1].appendChild(el("span", { className: "incident-title", text: t("incident.title", names) }));

    var homes = {};
    var zones = [];
    var triggers = 0;
    var oldest = Infinity;
    for (var i = 0; i < group.members.length; i++) {
      var member = group.members[i];
      homes[member.home_id] = true;
      if (member.zone && zones.indexOf(member.zone) < 0) zones.push(member.zone);
      triggers += member.triggers || 0;
      var raised = parseTime(member.raised_at);
      if (isFinite(raised) && raised < oldest) oldest = raised;
    }
    var homeCount = Object.keys(homes).length;
    cells[2].textContent = "";
    cells[2].appendChild(el("span", { className: "home-id", text: homeCount === 1 ? t("incident.home") : t("incident.homes", { count: homeCount }) }));
    if (group.tenant) cells[2].appendChild(el("span", { className: "tenant", text: group.tenant }));
    cells[3].textContent = zones.length > 3 ? zones.slice(0, 3).join(", ") + ", …" : zones.join(", ");
    cells[4].textContent = "";
    if (lead) cells[4].appendChild(el("span", { className: "state state-" + lead.state, text: label("state", lead.state) }));
    else cells[4].appendChild(el("span", { className: "state", text: t("incident.noLead") }));
    cells[5].textContent = lead ? stepText(lead) : "–";
    tr.setAttribute("data-oldest", isFinite(oldest) ? String(oldest) : "");
    cells[6].textContent = formatWaiting(Date.now() - oldest);
    cells[7].textContent = String(triggers);

    var actions = cells[8];
    actions.textContent = "";
    if (canManage()) {
      var resolve = el("button", {
        type: "button", className: "btn btn-resolve", "data-action": "resolve-incident",
        "aria-label": t("incident.resolveLabel", names), text: t("incident.resolve")
      });
      if (pending["incident:" + group.id]) resolve.disabled = true;
      actions.appendChild(resolve);
    }
  }

  function render() {
    var body = $("queue-body");
    var items = queueItems();
    shownItems = items;
    var active = document.activeElement;
    var focusWasInQueue = active && body.contains(active);
    var focusedRowKey = null;
    if (focusWasInQueue) {
      var focusedRow = active.closest("tr[data-key]");
      focusedRowKey = focusedRow ? focusedRow.getAttribute("data-key") : null;
    }
    var present = new Set();
    for (var k = 0; k < items.length; k++) present.add(items[k].key);

    // Drop rows of alarms that left the queue (or were hidden with their incident), and
    // rows whose kind changed (an alarm that joined an incident is a member row now).
    rows.forEach(function (tr, key) {
      if (!present.has(key)) {
        tr.remove();
        rows.delete(key);
      }
    });
    if (selectedId !== null && !present.has(selectedId)) {
      // A member hidden by collapsing its incident: the incident row takes the selection.
      var gone = alarms.get(selectedId);
      selectedId = gone && gone.incident_id && present.has(incidentKey(gone.incident_id)) ? incidentKey(gone.incident_id) : null;
      if (focusedRowKey !== null && !present.has(focusedRowKey)) focusedRowKey = selectedId;
    }

    // Place rows in order, moving a node only when it is not already in place (a moved
    // node loses focus, so as few moves as possible, and focus is restored below).
    for (var i = 0; i < items.length; i++) {
      var item = items[i];
      var tr = rows.get(item.key);
      if (!tr) {
        tr = buildRow(item.key, !!item.incident);
        rows.set(item.key, tr);
      }
      if (item.incident) fillIncidentRow(tr, item.incident);
      else fillRow(tr, item.alarm, item.member || null);
      var current = body.children[i];
      if (current !== tr) body.insertBefore(tr, current || null);
    }

    if (selectedId === null && items.length && focusWasInQueue) {
      selectedId = items[Math.min(items.length - 1, lastSelectedIndex)].key;
    }
    updateRovingTabindex(items);
    if (focusWasInQueue && document.activeElement !== active) {
      var target = (focusedRowKey && rows.get(focusedRowKey)) || (selectedId && rows.get(selectedId));
      if (target) {
        var restore = active && active.getAttribute && active.getAttribute("data-action");
        var button = restore ? target.querySelector('[data-action="' + restore + '"]') : null;
        (button || target).focus({ preventScroll: true });
      }
    }

    var count = alarms.size;
    $("open-count").textContent = String(count);
    $("queue-empty").hidden = count > 0;
    document.title = count ? t("doc.titleCount", { count: count }) : t("doc.title");
  }

  var lastSelectedIndex = 0;

  function updateRovingTabindex(items) {
    var first = items.length ? items[0].key : null;
    var tabStop = selectedId !== null && rows.has(selectedId) ? selectedId : first;
    rows.forEach(function (tr, key) {
      var selected = key === selectedId;
      tr.setAttribute("tabindex", key === tabStop ? "0" : "-1");
      tr.classList.toggle("selected", selected);
      tr.setAttribute("aria-selected", selected ? "true" : "false");
    });
    if (selectedId !== null) {
      var index = indexOfKey(items, selectedId);
      if (index >= 0) lastSelectedIndex = index;
    }
  }

  function tick() {
    var now = Date.now();
    rows.forEach(function (tr, key) {
      if (isIncidentKey(key)) {
        var oldest = parseFloat(tr.getAttribute("data-oldest"));
        if (isFinite(oldest)) tr.children[6].textContent = formatWaiting(now - oldest);
        return;
      }
      var alarm = alarms.get(key);
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

  function select(key, opts) {
    if (key === null || indexOfKey(shownItems, key) < 0) return;
    selectedId = key;
    updateRovingTabindex(shownItems);
    var tr = rows.get(key);
    if (tr && (!opts || opts.focus !== false)) {
      tr.focus({ preventScroll: true });
      tr.scrollIntoView({ block: "nearest" });
    }
    if (alarms.has(key) && detailId !== null && detailId !== key && !$("detail").hidden) {
      // The panel follows the selection (alarm rows only), a moment after the keys stop.
      clearTimeout(detailTimer);
      detailTimer = setTimeout(function () {
        openDetail(key, { focus: false });
      }, 250);
    }
  }

  function move(delta) {
    var items = shownItems;
    if (!items.length) return;
    var index = indexOfKey(items, selectedId);
    var next = index < 0 ? (delta > 0 ? 0 : items.length - 1) : Math.max(0, Math.min(items.length - 1, index + delta));
    select(items[next].key);
  }

  /** Show or hide an incident's member rows (`expand`: true, false, or undefined to flip). */
  function toggleIncident(incidentId, expand) {
    var group = incidentsById.get(incidentId);
    if (!group) return;
    var now = isExpanded(group);
    var want = expand === undefined ? !now : !!expand;
    if (want === now) return;
    expandedIncidents.set(incidentId, want);
    render();
  }

  /** The alarm a key stands for: the alarm itself, or an incident's lead. */
  function alarmForKey(key) {
    if (isIncidentKey(key)) {
      var group = incidentsById.get(key.slice(INCIDENT_KEY.length));
      return group ? group.lead : null;
    }
    return alarms.get(key) || null;
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
    var row = event.target.closest ? event.target.closest("tr[data-key]") : null;
    if ((key === "ArrowDown" || key === "ArrowUp") && event.target.closest && event.target.closest("#dispatch-list")) {
      event.preventDefault();
      moveInDispatchList(event.target, key === "ArrowDown" ? 1 : -1);
      return;
    }
    if (key === "j" || key === "ArrowDown") {
      if (key === "ArrowDown" && !row) return;
      event.preventDefault();
      move(1);
    } else if (key === "k" || key === "ArrowUp") {
      if (key === "ArrowUp" && !row) return;
      event.preventDefault();
      move(-1);
    } else if ((key === "ArrowRight" || key === "ArrowLeft") && row && event.target === row) {
      var rowKey = row.getAttribute("data-key");
      if (isIncidentKey(rowKey)) {
        event.preventDefault();
        toggleIncident(rowKey.slice(INCIDENT_KEY.length), key === "ArrowRight");
      } else if (key === "ArrowLeft" && row.getAttribute("data-incident-id")) {
        event.preventDefault(); // from a member to its incident
        select(incidentKey(row.getAttribute("data-incident-id")));
      }
    } else if (key === "a") {
      if (selectedId !== null) {
        event.preventDefault();
        var alarm = alarmForKey(selectedId); // on an incident: its lead, the one paging
        if (alarm && alarm.state === "raised") acknowledge(alarm.id);
      }
    } else if (key === "r") {
      if (selectedId !== null) {
        event.preventDefault();
        if (isIncidentKey(selectedId)) {
          if (canManage()) openResolveIncident(selectedId.slice(INCIDENT_KEY.length));
        } else {
          openResolve(selectedId);
        }
      }
    } else if (key === "Enter") {
      if (row && event.target === row) {
        event.preventDefault();
        var enterKey = row.getAttribute("data-key");
        if (isIncidentKey(enterKey)) toggleIncident(enterKey.slice(INCIDENT_KEY.length));
        else openDetail(enterKey, { focus: true });
      }
    } else if (key === "Escape") {
      if (!$("dispatch-panel").hidden) {
        event.preventDefault();
        closeDispatch(true);
      } else if (!$("detail").hidden) {
        event.preventDefault();
        closeDetail();
      }
    }
  }

  function onQueueClick(event) {
    var tr = event.target.closest("tr[data-key]");
    if (!tr) return;
    var key = tr.getAttribute("data-key");
    var button = event.target.closest("button[data-action]");
    if (button) {
      selectedId = key;
      updateRovingTabindex(shownItems);
      var action = button.getAttribute("data-action");
      if (action === "toggle") toggleIncident(key.slice(INCIDENT_KEY.length));
      else if (action === "resolve-incident") openResolveIncident(key.slice(INCIDENT_KEY.length));
      else if (action === "ack") acknowledge(key);
      else openResolve(key);
      return;
    }
    select(key, { focus: true });
    if (!isIncidentKey(key)) openDetail(key, { focus: false, reveal: true });
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
      if (alarm.incident_id && fromFeed && haveSnapshot && !announcedIncidents.has(alarm.incident_id)) noticeIncident(alarm);
      else if (!known && haveSnapshot && fromFeed && !alarm.incident_id) noticeNew(alarm);
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

  /** One announcement per incident, not one per member (300 alarms in a power cut). */
  function noticeIncident(alarm) {
    announcedIncidents.add(alarm.incident_id);
    announce(t("announce.incident", { kind: kindText(alarm) }));
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
    resolveIncidentTarget = null;
    showResolveDialog(id, t("resolve.title"), label("priority", alarm.priority) + " · " + kindText(alarm) + " · " + homeText(alarm) +
      (alarm.zone ? " (" + alarm.zone + ")" : ""));
  }

  /** The same dialog and closing codes, for every open member of an incident at once. */
  function openResolveIncident(incidentId) {
    var group = incidentsById.get(incidentId);
    if (!group || !canManage()) return;
    var names = incidentNames(group);
    resolveTarget = null;
    resolveIncidentTarget = { id: group.id, tenant: group.tenant, kind: names.kind, count: names.count };
    showResolveDialog(incidentKey(group.id), t("incident.resolveTitle"), t("incident.resolveSubject", names));
  }

  function resolveKey() {
    return resolveIncidentTarget ? incidentKey(resolveIncidentTarget.id) : resolveTarget;
  }

  function showResolveDialog(key, title, subject) {
    var dialog = $("resolve-dialog");
    $("resolve-title").textContent = title;
    $("resolve-subject").textContent = subject;
    $("resolve-note").value = "";
    $("resolve-error").hidden = true;
    $("resolve-submit").disabled = true;
    fillCodes(closingCodes || []);
    if (!dialog.open) dialog.showModal();
    $("resolve-code").focus();
    loadClosingCodes().then(function (codes) {
      if (resolveKey() !== key) return;
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
    var key = resolveKey();
    resolveTarget = null;
    resolveIncidentTarget = null;
    if (key && rows.get(key)) {
      rows.get(key).focus({ preventScroll: true });
      return;
    }
    focusNearestRow();
  }

  /** Focus the selected row, or the row now at the place of the one that left. */
  function focusNearestRow() {
    var items = shownItems;
    if (!items.length) return;
    if (selectedId === null || !rows.get(selectedId)) {
      selectedId = items[Math.min(items.length - 1, lastSelectedIndex)].key;
      updateRovingTabindex(items);
    }
    rows.get(selectedId).focus({ preventScroll: true });
  }

  function resolveFailed(result, notFound) {
    $("resolve-error").textContent = result.status === 404 && notFound ? notFound : errorText(result);
    $("resolve-error").hidden = false;
  }

  function submitResolve(event) {
    event.preventDefault();
    var id = resolveTarget;
    var incident = resolveIncidentTarget;
    var code = $("resolve-code").value;
    if (!id && !incident) return closeResolve();
    if (!code) {
      $("resolve-error").textContent = t("resolve.needCode");
      $("resolve-error").hidden = false;
      $("resolve-code").focus();
      return;
    }
    var note = $("resolve-note").value.trim();
    if (incident) {
      var guard = "incident:" + incident.id;
      if (pending[guard]) return;
      pending[guard] = true;
      $("resolve-submit").disabled = true;
      var path = "/api/incidents/" + encodeURIComponent(incident.tenant) + "/" + encodeURIComponent(incident.id) + "/resolve";
      api("POST", path, { code: code, note: note }).then(function (result) {
        delete pending[guard];
        $("resolve-submit").disabled = false;
        if (result.ok) {
          // The members leave the queue with the feed's updates.
          var resolved = result.data && Array.isArray(result.data.resolved) ? result.data.resolved.length : incident.count;
          announce(t("incident.resolved", { kind: incident.kind, count: resolved }));
          if (resolveIncidentTarget === incident) closeResolve();
        } else if (result.status !== 401) {
          if (resolveIncidentTarget === incident) resolveFailed(result, t("incident.notFound"));
          else showNotice(result.status === 404 ? t("incident.notFound") : errorText(result));
        }
        render();
      });
      return;
    }
    var alarm = alarms.get(id) || detailAlarm;
    $("resolve-submit").disabled = true;
    api("POST", "/api/alarms/" + encodeURIComponent(id) + "/resolve", { code: code, note: note }).then(function (result) {
      $("resolve-submit").disabled = false;
      if (result.ok) {
        applyAlarm(result.data, false);
        if (alarm) announce(t("action.resolved", { kind: kindText(alarm), home: homeText(alarm) }));
        closeResolve();
        render();
      } else if (result.status !== 401) {
        resolveFailed(result, null);
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
      closeDispatch(false);
      $("dispatch-result").textContent = "";
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
    closeDispatch(false);
    $("dispatch-result").textContent = "";
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
    $("detail").setAttribute("data-paused", alarm.paused ? "true" : "false");
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
      var chain = el("span", null, [
        el("span", {
          text: t("chain.value", { chain: alarm.chain, step: alarm.step || 0, steps: alarm.steps || 0 }) +
            (alarm.round ? " · " + t("step.round", { round: alarm.round + 1 }) : "") +
            (alarm.turn > 1 ? " · " + t("chain.turn", { turn: alarm.turn }) : "")
        }),
        alarm.paused ? el("span", { className: "chain-paused", id: "detail-paused", text: pausedText(alarm) }) : null
      ]);
      field(dl, "field.chain", chain);
    }
    if (alarm.incident_id) {
      field(dl, "field.incident", alarm.incident_lead ? t("incident.leadField", { id: alarm.incident_id }) : alarm.incident_id);
    }
    if (alarm.rule) field(dl, "field.rule", alarm.rule);
    field(dl, "field.raised", formatClock(alarm.raised_at));
    if (isOpen(alarm)) field(dl, "field.waiting", formatWaiting(waitingMs(alarm)), "detail-waiting");
    if (alarm.acknowledged_at) {
      field(dl, "field.acknowledged", t("field.ackBy", { time: formatClock(alarm.acknowledged_at), who: alarm.acknowledged_by || "?" }));
    }
    if (alarm.accepted_by) field(dl, "field.acceptedBy", staffText(alarm.accepted_by), "detail-accepted-by");
    var dispatches = Array.isArray(alarm.dispatches) ? alarm.dispatches : [];
    if (dispatches.length) {
      var list = el("ul", { className: "dispatches", id: "detail-dispatches" });
      for (var i = 0; i < dispatches.length; i++) {
        var d = dispatches[i];
        list.appendChild(el("li", { "data-staff-id": d.staff_id, "data-status": d.status }, [
          el("span", { className: "dispatch-who", text: staffText(d.staff_id) }),
          el("span", { className: "dispatch-status dispatch-" + d.status, text: label("dispatchStatus", d.status) })
        ]));
      }
      field(dl, "field.dispatches", list);
    }
    field(dl, "field.triggers", alarm.triggers != null ? String(alarm.triggers) : "–");

    var actions = $("detail-actions");
    var active = document.activeElement;
    var refocus = active && actions.contains(active) ? active.getAttribute("data-action") : null;
    actions.textContent = "";
    var names = { kind: kindText(alarm), home: homeText(alarm) };
    if (isOpen(alarm)) {
      if (alarm.state === "raised") {
        var ack = el("button", { type: "button", className: "btn btn-ack", "data-action": "ack", "aria-label": t("action.ackLabel", names), text: t("action.ack") });
        ack.disabled = !!pending["ack:" + alarm.id];
        actions.appendChild(ack);
      }
      actions.appendChild(el("button", { type: "button", className: "btn btn-resolve", "data-action": "resolve", "aria-label": t("action.resolveLabel", names), text: t("action.resolve") }));
      if (canManage() && alarm.state !== "on_site") {
        actions.appendChild(el("button", {
          type: "button", className: "btn btn-dispatch", id: "dispatch-open", "data-action": "dispatch",
          "aria-label": t("dispatch.openLabel", names), "aria-controls": "dispatch-panel",
          "aria-expanded": dispatchFor === alarm.id ? "true" : "false", text: t("dispatch.open")
        }));
      }
    }
    if ((!isOpen(alarm) || alarm.state === "on_site" || !canManage()) && dispatchFor === alarm.id) closeDispatch(false);
    if (refocus) {
      // The buttons were rebuilt under the keyboard user: keep her place.
      var again = actions.querySelector('[data-action="' + refocus + '"]');
      if (again) again.focus({ preventScroll: true });
      else $("detail-title").focus({ preventScroll: true });
    }
  }

  function pausedText(alarm) {
    var holder = alarm.accepted_by;
    var dispatches = Array.isArray(alarm.dispatches) ? alarm.dispatches : [];
    for (var i = 0; !holder && i < dispatches.length; i++) {
      if (dispatches[i].status === "accepted") holder = dispatches[i].staff_id;
    }
    return holder ? t("chain.paused", { staff: staffText(holder) }) : t("chain.pausedNobody");
  }

  // ---------------------------------------------------------------------------------------
  // Dispatch: an operator pages a chosen person outside the alert chain
  // ---------------------------------------------------------------------------------------

  function openDispatch(id) {
    var alarm = alarms.get(id) || (detailAlarm && detailAlarm.id === id ? detailAlarm : null);
    if (!alarm || !isOpen(alarm) || !canManage()) return;
    if (dispatchFor === id && !$("dispatch-panel").hidden) {
      closeDispatch(true);
      return;
    }
    if (pending["dispatchable:" + id]) return;
    dispatchFor = id;
    var token = ++dispatchToken;
    $("dispatch-panel").hidden = false;
    $("dispatch-list").textContent = "";
    $("dispatch-error").hidden = true;
    $("dispatch-result").textContent = "";
    $("dispatch-status").textContent = t("dispatch.loading");
    setDispatchExpanded(true);
    pending["dispatchable:" + id] = true;
    api("GET", "/api/alarms/" + encodeURIComponent(id) + "/dispatchable").then(function (result) {
      delete pending["dispatchable:" + id];
      if (token !== dispatchToken || dispatchFor !== id) return;
      if (!result.ok) {
        if (result.status === 401) return;
        $("dispatch-status").textContent = "";
        $("dispatch-error").textContent = result.status === 404 ? t("error.notFound") : t("dispatch.failed") + " " + errorText(result);
        $("dispatch-error").hidden = false;
        return;
      }
      var data = result.data || {};
      var staff = Array.isArray(data.staff) ? data.staff : [];
      for (var i = 0; i < staff.length; i++) staffNames[staff[i].staff_id] = staff[i].name;
      $("dispatch-status").textContent = staff.length ? t("dispatch.zone", { zone: data.zone || "–" }) : t("dispatch.none", { zone: data.zone || "–" });
      renderDispatchList(staff);
      if (detailAlarm && detailAlarm.id === id) renderDetailFields(detailAlarm); // names for ids
      var first = $("dispatch-list").querySelector("button:not([disabled])");
      if (first) first.focus();
    });
  }

  function renderDispatchList(staff) {
    var list = $("dispatch-list");
    list.textContent = "";
    var alarm = alarms.get(dispatchFor) || detailAlarm;
    var current = {};
    var dispatches = alarm && Array.isArray(alarm.dispatches) ? alarm.dispatches : [];
    for (var d = 0; d < dispatches.length; d++) current[dispatches[d].staff_id] = dispatches[d].status;
    for (var i = 0; i < staff.length; i++) {
      var person = staff[i];
      var role = label("role", person.role);
      var status = current[person.staff_id];
      var busy = status === "paged" || status === "accepted"; // the API refuses these: say why here
      var button = el("button", {
        type: "button", className: "btn dispatch-pick", "data-staff-id": person.staff_id,
        "aria-label": t("dispatch.pick", { name: person.name, role: role }) +
          (busy ? " — " + t("dispatch.already", { status: label("dispatchStatus", status).toLowerCase() }) : "")
      }, [
        el("span", { className: "dispatch-name", text: person.name }),
        el("span", { className: "dispatch-role", text: role }),
        busy ? el("span", { className: "dispatch-status dispatch-" + status, text: label("dispatchStatus", status) }) : null
      ]);
      button.disabled = busy || !!pending["dispatch:" + dispatchFor];
      list.appendChild(el("li", null, [button]));
    }
  }

  function setDispatchExpanded(open) {
    var button = $("dispatch-open");
    if (button) button.setAttribute("aria-expanded", open ? "true" : "false");
  }

  function closeDispatch(returnFocus) {
    dispatchToken++;
    dispatchFor = null;
    $("dispatch-panel").hidden = true;
    $("dispatch-list").textContent = "";
    setDispatchExpanded(false);
    if (returnFocus && $("dispatch-open")) $("dispatch-open").focus();
  }

  function pickDispatch(staffId, name) {
    var id = dispatchFor;
    if (!id || pending["dispatch:" + id]) return;
    var alarm = alarms.get(id) || detailAlarm;
    pending["dispatch:" + id] = true;
    var buttons = $("dispatch-list").querySelectorAll("button");
    for (var i = 0; i < buttons.length; i++) buttons[i].disabled = true;
    $("dispatch-error").hidden = true;
    $("dispatch-status").textContent = t("dispatch.sending", { name: name });
    api("POST", "/api/alarms/" + encodeURIComponent(id) + "/dispatch", { staff_id: staffId }).then(function (result) {
      delete pending["dispatch:" + id];
      if (result.ok) {
        var status = "paged";
        var list = result.data && Array.isArray(result.data.dispatches) ? result.data.dispatches : [];
        for (var j = 0; j < list.length; j++) {
          if (list[j].staff_id === staffId) status = list[j].status;
        }
        var message = t("dispatch.done", { name: name, status: label("dispatchStatus", status).toLowerCase() });
        applyAlarm(result.data, false);
        if (detailId === id) {
          if (result.data && !alarms.has(id)) {
            detailAlarm = result.data;
            renderDetailFields(result.data);
          }
          fetchDetail(id); // the timeline's dispatch and paged lines
        }
        if (dispatchFor === id) closeDispatch(true);
        $("dispatch-result").textContent = message;
        announce(message);
        render();
        return;
      }
      if (result.status === 401) return;
      var reason = result.status === 409 && result.data && typeof result.data.detail === "string" ? result.data.detail : errorText(result);
      var text = t("dispatch.refused", { reason: reason });
      $("dispatch-status").textContent = "";
      if (dispatchFor === id) {
        $("dispatch-error").textContent = text;
        $("dispatch-error").hidden = false;
        var again = $("dispatch-list").querySelectorAll("button");
        for (var k = 0; k < again.length; k++) again[k].disabled = false;
        var picked = $("dispatch-list").querySelector('button[data-staff-id="' + CSS.escape(staffId) + '"]');
        if (picked) picked.focus();
      } else {
        showNotice(text);
      }
    });
  }

  function moveInDispatchList(from, delta) {
    var buttons = Array.prototype.filter.call($("dispatch-list").querySelectorAll("button"), function (b) {
      return !b.disabled;
    });
    if (!buttons.length) return;
    var index = buttons.indexOf(from.closest("button"));
    var next = index < 0 ? 0 : Math.max(0, Math.min(buttons.length - 1, index + delta));
    buttons[next].focus();
  }

  function onDispatchClick(event) {
    var button = event.target.closest("button[data-staff-id]");
    if (!button || button.disabled) return;
    var name = button.querySelector(".dispatch-name");
    pickDispatch(button.getAttribute("data-staff-id"), name ? name.textContent : button.getAttribute("data-staff-id"));
  }

  // ---------------------------------------------------------------------------------------
  // Timeline
  // ---------------------------------------------------------------------------------------

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

  function formatDuration(ms) {
    var n = Number(ms);
    if (!isFinite(n) || n < 0) return "";
    if (n < 1000) return Math.round(n) + " ms";
    if (n < 60000) return (n / 1000).toFixed(1) + " s";
    return formatWaiting(n);
  }

  function withVia(text, d) {
    return d.via && d.via !== "http" ? text + " · " + t("tl.via", { via: d.via }) : text;
  }

  /** A sentence for the entries the chains and deliveries write; null: the generic text. */
  function timelineText(what, d) {
    d = d && typeof d === "object" ? d : {};
    var staff = staffText(d.staff);
    switch (what) {
      case "delivery": {
        var parts = [t("tl.delivery", {
          channel: label("channel", d.channel), address: d.address || "–", outcome: label("outcome", d.outcome)
        })];
        if (d.duration_ms != null) parts.push(t("tl.deliveryTook", { duration: formatDuration(d.duration_ms) }));
        if (d["try"] > 1) parts.push(t("tl.deliveryTry", { "try": d["try"] }));
        if (d.fallback) parts.push(t("tl.deliveryFallback", { fallback: label("channel", d.fallback) }));
        if (d.detail) parts.push(String(d.detail));
        return parts.join(" · ");
      }
      case "delivery_failed":
        return t("tl.deliveryFailed", { recipient: staffText(d.recipient), count: d.channels_tried != null ? d.channels_tried : "?" });
      case "paged":
        return t(d.dispatched ? "tl.pagedDispatched" : "tl.paged", {
          recipient: staffText(d.recipient), channel: label("channel", d.channel), address: d.address || "–", step: d.step
        });
      case "declined":
        return withVia(t(d.dispatched ? "tl.declinedDispatched" : "tl.declined", { staff: staff, step: d.step }), d);
      case "accepted":
        return withVia(t(d.dispatched ? "tl.acceptedDispatched" : "tl.accepted", {
          staff: staff, waited: formatWaiting((Number(d.waited_s) || 0) * 1000)
        }), d);
      case "released":
        return withVia(t(d.chain_resumed ? "tl.releasedResumed" : "tl.released", { staff: staff }), d);
      case "dispatch":
        return t("tl.dispatch", { staff: staff });
      case "chain_paused":
        return t("tl.chainPaused", { staff: staff, step: d.step });
      case "chain_resumed":
        return t("tl.chainResumed", { staff: staff, step: d.step });
      case "rechained":
        return t("tl.rechained", { from: d.from_chain, to: d.to_chain, priority: label("priority", d.priority) });
      case "step_skipped":
        return t("tl.stepSkipped", { step: d.step });
      case "roster_warning":
        return t("tl.rosterWarning", { on_duty: d.on_duty, role: label("role", d.role).toLowerCase(), zone: d.zone || "–", minimum: d.minimum });
      case "plan_warning":
        return typeof lookup("planWarning." + d.kind) === "string" ? t("planWarning." + d.kind, { who: staffText(d.who) }) : null;
      case "joined_incident":
        return t("tl.joinedIncident", { incident: d.incident });
      case "incident_lead":
        return t("tl.incidentLead", { incident: d.incident, reason: d.reason || "" });
      case "en_route":
        return withVia(t("tl.enRoute", { staff: staff }), d);
      case "on_site":
        return withVia(d.travel_s != null
          ? t("tl.onSiteTravel", { staff: staff, travel: formatWaiting(Number(d.travel_s) * 1000) })
          : t("tl.onSite", { staff: staff }), d);
      default:
        return null;
    }
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
      var text = timelineText(what, entry.detail);
      if (text === null) text = detailText(entry.detail);
      var item = el("li", { className: "tl tl-" + what.replace(/[^a-z0-9_-]/gi, ""), "data-what": what }, [
        el("time", { className: "tl-time", datetime: entry.ts || "", text: formatClock(entry.ts) }),
        el("span", { className: "tl-what", text: label("what", what) }),
        entry.by ? el("span", { className: "tl-by", text: entry.by }) : null,
        text ? el("span", { className: "tl-detail", text: text }) : null
      ]);
      if (what === "delivery" && entry.detail && entry.detail.outcome) item.setAttribute("data-outcome", entry.detail.outcome);
      list.appendChild(item);
    }
  }

  function onDetailClick(event) {
    var button = event.target.closest("button[data-action]");
    if (!button || !detailId) return;
    selectedId = alarms.has(detailId) ? detailId : selectedId;
    var action = button.getAttribute("data-action");
    if (action === "ack") acknowledge(detailId);
    else if (action === "dispatch") openDispatch(detailId);
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
      fresh.forEach(function (a) {
        if (a.incident_id) announcedIncidents.add(a.incident_id);
      });
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
      if (me && me.role) {
        // Dispatch and incident actions are for operators and admins: shown once known.
        userRole = me.role;
        render();
        if (detailAlarm) renderDetailFields(detailAlarm);
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
      var tr = event.target.closest("tr[data-key]");
      if (tr && tr.getAttribute("data-key") !== selectedId) {
        selectedId = tr.getAttribute("data-key");
        updateRovingTabindex(shownItems);
      }
    });
    $("detail-actions").addEventListener("click", onDetailClick);
    $("dispatch-list").addEventListener("click", onDispatchClick);
    $("dispatch-close").addEventListener("click", function () {
      closeDispatch(true);
    });
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
