//! The schema of every field of the home document, as one declarative table.
//!
//! Each row says a field's JSON type, unit, allowed values, who may write it and which
//! permissions show it (docs/compatibility.md §1, §6). Filtering, write authorization and type checks
//! all query this table; no handler keeps its own list of fields.
//!
//! One file because it is one table: every field of every element is a row here, so what can
//! be said of a field is found in one place (most of the length is the rows themselves).
//!
//! Fields whose `read` set is empty are *internal*: stored, never shown (the write-only `eta`,
//! labels of Protects and cameras).

use std::collections::HashMap;
use std::sync::LazyLock;

use crate::permission::{Permission as P, PermissionSet};

/// The kinds of element in the document.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Entity {
    Thermostat,
    SmokeCoAlarm,
    Camera,
    Structure,
    Metadata,
}

impl Entity {
    /// The device collection key under `/devices`, for device entities.
    pub fn collection(self) -> Option<&'static str> {
        match self {
            Entity::Thermostat => Some("thermostats"),
            Entity::SmokeCoAlarm => Some("smoke_co_alarms"),
            Entity::Camera => Some("cameras"),
            Entity::Structure | Entity::Metadata => None,
        }
    }

    pub fn from_collection(key: &str) -> Option<Entity> {
        match key {
            "thermostats" => Some(Entity::Thermostat),
            "smoke_co_alarms" => Some(Entity::SmokeCoAlarm),
            "cameras" => Some(Entity::Camera),
            _ => None,
        }
    }

    pub const DEVICE_KINDS: [Entity; 3] = [Entity::Thermostat, Entity::SmokeCoAlarm, Entity::Camera];

    /// The word used in `name_long` ("Hallway Thermostat (upstairs)").
    pub fn long_name_word(self) -> &'static str {
        match self {
            Entity::Thermostat => "Thermostat",
            Entity::SmokeCoAlarm => "Nest Protect",
            Entity::Camera => "Camera",
            Entity::Structure | Entity::Metadata => "",
        }
    }
}

/// Units of numeric fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unit {
    None,
    Fahrenheit,
    Celsius,
    Percent,
    Minutes,
}

/// JSON type and allowed values of a field.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum FieldType {
    Bool,
    /// A free string of at most `max` characters.
    Text {
        max: usize,
    },
    /// One of a fixed list of strings.
    Enum(&'static [&'static str]),
    /// Whole degrees Fahrenheit (integer), within the absolute range 50–90 when a target.
    TempF,
    /// Degrees Celsius in 0.5 steps.
    TempC,
    /// An integer within an inclusive range.
    Int {
        min: i64,
        max: i64,
    },
    /// An integer from a fixed list.
    IntChoice(&'static [i64]),
    /// ISO 8601 UTC with milliseconds and `Z`.
    Timestamp,
    /// `~N`, `<N` or `>N` minutes.
    TimeToTarget,
    /// An array of device id strings.
    IdList,
    /// A JSON object whose members have their own rows (`last_event/…`) or a shape of its own
    /// (`eta`, `wheres`, `devices`).
    Object,
    /// A JSON array with a shape of its own (`activity_zones`).
    Array,
}

/// Who may write a field, besides the service itself (home logic and admin).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WriteAccess {
    /// Products holding any of these permissions.
    pub products: PermissionSet,
    /// The device the field belongs to, with its own device credential.
    pub device: bool,
}

/// One row of the schema.
#[derive(Debug, Clone, Copy)]
pub struct FieldSpec {
    pub entity: Entity,
    /// Field name, or `parent/child` for members of an object field.
    pub path: &'static str,
    pub ty: FieldType,
    pub unit: Unit,
    /// Permissions any one of which shows the field. Empty: internal, never shown.
    pub read: PermissionSet,
    pub write: WriteAccess,
    pub doc: &'static str,
}

impl FieldSpec {
    pub fn is_internal(&self) -> bool {
        self.read.is_empty()
    }
}

