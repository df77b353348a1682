"""The one owner of the Prometheus collectors, on a registry it is handed (never the
global one), so tests and several services in one process never share counters."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram


class Metrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry(auto_describe=True)
        r = self.registry
        self.events_in = Counter(
            "responsecentre_events_received_total", "MQTT event messages received", ["tenant"], registry=r
        )
        self.events_stored = Counter(
            "responsecentre_events_stored_total", "Events written to the durable event log", ["tenant"], registry=r
        )
        self.events_duplicate = Counter(
            "responsecentre_events_duplicate_total",
            "Redelivered events recognised by (device, id)",
            ["tenant"],
            registry=r,
        )
        self.events_rejected = Counter(
            "responsecentre_events_rejected_total", "Messages dead-lettered, by reason", ["reason"], registry=r
        )
        self.mqtt_messages = Counter(
            "responsecentre_mqtt_messages_total",
            "Messages taken from the broker, by topic leaf (events, status, other)",
            ["leaf"],
            registry=r,
        )
        self.internal_errors = Counter(
            "responsecentre_internal_errors_total",
            "Messages or entries a stage failed on itself (a bug), isolated so the loop went on",
            ["stage"],
            registry=r,
        )
        self.statuses = Counter(
            "responsecentre_device_statuses_total", "Retained device status messages stored", registry=r
        )
        self.status_changes = Counter(
            "responsecentre_device_status_changes_total",
            "Changes of a device's online flag, logged as device.online or device.offline for the engine",
            ["tenant", "online"],
            registry=r,
        )
        self.events_processed = Counter(
            "responsecentre_events_processed_total", "Events run through the rule engine", registry=r
        )
        self.triggers = Counter(
            "responsecentre_rule_triggers_total", "Rule decisions that a home needs a human", ["rule"], registry=r
        )
        self.clears = Counter(
            "responsecentre_clears_total",
            "Clear and resident-cancel decisions applied, by action (clear, cancel) and outcome "
            "(closed, kept_acknowledged, no_open_alarm)",
            ["action", "outcome"],
            registry=r,
        )
        # Suppression (suppression.py): events that arrived for a held-back home or device, and
        # the raises that were dropped for it (by kind, so "which alarms did we not send" shows).
        self.events_suppressed = Counter(
            "responsecentre_events_suppressed_total",
            "Stored events of a home or device held back (away, in_hospital, maintenance, silence), by reason",
            ["reason"],
            registry=r,
        )
        self.alarms_suppressed = Counter(
            "responsecentre_alarms_suppressed_total",
            "Raise decisions dropped because their home, device or kind was held back, by reason and kind",
            ["reason", "kind"],
            registry=r,
        )
        self.suppression_version = Gauge(
            "responsecentre_suppression_version",
            "Version of the suppression settings (API changes) the rule processor applies",
            registry=r,
        )
        # Conditions on `data` fields (`where`): an event of a type some `where` rule reacts to
        # that lacks a field the rule needs (or holds a non-number where it compares numbers)
        # does not match, and is counted here per rule, so a sensor that stopped sending
        # `room` shows up instead of silently never raising.
        self.condition_missing = Counter(
            "responsecentre_condition_missing_total",
            "Events a rule's `where` could not judge (a data field missing or not comparable), by rule",
            ["rule"],
            registry=r,
        )
        # Hot reloads of the rule pack (rules_admin.py), by how they were asked for (http,
        # signal, cli) and their outcome (applied, refused).
        self.rules_reloads = Counter(
            "responsecentre_rules_reloads_total",
            "Rule pack reloads asked for, by trigger (http, signal, cli) and outcome (applied, refused)",
            ["trigger", "outcome"],
            registry=r,
        )
        self.rules_loaded_at = Gauge(
            "responsecentre_rules_loaded_timestamp_seconds",
            "When the rule pack in force was loaded (epoch seconds)",
            registry=r,
        )
        self.alarms_raised = Counter(
            "responsecentre_alarms_raised_total", "New alarms, by kind", ["kind", "priority"], registry=r
        )
        self.alarm_transitions = Counter(
            "responsecentre_alarm_transitions_total", "Alarm state changes", ["to"], registry=r
        )
        self.escalation_steps = Counter(
            "responsecentre_escalation_steps_total", "Chain steps entered", ["chain", "step"], registry=r
        )
        self.unhandled = Counter(
            "responsecentre_alarms_unhandled_total",
            "Alarms whose chain was exhausted without an ack",
            ["kind"],
            registry=r,
        )
        self.coverage_short = Counter(
            "responsecentre_roster_coverage_short_total",
            "Chain steps that paged a staff role with fewer people on duty in the zone than the roster's minimum",
            ["role"],
            registry=r,
        )
        self.escalation_repairs = Counter(
            "responsecentre_escalation_repairs_total",
            "Escalation timers the auditor found missing, late or due too late, and put right",
            ["reason"],
            registry=r,
        )
        self.incidents_opened = Counter(
            "responsecentre_incidents_opened_total",
            "Incidents opened: many alarms of one kind in a tenant at once, escalated as one",
            ["kind"],
            registry=r,
        )
        self.incident_members = Counter(
            "responsecentre_incident_members_total",
            "Alarms that became members of an incident (paged through its one escalation)",
            ["kind"],
            registry=r,
        )
        self.dispatches = Counter(
            "responsecentre_dispatches_total",
            "Pages an operator sent to a chosen person outside the chain",
            registry=r,
        )
        self.delivery_attempts = Counter(
            "responsecentre_delivery_attempts_total",
            "Tries to deliver a page, by channel and outcome (delivered, failed, fell_back, dead, cancelled)",
            ["channel", "outcome"],
            registry=r,
        )
        self.delivery_seconds = Histogram(
            "responsecentre_delivery_seconds",
            "How long one try to deliver a page took, by channel",
            ["channel"],
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
            registry=r,
        )
        self.replies = Counter(
            "responsecentre_replies_total",
            "Answers to pages (handset or API), by answer and outcome: taken, or why it was rejected",
            ["answer", "outcome"],
            registry=r,
        )
        self.notifications = Counter(
            "responsecentre_notifications_total",
            "Notifications delivered, by channel and outcome",
            ["channel", "outcome"],
            registry=r,
        )
        self.batch_seconds = Histogram(
            "responsecentre_engine_batch_seconds",
            "Rule-engine time per micro-batch",
            buckets=(1e-5, 5e-5, 1e-4, 5e-4, 1e-3, 5e-3, 0.01, 0.05, 0.1, 0.5),
            registry=r,
        )
        self.batch_size = Histogram(
            "responsecentre_engine_batch_events",
            "Events per micro-batch",
            buckets=(1, 10, 100, 1000, 10000),
            registry=r,
        )
        self.event_to_alarm_seconds = Histogram(
            "responsecentre_event_to_alarm_seconds",
            "Receive time of an event to its alarm being stored",
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
            registry=r,
        )
        # How far in time each sweep has looked: a deadline or timer due before this has been
        # acted on. Lag behind the clock shows a stuck loop; tests wait on it instead of sleeping.
        self.engine_swept_until = Gauge(
            "responsecentre_engine_swept_until_seconds",
            "The time up to which rule-engine deadlines have been swept (epoch seconds)",
            registry=r,
        )
        self.timers_swept_until = Gauge(
            "responsecentre_timers_swept_until_seconds",
            "The time up to which escalation timers have fired (epoch seconds)",
            registry=r,
        )
        self.open_alarms = Gauge("responsecentre_alarms_open", "Open alarms", registry=r)
        self.mqtt_connected = Gauge("responsecentre_mqtt_connected", "1 while the ingest is connected", registry=r)
        self.timer_lateness = Histogram(
            "responsecentre_timer_lateness_seconds",
            "How late an escalation timer fired",
            buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 5, 30, 300),
            registry=r,
        )
        # Sign-ins (web/passwords.py, web/throttle.py): what a flood costs and what it was refused.
        self.password_checks = Counter(
            "responsecentre_password_checks_total",
            "argon2 password checks, by outcome (ok, wrong, unknown_user, busy: refused, too many waiting)",
            ["outcome"],
            registry=r,
        )
        self.logins_throttled = Counter(
            "responsecentre_logins_throttled_total",
            "Sign-in attempts refused unchecked (429), by scope (user, address, lockout)",
            ["scope"],
            registry=r,
        )
