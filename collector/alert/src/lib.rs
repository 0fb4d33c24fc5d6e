//! Alert rules, their lifecycle, notifications, escalation and back-testing.