pub const HVAC_MODES: &[&str] = &["heat", "cool", "heat-cool", "eco", "off"];
pub const PREVIOUS_HVAC_MODES: &[&str] = &["heat", "cool", "heat-cool", "eco", "off", ""];
pub const HVAC_STATES: &[&str] = &["heating", "cooling", "off"];
pub const SCALES: &[&str] = &["C", "F"];
pub const AWAY_WRITABLE: &[&str] = &["home", "away"];
pub const AWAY_STATES: &[&str] = &["home", "away", "unknown"];
pub const ALARM_STATES: &[&str] = &["ok", "warning", "emergency"];
pub const BATTERY_HEALTH: &[&str] = &["ok", "replace"];
pub const UI_COLORS: &[&str] = &["gray", "green", "yellow", "red"];
pub const SECURITY_STATES: &[&str] = &["ok", "deter"];
pub const TRAINING: &[&str] = &["training", "ready"];
pub const SYNC_STATES: &[&str] = &["synced", "pending"];
/// `user` (a person, through an app or the device), `assist` (Home/Away Assist), `service`
/// (an operator).
pub const AWAY_SETTERS: &[&str] = &["user", "assist", "service"];
const VERSION: FieldType = FieldType::Int { min: 0, max: i64::MAX };
/// Fan timer durations in minutes (thermostat guide).
pub const FAN_DURATIONS: &[i64] = &[15, 30, 45, 60, 120, 240, 480, 720];

const THERMOSTAT: PermissionSet = PermissionSet::of(&[P::ThermostatRead, P::ThermostatReadWrite]);
const SMOKE: PermissionSet = PermissionSet::of(&[P::SmokeCoRead]);
const CAMERA: PermissionSet =
    PermissionSet::of(&[P::CameraRead, P::CameraReadWrite, P::CameraReadImages, P::CameraReadWriteImages]);
const CAMERA_IMAGES: PermissionSet = PermissionSet::of(&[P::CameraReadImages, P::CameraReadWriteImages]);
const CAMERA_WRITE: PermissionSet = PermissionSet::of(&[P::CameraReadWrite, P::CameraReadWriteImages]);
/// Any permission that shows a structure at all: its id, name, country and time zone.
const STRUCTURE_ANY: PermissionSet = PermissionSet::of(&[
    P::ThermostatRead,
    P::ThermostatReadWrite,
    P::SmokeCoRead,
    P::CameraRead,
    P::CameraReadWrite,
    P::CameraReadImages,
    P::CameraReadWriteImages,
    P::AwayRead,
    P::AwayReadWrite,
    P::EtaWrite,
    P::PostalCodeRead,
    P::EnergyRead,
    P::SecurityStateRead,
    P::StructureReadWrite,
    P::ProductDataReadWrite,
]);
/// Permissions that show the structure's device lists.
const DEVICE_LISTS: PermissionSet = PermissionSet::of(&[
    P::ThermostatRead,
    P::ThermostatReadWrite,
    P::SmokeCoRead,
    P::CameraRead,
    P::CameraReadWrite,
    P::CameraReadImages,
    P::CameraReadWriteImages,
    P::AwayRead,
    P::AwayReadWrite,
    P::EtaWrite,
    P::StructureReadWrite,
]);
const AWAY_READERS: PermissionSet = PermissionSet::of(&[
    P::AwayRead,
    P::AwayReadWrite,
    P::ThermostatRead,
    P::ThermostatReadWrite,
    P::SmokeCoRead,
    P::StructureReadWrite,
]);
const WHERES_READERS: PermissionSet = PermissionSet::of(&[
    P::ThermostatRead,
    P::ThermostatReadWrite,
    P::SmokeCoRead,
    P::CameraRead,
    P::CameraReadWrite,
    P::CameraReadImages,
    P::CameraReadWriteImages,
    P::ProductDataReadWrite,
]);
const NOBODY: PermissionSet = PermissionSet::EMPTY;
const EVERYONE: PermissionSet = STRUCTURE_ANY;

const fn ro() -> WriteAccess {
    WriteAccess { products: NOBODY, device: false }
}
const fn dev() -> WriteAccess {
    WriteAccess { products: NOBODY, device: true }
}
const fn prod_dev(p: PermissionSet) -> WriteAccess {
    WriteAccess { products: p, device: true }
}
const fn prod(p: PermissionSet) -> WriteAccess {
    WriteAccess { products: p, device: false }
}
const T_RW: PermissionSet = PermissionSet::of(&[P::ThermostatReadWrite]);

const fn f(
    entity: Entity,
    path: &'static str,
    ty: FieldType,
    unit: Unit,
    read: PermissionSet,
    write: WriteAccess,
    doc: &'static str,
) -> FieldSpec {
    FieldSpec { entity, path, ty, unit, read, write, doc }
}

use Entity::{Camera as C, Metadata as M, SmokeCoAlarm as S, Structure as St, Thermostat as T};
use FieldType as Ty;
use Unit as U;

const ID: FieldType = Ty::Text { max: 128 };
const NAME: FieldType = Ty::Text { max: 256 };
const URL: FieldType = Ty::Text { max: 2048 };

