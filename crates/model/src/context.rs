//! Who writes, when, and under which rule settings: what every step of a write (rules, home
//! logic, what time makes due) is told besides the home itself. Its own module so that
//! `write`, `rules`, `logic` and `assist` all depend on it and none on another.

use chrono::{DateTime, Utc};

use crate::permission::PermissionSet;
use crate::units;

/// Who is writing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Actor {
    /// A product acting through a user's grant.
    Product { permissions: PermissionSet },
    /// A device with its own credential; it writes only itself.
    Device { device_id: String },
    /// The service: home logic, admin commands, the demo.
    Service,
}

/// Settings of the rules that the original API left open (docs/compatibility.md, "Rules and errors").
#[derive(Debug, Clone, PartialEq)]
pub struct RuleConfig {
    /// Minimum heat-cool spread in °F (whole degrees).
    pub min_spread_f: f64,
    /// Minimum heat-cool spread in °C.
    pub min_spread_c: f64,
    /// `away` puts thermostats in eco and `home` restores them.
    pub eco_on_away: bool,
    /// Refuse `cool` and `heat-cool` while emergency heat is on.
    pub no_cooling_during_emergency_heat: bool,
    /// Home/Away Assist (see [`crate::assist`]).
    pub assist: AssistConfig,
}

/// Home/Away Assist's timing (see [`crate::assist`] for the policy).
#[derive(Debug, Clone, PartialEq)]
pub struct AssistConfig {
    pub enabled: bool,
    /// No occupancy signal for this long turns a home `away`.
    pub quiet_secs: i64,
    /// A person's own change of `away` is not overridden for this long.
    pub hold_secs: i64,
    /// `wwn_security_state` relaxes from `deter` after this long without a person event.
    pub security_quiet_secs: i64,
}

impl Default for AssistConfig {
    fn default() -> Self {
        AssistConfig { enabled: true, quiet_secs: 2 * 3600, hold_secs: 3600, security_quiet_secs: 15 * 60 }
    }
}

impl Default for RuleConfig {
    fn default() -> Self {
        RuleConfig {
            min_spread_f: 3.0,
            min_spread_c: 1.5,
            eco_on_away: true,
            no_cooling_during_emergency_heat: true,
            assist: AssistConfig::default(),
        }
    }
}

/// Everything a write needs besides the home: who, when, and the rule settings.
#[derive(Debug, Clone)]
pub struct WriteContext<'a> {
    pub actor: &'a Actor,
    pub now: DateTime<Utc>,
    pub config: &'a RuleConfig,
    /// When a device measured what it reports (`Roost-Measured-At`); `None` means now. Later
    /// than now (a fast device clock) counts as now.
    pub measured_at: Option<DateTime<Utc>>,
}

impl<'a> WriteContext<'a> {
    pub fn new(actor: &'a Actor, now: DateTime<Utc>, config: &'a RuleConfig) -> Self {
        WriteContext { actor, now, config, measured_at: None }
    }

    /// The measurement time of a device's report, as stored in `reported_at`.
    pub fn measured(&self) -> String {
        units::format_time(self.measured_at.map_or(self.now, |m| m.min(self.now)))
    }
}