/// The table. Order is the documentation order (and the order of `roost schema`).
pub static FIELDS: &[FieldSpec] = &[
    // ---- Thermostat (docs/compatibility.md §1) ----
    f(T, "device_id", ID, U::None, THERMOSTAT, ro(), "Same as the object key."),
    f(T, "locale", Ty::Text { max: 16 }, U::None, THERMOSTAT, dev(), "Language and region, e.g. en-US."),
    f(T, "software_version", Ty::Text { max: 32 }, U::None, THERMOSTAT, dev(), "Firmware version."),
    f(T, "structure_id", ID, U::None, THERMOSTAT, ro(), "Parent structure."),
    f(T, "name", NAME, U::None, THERMOSTAT, ro(), "Where name, plus the label in parentheses (derived)."),
    f(T, "name_long", NAME, U::None, THERMOSTAT, ro(), "Where name, 'Thermostat', label (derived)."),
    f(T, "last_connection", Ty::Timestamp, U::None, THERMOSTAT, ro(), "Last contact with the service."),
    f(T, "is_online", Ty::Bool, U::None, THERMOSTAT, ro(), "Connected to the service."),
    f(T, "where_id", ID, U::None, THERMOSTAT, ro(), "Key into the structure's wheres."),
    f(T, "where_name", NAME, U::None, THERMOSTAT, ro(), "Name of the where (derived)."),
    f(T, "label", Ty::Text { max: 64 }, U::None, THERMOSTAT, prod_dev(T_RW), "User's custom label."),
    f(T, "can_cool", Ty::Bool, U::None, THERMOSTAT, ro(), "The HVAC system can cool."),
    f(T, "can_heat", Ty::Bool, U::None, THERMOSTAT, ro(), "The HVAC system can heat."),
    f(
        T,
        "is_using_emergency_heat",
        Ty::Bool,
        U::None,
        THERMOSTAT,
        dev(),
        "Heat pump emergency heat is on; no cooling modes meanwhile.",
    ),
    f(T, "has_fan", Ty::Bool, U::None, THERMOSTAT, ro(), "The fan can run on its own."),
    f(
        T,
        "fan_timer_active",
        Ty::Bool,
        U::None,
        THERMOSTAT,
        prod_dev(T_RW),
        "Run the fan for fan_timer_duration; false stops it.",
    ),
    f(
        T,
        "fan_timer_timeout",
        Ty::Timestamp,
        U::None,
        THERMOSTAT,
        ro(),
        "When the running fan timer ends; epoch when none (derived).",
    ),
    f(
        T,
        "fan_timer_duration",
        Ty::IntChoice(FAN_DURATIONS),
        U::Minutes,
        THERMOSTAT,
        prod_dev(T_RW),
        "Fan timer length.",
    ),
    f(T, "has_leaf", Ty::Bool, U::None, THERMOSTAT, dev(), "An energy-saving temperature is set."),
    f(
        T,
        "temperature_scale",
        Ty::Enum(SCALES),
        U::None,
        THERMOSTAT,
        prod_dev(T_RW),
        "Display scale on the device.",
    ),
    f(
        T,
        "target_temperature_f",
        Ty::TempF,
        U::Fahrenheit,
        THERMOSTAT,
        prod_dev(T_RW),
        "Target in heat or cool mode, 50-90.",
    ),
    f(
        T,
        "target_temperature_c",
        Ty::TempC,
        U::Celsius,
        THERMOSTAT,
        prod_dev(T_RW),
        "Target in heat or cool mode, 9-32.",
    ),
    f(
        T,
        "target_temperature_high_f",
        Ty::TempF,
        U::Fahrenheit,
        THERMOSTAT,
        prod_dev(T_RW),
        "Cool-to target in heat-cool mode.",
    ),
    f(
        T,
        "target_temperature_high_c",
        Ty::TempC,
        U::Celsius,
        THERMOSTAT,
        prod_dev(T_RW),
        "Cool-to target in heat-cool mode.",
    ),
    f(
        T,
        "target_temperature_low_f",
        Ty::TempF,
        U::Fahrenheit,
        THERMOSTAT,
        prod_dev(T_RW),
        "Heat-to target in heat-cool mode.",
    ),
    f(
        T,
        "target_temperature_low_c",
        Ty::TempC,
        U::Celsius,
        THERMOSTAT,
        prod_dev(T_RW),
        "Heat-to target in heat-cool mode.",
    ),
    f(T, "eco_temperature_high_f", Ty::TempF, U::Fahrenheit, THERMOSTAT, dev(), "Eco cool-to limit."),
    f(T, "eco_temperature_high_c", Ty::TempC, U::Celsius, THERMOSTAT, dev(), "Eco cool-to limit."),
    f(T, "eco_temperature_low_f", Ty::TempF, U::Fahrenheit, THERMOSTAT, dev(), "Eco heat-to limit."),
    f(T, "eco_temperature_low_c", Ty::TempC, U::Celsius, THERMOSTAT, dev(), "Eco heat-to limit."),
    f(
        T,
        "away_temperature_high_f",
        Ty::TempF,
        U::Fahrenheit,
        THERMOSTAT,
        ro(),
        "Deprecated name of eco_temperature_high_f (derived).",
    ),
    f(
        T,
        "away_temperature_high_c",
        Ty::TempC,
        U::Celsius,
        THERMOSTAT,
        ro(),
        "Deprecated name of eco_temperature_high_c (derived).",
    ),
    f(
        T,
        "away_temperature_low_f",
        Ty::TempF,
        U::Fahrenheit,
        THERMOSTAT,
        ro(),
        "Deprecated name of eco_temperature_low_f (derived).",
    ),
    f(
        T,
        "away_temperature_low_c",
        Ty::TempC,
        U::Celsius,
        THERMOSTAT,
        ro(),
        "Deprecated name of eco_temperature_low_c (derived).",
    ),
    f(
        T,
        "ambient_temperature_f",
        Ty::Int { min: -40, max: 160 },
        U::Fahrenheit,
        THERMOSTAT,
        dev(),
        "Measured temperature, whole degrees.",
    ),
    f(
        T,
        "ambient_temperature_c",
        Ty::TempC,
        U::Celsius,
        THERMOSTAT,
        dev(),
        "Measured temperature, 0.5 steps.",
    ),
    f(
        T,
        "humidity",
        Ty::Int { min: 0, max: 100 },
        U::Percent,
        THERMOSTAT,
        dev(),
        "Measured humidity, nearest 5%.",
    ),
    f(
        T,
        "hvac_mode",
        Ty::Enum(HVAC_MODES),
        U::None,
        THERMOSTAT,
        prod_dev(T_RW),
        "heat, cool, heat-cool, eco or off.",
    ),
    f(
        T,
        "previous_hvac_mode",
        Ty::Enum(PREVIOUS_HVAC_MODES),
        U::None,
        THERMOSTAT,
        ro(),
        "Last mode before eco (derived).",
    ),
    f(
        T,
        "hvac_state",
        Ty::Enum(HVAC_STATES),
        U::None,
        THERMOSTAT,
        dev(),
        "What the HVAC is doing: heating, cooling or off.",
    ),
    f(
        T,
        "is_locked",
        Ty::Bool,
        U::None,
        THERMOSTAT,
        dev(),
        "Thermostat Lock: targets limited to locked_temp_*.",
    ),
    f(T, "locked_temp_min_f", Ty::TempF, U::Fahrenheit, THERMOSTAT, dev(), "Lock range low end."),
    f(T, "locked_temp_max_f", Ty::TempF, U::Fahrenheit, THERMOSTAT, dev(), "Lock range high end."),
    f(T, "locked_temp_min_c", Ty::TempC, U::Celsius, THERMOSTAT, dev(), "Lock range low end."),
    f(T, "locked_temp_max_c", Ty::TempC, U::Celsius, THERMOSTAT, dev(), "Lock range high end."),
    f(T, "sunlight_correction_enabled", Ty::Bool, U::None, THERMOSTAT, dev(), "Sunblock enabled."),
    f(T, "sunlight_correction_active", Ty::Bool, U::None, THERMOSTAT, dev(), "In direct sun now."),
    f(
        T,
        "time_to_target",
        Ty::TimeToTarget,
        U::Minutes,
        THERMOSTAT,
        dev(),
        "Minutes to reach target: ~N, <N or >N.",
    ),
    f(T, "time_to_target_training", Ty::Enum(TRAINING), U::None, THERMOSTAT, dev(), "training or ready."),
    // ---- Smoke + CO alarm (§1.4) ----
    f(S, "device_id", ID, U::None, SMOKE, ro(), "Same as the object key."),
    f(S, "locale", Ty::Text { max: 16 }, U::None, SMOKE, dev(), "Language and region."),
    f(S, "software_version", Ty::Text { max: 32 }, U::None, SMOKE, dev(), "Firmware version."),
    f(S, "structure_id", ID, U::None, SMOKE, ro(), "Parent structure."),
    f(S, "name", NAME, U::None, SMOKE, ro(), "Where name and label (derived)."),
    f(S, "name_long", NAME, U::None, SMOKE, ro(), "Where name, 'Nest Protect', label (derived)."),
    f(S, "last_connection", Ty::Timestamp, U::None, SMOKE, ro(), "Last contact with the service."),
    f(S, "is_online", Ty::Bool, U::None, SMOKE, ro(), "Connected to the service."),
    f(S, "where_id", ID, U::None, SMOKE, ro(), "Key into the structure's wheres."),
    f(S, "where_name", NAME, U::None, SMOKE, ro(), "Name of the where (derived)."),
    f(
        S,
        "label",
        Ty::Text { max: 64 },
        U::None,
        NOBODY,
        ro(),
        "Label set in the app; shown only inside name and name_long.",
    ),
    f(S, "battery_health", Ty::Enum(BATTERY_HEALTH), U::None, SMOKE, dev(), "ok or replace."),
    f(S, "co_alarm_state", Ty::Enum(ALARM_STATES), U::None, SMOKE, dev(), "ok, warning or emergency."),
    f(S, "smoke_alarm_state", Ty::Enum(ALARM_STATES), U::None, SMOKE, dev(), "ok, warning or emergency."),
    f(S, "is_manual_test_active", Ty::Bool, U::None, SMOKE, dev(), "Manual test in progress."),
    f(S, "last_manual_test_time", Ty::Timestamp, U::None, SMOKE, dev(), "Last successful manual test."),
    f(
        S,
        "ui_color_state",
        Ty::Enum(UI_COLORS),
        U::None,
        SMOKE,
        ro(),
        "gray, green, yellow or red (derived).",
    ),
    // ---- Camera (§1.5) ----
    f(C, "device_id", ID, U::None, CAMERA, ro(), "Same as the object key."),
    f(C, "software_version", Ty::Text { max: 32 }, U::None, CAMERA, dev(), "Firmware version."),
    f(C, "structure_id", ID, U::None, CAMERA, ro(), "Parent structure."),
    f(C, "where_id", ID, U::None, CAMERA, ro(), "Key into the structure's wheres."),
    f(C, "where_name", NAME, U::None, CAMERA, ro(), "Name of the where (derived)."),
    f(C, "name", NAME, U::None, CAMERA, ro(), "Where name and label (derived)."),
    f(C, "name_long", NAME, U::None, CAMERA, ro(), "Where name, 'Camera', label (derived)."),
    f(
        C,
        "label",
        Ty::Text { max: 64 },
        U::None,
        NOBODY,
        ro(),
        "Label set in the app; shown only inside name and name_long.",
    ),
    f(C, "is_online", Ty::Bool, U::None, CAMERA, ro(), "Connected to the service."),
    f(C, "is_streaming", Ty::Bool, U::None, CAMERA, prod_dev(CAMERA_WRITE), "Camera on or off."),
    f(C, "is_audio_input_enabled", Ty::Bool, U::None, CAMERA, dev(), "Microphone on."),
    f(C, "last_is_online_change", Ty::Timestamp, U::None, CAMERA, ro(), "When is_online last changed."),
    f(C, "is_video_history_enabled", Ty::Bool, U::None, CAMERA, ro(), "Video history subscription active."),
    f(C, "web_url", URL, U::None, CAMERA, ro(), "Live view link."),
    f(C, "app_url", URL, U::None, CAMERA, ro(), "App deep link."),
    f(C, "is_public_share_enabled", Ty::Bool, U::None, CAMERA_IMAGES, ro(), "Public sharing on."),
    f(C, "public_share_url", URL, U::None, CAMERA_IMAGES, ro(), "Public share link."),
    f(C, "snapshot_url", URL, U::None, CAMERA_IMAGES, ro(), "Still image link."),
    f(C, "activity_zones", Ty::Array, U::None, CAMERA_IMAGES, ro(), "Array of {name, id}."),
    f(C, "last_event", Ty::Object, U::None, CAMERA, dev(), "Last motion, sound or person event."),
    f(C, "last_event/has_sound", Ty::Bool, U::None, CAMERA, dev(), "Sound detected."),
    f(C, "last_event/has_motion", Ty::Bool, U::None, CAMERA, dev(), "Motion detected."),
    f(C, "last_event/has_person", Ty::Bool, U::None, CAMERA, dev(), "Person detected."),
    f(C, "last_event/start_time", Ty::Timestamp, U::None, CAMERA, dev(), "Event start."),
    f(C, "last_event/end_time", Ty::Timestamp, U::None, CAMERA, dev(), "Event end; absent while ongoing."),
    f(C, "last_event/urls_expire_time", Ty::Timestamp, U::None, CAMERA, dev(), "Expiry of the event links."),
    f(C, "last_event/web_url", URL, U::None, CAMERA, dev(), "Event link."),
    f(C, "last_event/app_url", URL, U::None, CAMERA, dev(), "Event app link."),
    f(C, "last_event/image_url", URL, U::None, CAMERA_IMAGES, dev(), "Event image."),
    f(C, "last_event/animated_image_url", URL, U::None, CAMERA_IMAGES, dev(), "Event GIF."),
    f(C, "last_event/activity_zone_ids", Ty::Array, U::None, CAMERA_IMAGES, dev(), "Zone ids as strings."),
    // ---- Structure (§1.6, §1.7) ----
    f(St, "structure_id", ID, U::None, STRUCTURE_ANY, ro(), "Same as the object key."),
    f(St, "name", NAME, U::None, EVERYONE, prod(PermissionSet::of(&[P::StructureReadWrite])), "Home name."),
    f(St, "thermostats", Ty::IdList, U::None, DEVICE_LISTS, ro(), "Thermostat ids (derived)."),
    f(St, "smoke_co_alarms", Ty::IdList, U::None, DEVICE_LISTS, ro(), "Protect ids (derived)."),
    f(St, "cameras", Ty::IdList, U::None, DEVICE_LISTS, ro(), "Camera ids (derived)."),
    f(
        St,
        "devices",
        Ty::Object,
        U::None,
        PermissionSet::of(&[P::ProductDataReadWrite]),
        ro(),
        "Product data ids by company and type (derived).",
    ),
    f(
        St,
        "away",
        Ty::Enum(AWAY_STATES),
        U::None,
        AWAY_READERS,
        prod(PermissionSet::of(&[P::AwayReadWrite])),
        "home or away (unknown is read-only).",
    ),
    f(St, "country_code", Ty::Text { max: 2 }, U::None, STRUCTURE_ANY, ro(), "ISO 3166-1 alpha-2."),
    f(
        St,
        "postal_code",
        Ty::Text { max: 16 },
        U::None,
        PermissionSet::of(&[P::PostalCodeRead]),
        ro(),
        "Postal code.",
    ),
    f(St, "time_zone", Ty::Text { max: 64 }, U::None, STRUCTURE_ANY, ro(), "IANA time zone."),
    f(
        St,
        "peak_period_start_time",
        Ty::Timestamp,
        U::None,
        PermissionSet::of(&[P::EnergyRead]),
        ro(),
        "Rush Hour event start.",
    ),
    f(
        St,
        "peak_period_end_time",
        Ty::Timestamp,
        U::None,
        PermissionSet::of(&[P::EnergyRead]),
        ro(),
        "Rush Hour event end.",
    ),
    f(
        St,
        "rhr_enrollment",
        Ty::Bool,
        U::None,
        PermissionSet::of(&[P::EnergyRead]),
        ro(),
        "Enrolled in Rush Hour Rewards.",
    ),
    f(
        St,
        "eta",
        Ty::Object,
        U::None,
        NOBODY,
        prod(PermissionSet::of(&[P::EtaWrite])),
        "Write-only trip estimate {trip_id, estimated_arrival_window_begin, _end}.",
    ),
    f(
        St,
        "eta_begin",
        Ty::Timestamp,
        U::None,
        PermissionSet::of(&[P::EtaWrite]),
        ro(),
        "Earliest arrival of the active ETA (derived).",
    ),
    f(
        St,
        "co_alarm_state",
        Ty::Enum(ALARM_STATES),
        U::None,
        SMOKE,
        ro(),
        "Worst CO state of the Protects (derived).",
    ),
    f(
        St,
        "smoke_alarm_state",
        Ty::Enum(ALARM_STATES),
        U::None,
        SMOKE,
        ro(),
        "Worst smoke state of the Protects (derived).",
    ),
    f(
        St,
        "wwn_security_state",
        Ty::Enum(SECURITY_STATES),
        U::None,
        PermissionSet::of(&[P::SecurityStateRead]),
        ro(),
        "ok or deter.",
    ),
    f(
        St,
        "wheres",
        Ty::Object,
        U::None,
        WHERES_READERS,
        prod(PermissionSet::of(&[P::ProductDataReadWrite])),
        "Rooms by where_id; a write of {\"name\"} creates one.",
    ),
    // ---- Metadata (§1.9) ----
    f(M, "access_token", Ty::Text { max: 128 }, U::None, EVERYONE, ro(), "The token of this session."),
    f(
        M,
        "client_version",
        Ty::Int { min: 1, max: i64::MAX },
        U::None,
        EVERYONE,
        ro(),
        "Product version the user authorized.",
    ),
    f(M, "user_id", ID, U::None, EVERYONE, ro(), "Obfuscated user id."),
    // Roost additions (docs/compatibility.md: "extended"): intended vs reported state, and
    // the signals of connectivity and occupancy, for every device kind.
    f(T, "intended_version", VERSION, U::None, THERMOSTAT, ro(), "Counts changes of intended fields."),
    f(T, "applied_version", VERSION, U::None, THERMOSTAT, dev(), "The intended_version the device applied."),
    f(T, "sync_state", Ty::Enum(SYNC_STATES), U::None, THERMOSTAT, ro(), "synced or pending (derived)."),
    f(T, "last_is_online_change", Ty::Timestamp, U::None, THERMOSTAT, ro(), "When is_online last changed."),
    f(T, "last_motion_at", Ty::Timestamp, U::None, THERMOSTAT, dev(), "Occupancy sensor's last motion."),
    f(T, "reported_at", Ty::Object, U::None, NOBODY, ro(), "Measurement time of each reported field."),
    f(S, "intended_version", VERSION, U::None, SMOKE, ro(), "Counts changes of intended fields."),
    f(S, "applied_version", VERSION, U::None, SMOKE, dev(), "The intended_version the device applied."),
    f(S, "sync_state", Ty::Enum(SYNC_STATES), U::None, SMOKE, ro(), "synced or pending (derived)."),
    f(S, "last_is_online_change", Ty::Timestamp, U::None, SMOKE, ro(), "When is_online last changed."),
    f(S, "last_motion_at", Ty::Timestamp, U::None, SMOKE, dev(), "Occupancy sensor's last motion."),
    f(S, "reported_at", Ty::Object, U::None, NOBODY, ro(), "Measurement time of each reported field."),
    f(C, "intended_version", VERSION, U::None, CAMERA, ro(), "Counts changes of intended fields."),
    f(C, "applied_version", VERSION, U::None, CAMERA, dev(), "The intended_version the device applied."),
    f(C, "sync_state", Ty::Enum(SYNC_STATES), U::None, CAMERA, ro(), "synced or pending (derived)."),
    f(C, "last_connection", Ty::Timestamp, U::None, CAMERA, ro(), "Last contact with the service."),
    f(C, "reported_at", Ty::Object, U::None, NOBODY, ro(), "Measurement time of each reported field."),
    f(St, "last_presence_at", Ty::Timestamp, U::None, AWAY_READERS, ro(), "Last occupancy signal (derived)."),
    f(St, "away_set_by", Ty::Enum(AWAY_SETTERS), U::None, AWAY_READERS, ro(), "Who last changed away."),
    f(St, "away_changed_at", Ty::Timestamp, U::None, AWAY_READERS, ro(), "When away last changed."),
];

/// Permissions that show and write product data (`devices/$company/$product_type/<id>`, §1.10).
/// Product data is free-form beneath its id, so it has no per-field rows.
pub const PRODUCT_DATA: PermissionSet = PermissionSet::of(&[P::ProductDataReadWrite]);

static INDEX: LazyLock<HashMap<(Entity, &'static str), &'static FieldSpec>> =
    LazyLock::new(|| FIELDS.iter().map(|s| ((s.entity, s.path), s)).collect());

/// The row of a field, if the field exists.
pub fn field(entity: Entity, path: &str) -> Option<&'static FieldSpec> {
    INDEX.get(&(entity, path)).copied()
}

static PARENTS: LazyLock<std::collections::HashSet<(Entity, &'static str)>> =
    LazyLock::new(|| FIELDS.iter().filter_map(|s| Some((s.entity, s.path.split_once('/')?.0))).collect());

/// True when an object field has member rows of its own (`last_event`), so filtering goes
/// inside it.
/// The known top-level field of `entity` that `name` most likely meant, for an error about a
/// misspelled field: at most two edits away, or an abbreviation of it (`target_temp_f`).
pub fn closest_field(entity: Entity, name: &str) -> Option<&'static str> {
    top_fields(entity)
        .filter(|f| edit_distance(f.path, name) <= 2 || abbreviates(name, f.path))
        .min_by_key(|f| edit_distance(f.path, name))
        .map(|f| f.path)
}

/// Whether `short` is `long` with letters left out, starting alike.
fn abbreviates(short: &str, long: &str) -> bool {
    let mut rest = long.chars();
    short.chars().next() == long.chars().next() && short.chars().all(|c| rest.any(|l| l == c))
}

/// Levenshtein distance (fields are short ASCII names).
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut diagonal = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let above = row[j + 1];
            row[j + 1] = (above + 1).min(row[j] + 1).min(diagonal + usize::from(ca != *cb));
            diagonal = above;
        }
    }
    row[b.len()]
}

pub fn has_members(entity: Entity, path: &str) -> bool {
    PARENTS.contains(&(entity, path))
}

/// All rows of one entity, top-level fields only.
pub fn top_fields(entity: Entity) -> impl Iterator<Item = &'static FieldSpec> {
    FIELDS.iter().filter(move |s| s.entity == entity && !s.path.contains('/'))
}

/// Intended fields of a device kind: the ones products may write (targets, modes, the fan
/// timer, streaming). A change to one is what a device must apply.
pub fn intended_fields(kind: Entity) -> &'static [&'static str] {
    static BY_KIND: LazyLock<HashMap<Entity, Vec<&'static str>>> = LazyLock::new(|| {
        let mut m: HashMap<Entity, Vec<&'static str>> = HashMap::new();
        for s in FIELDS.iter().filter(|s| !s.write.products.is_empty() && s.entity.collection().is_some()) {
            m.entry(s.entity).or_default().push(s.path);
        }
        m
    });
    BY_KIND.get(&kind).map(Vec::as_slice).unwrap_or(&[])
}

/// A field only the device itself reports (a measurement or a device-side state).
pub fn is_reported(entity: Entity, path: &str) -> bool {
    field(entity, path).is_some_and(|s| s.write.device && s.write.products.is_empty())
}

/// Every field name a permission set may write, per entity: the write set of a grant.
pub fn write_set(perms: PermissionSet) -> Vec<&'static FieldSpec> {
    FIELDS.iter().filter(|s| s.write.products.intersects(perms)).collect()
}

/// Every field a permission set shows.
pub fn read_set(perms: PermissionSet) -> Vec<&'static FieldSpec> {
    FIELDS.iter().filter(|s| s.read.intersects(perms)).collect()
}

/// Twin pairs kept in both scales: `(fahrenheit, celsius)`.
pub const TWINS: &[(&str, &str)] = &[
    ("target_temperature_f", "target_temperature_c"),
    ("target_temperature_low_f", "target_temperature_low_c"),
    ("target_temperature_high_f", "target_temperature_high_c"),
    ("eco_temperature_low_f", "eco_temperature_low_c"),
    ("eco_temperature_high_f", "eco_temperature_high_c"),
    ("ambient_temperature_f", "ambient_temperature_c"),
    ("locked_temp_min_f", "locked_temp_min_c"),
    ("locked_temp_max_f", "locked_temp_max_c"),
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_duplicate_rows() {
        assert_eq!(INDEX.len(), FIELDS.len());
    }

    #[test]
    fn nested_rows_have_an_object_parent() {
        for s in FIELDS.iter().filter(|s| s.path.contains('/')) {
            let parent = s.path.split('/').next().unwrap();
            let p = field(s.entity, parent).unwrap_or_else(|| panic!("no parent for {}", s.path));
            assert_eq!(p.ty, FieldType::Object, "{}", s.path);
        }
    }

    #[test]
    fn products_write_only_what_the_catalogue_grants() {
        let thermostat_rw: Vec<_> =
            write_set(PermissionSet::of(&[P::ThermostatReadWrite])).iter().map(|s| s.path).collect();
        assert_eq!(
            thermostat_rw,
            [
                "label",
                "fan_timer_active",
                "fan_timer_duration",
                "temperature_scale",
                "target_temperature_f",
                "target_temperature_c",
                "target_temperature_high_f",
                "target_temperature_high_c",
                "target_temperature_low_f",
                "target_temperature_low_c",
                "hvac_mode",
            ]
        );
        assert!(write_set(PermissionSet::of(&[P::SmokeCoRead])).is_empty());
        let camera: Vec<_> =
            write_set(PermissionSet::of(&[P::CameraReadWrite])).iter().map(|s| s.path).collect();
        assert_eq!(camera, ["is_streaming"]);
    }

    #[test]
    fn image_fields_need_images() {
        let plain = read_set(PermissionSet::of(&[P::CameraRead]));
        assert!(!plain.iter().any(|s| s.path == "snapshot_url" || s.path == "last_event/image_url"));
        let images = read_set(PermissionSet::of(&[P::CameraReadImages]));
        assert!(images.iter().any(|s| s.path == "snapshot_url"));
        assert!(images.iter().any(|s| s.path == "last_event/activity_zone_ids"));
    }
}
