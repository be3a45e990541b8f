//! `roost sim`: simulated devices. Each is a real client of the server over HTTPS with its own
//! device credential: it follows its intended state through a stream of its own element
//! (resuming with `Last-Event-ID` after a disconnect), applies it, and reports what it
//! measures with an idempotency key and the measurement time, retrying until acknowledged.
//!
//! - Thermostats: a simple thermal model. Ambient moves toward the target while heating or
//!   cooling and drifts toward the outside temperature otherwise; `hvac_state`,
//!   `time_to_target` and humidity follow. Occupancy-sensor motion now and then.
//! - Protects: battery, manual test, smoke and CO events on command.
//! - Cameras: motion and person events (motion now and then, person on command), streaming
//!   on/off as intended.
//!
//! Faults (`--drop-rate`, `--latency-ms`, `--disconnect-secs`, `--clock-skew-secs`) apply to
//! every request until `--faults-secs` have passed. A dropped request is lost either before
//! the server sees it or after (the answer is lost): the device retries with the same key,
//! and the server must apply it exactly once.
//!
//! Commands on standard input, one per line: `smoke <id> warning|emergency|ok`,
//! `co <id> …`, `test <id>`, `battery <id> ok|replace`, `person <id>`, `motion <id>`,
//! `status`.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow};
use eventsource_stream::Eventsource;
use futures_util::StreamExt;
use roost_server::admin::DeviceCredential;
use serde::Serialize;
use serde_json::{Map, Value, json};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

mod thermal;

use thermal::Model;

/// Faults on the device's network.
#[derive(Debug, Clone, Default)]
pub struct Faults {
    /// Share of requests lost (half before the server, half on the way back).
    pub drop_rate: f64,
    /// Extra delay of each request, uniformly up to this many milliseconds.
    pub latency_ms: u64,
    /// The stream is cut this often.
    pub disconnect_secs: Option<u64>,
    /// The device's clock is off by this much (its measurement times are).
    pub clock_skew_secs: i64,
    /// Faults stop after this long (`None`: never).
    pub for_secs: Option<u64>,
}

#[derive(Debug, Clone)]
pub struct Options {
    pub url: String,
    pub ca: Option<PathBuf>,
    pub devices: Vec<DeviceCredential>,
    pub faults: Faults,
    /// Simulated seconds per real second.
    pub speed: f64,
    pub outside_f: f64,
    /// Motion events per device per simulated hour (occupancy sensors and cameras).
    pub motion_per_hour: f64,
    /// A JSON status file rewritten every second.
    pub status: Option<PathBuf>,
    /// Read commands from standard input.
    pub commands: bool,
    pub seed: u64,
}

/// What each simulated device did, for the status file and tests.
#[derive(Debug, Clone, Default, Serialize)]
pub struct DeviceStatus {
    pub kind: String,
    /// Reports sent for the first time (distinct idempotency keys).
    pub reports: u64,
    /// Reports the server acknowledged (each exactly once, after any retries).
    pub acknowledged: u64,
    /// Attempts lost by the faulty network.
    pub dropped: u64,
    /// Retries the server recognised as already applied (`Idempotent-Replayed`).
    pub replayed: u64,
    /// Stream (re)connections.
    pub connects: u64,
    /// The newest intended version seen on the stream, and the one applied.
    pub intended_version: u64,
    pub applied_version: u64,
    /// The device's own state, as it last reported it (acknowledged).
    pub reported: Map<String, Value>,
    /// Reports waiting to be sent or retried.
    pub pending: usize,
}

type Status = Arc<Mutex<BTreeMap<String, DeviceStatus>>>;

/// A small, seedable random source (xorshift64*); good enough for simulated noise.
#[derive(Debug, Clone)]
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Rng {
        Rng(seed.max(1))
    }
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    /// Uniform in [0, 1).
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// Runs every device until `shutdown`.
pub async fn run(options: Options, shutdown: CancellationToken) -> anyhow::Result<()> {
    let client = client(options.ca.as_ref())?;
    let status: Status = Arc::default();
    let started = Instant::now();
    let mut commands: BTreeMap<String, mpsc::Sender<Command>> = BTreeMap::new();
    let mut tasks = Vec::new();
    for (i, d) in options.devices.iter().enumerate() {
        let (tx, rx) = mpsc::channel(16);
        commands.insert(d.device_id.clone(), tx);
        let device = Device {
            client: client.clone(),
            options: options.clone(),
            credential: d.clone(),
            status: status.clone(),
            started,
            rng: Rng::new(options.seed.wrapping_add(i as u64 * 7919).wrapping_mul(2_654_435_761)),
        };
        let shutdown = shutdown.clone();
        tasks.push(tokio::spawn(async move { device.run(rx, shutdown).await }));
    }
    if options.commands {
        let commands = commands.clone();
        let status = status.clone();
        tokio::spawn(read_commands(commands, status));
    }
    if let Some(path) = options.status.clone() {
        let status = status.clone();
        let shutdown = shutdown.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_millis(500));
            while !shutdown.is_cancelled() {
                tick.tick().await;
                write_status(&path, &status);
            }
        });
    }
    shutdown.cancelled().await;
    for t in tasks {
        let _ = t.await;
    }
    if let Some(path) = &options.status {
        write_status(path, &status);
    }
    Ok(())
}

fn write_status(path: &std::path::Path, status: &Status) {
    let Ok(s) = status.lock().map(|s| s.clone()) else { return };
    let Ok(text) = serde_json::to_string_pretty(&s) else { return };
    let tmp = path.with_extension("tmp");
    if std::fs::write(&tmp, text).is_ok() {
        let _ = std::fs::rename(&tmp, path);
    }
}

fn client(ca: Option<&PathBuf>) -> anyhow::Result<reqwest::Client> {
    let mut b = reqwest::Client::builder().connect_timeout(Duration::from_secs(5)).http1_only();
    if let Some(ca) = ca {
        let pem = std::fs::read(ca).with_context(|| format!("reading CA {}", ca.display()))?;
        b = b.tls_certs_only([reqwest::Certificate::from_pem(&pem)?]);
    }
    Ok(b.build()?)
}

/// A command typed on standard input.
#[derive(Debug, Clone)]
enum Command {
    Alarm { which: &'static str, state: String },
    ManualTest,
    Battery(String),
    Person,
    Motion,
}

async fn read_commands(commands: BTreeMap<String, mpsc::Sender<Command>>, status: Status) {
    use tokio::io::AsyncBufReadExt;
    let mut lines = tokio::io::BufReader::new(tokio::io::stdin()).lines();
    while let Ok(Some(line)) = lines.next_line().await {
        let words: Vec<&str> = line.split_whitespace().collect();
        let command = match words.as_slice() {
            ["status"] => {
                if let Ok(s) = status.lock() {
                    println!("{}", serde_json::to_string(&*s).unwrap_or_default());
                }
                continue;
            }
            ["smoke", _, state] => Command::Alarm { which: "smoke_alarm_state", state: state.to_string() },
            ["co", _, state] => Command::Alarm { which: "co_alarm_state", state: state.to_string() },
            ["test", _] => Command::ManualTest,
            ["battery", _, state] => Command::Battery(state.to_string()),
            ["person", _] => Command::Person,
            ["motion", _] => Command::Motion,
            _ => {
                eprintln!("sim: unknown command '{line}'");
                continue;
            }
        };
        match words.get(1).and_then(|id| commands.get(*id)) {
            Some(tx) => {
                let _ = tx.send(command).await;
            }
            None => eprintln!("sim: no simulated device '{}'", words.get(1).unwrap_or(&"")),
        }
    }
}

/// One report: its key stays the same over retries.
#[derive(Debug, Clone)]
struct Report {
    key: String,
    fields: Map<String, Value>,
    measured: chrono::DateTime<chrono::Utc>,
}

struct Device {
    client: reqwest::Client,
    options: Options,
    credential: DeviceCredential,
    status: Status,
    started: Instant,
    rng: Rng,
}

/// What the stream tells the device: its intended state.
#[derive(Debug, Default)]
struct Intended {
    fields: Map<String, Value>,
    version: u64,
}

impl Device {
    fn faulty(&self) -> bool {
        self.options.faults.for_secs.is_none_or(|s| self.started.elapsed() < Duration::from_secs(s))
    }

    fn url(&self) -> String {
        format!("{}/devices/{}/{}", self.options.url, self.credential.kind, self.credential.device_id)
    }

    fn update(&self, f: impl FnOnce(&mut DeviceStatus)) {
        if let Ok(mut s) = self.status.lock() {
            let entry = s.entry(self.credential.device_id.clone()).or_default();
            if entry.kind.is_empty() {
                entry.kind = self.credential.kind.clone();
            }
            f(entry);
        }
    }

    async fn run(mut self, mut commands: mpsc::Receiver<Command>, shutdown: CancellationToken) {
        self.update(|_| {});
        let intended: Arc<Mutex<Intended>> = Arc::default();
        let stream = tokio::spawn(follow(
            self.client.clone(),
            self.url(),
            self.credential.device_token.clone(),
            intended.clone(),
            self.status.clone(),
            self.credential.device_id.clone(),
            self.options.faults.clone(),
            self.started,
            shutdown.clone(),
        ));
        let mut model = Model::default();
        let mut queue: std::collections::VecDeque<Report> = std::collections::VecDeque::new();
        let mut tick = tokio::time::interval(Duration::from_millis(500));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut last = Instant::now();
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => break,
                Some(c) = commands.recv() => {
                    if let Some(fields) = self.command(c) {
                        queue.push_back(self.report(fields));
                    }
                }
                _ = tick.tick(), if queue.is_empty() => {
                    // One report in flight at a time: the next step waits for its answer.
                    let dt = last.elapsed().as_secs_f64() * self.options.speed;
                    last = Instant::now();
                    let (fields, version) = match intended.lock() {
                        Ok(i) => (i.fields.clone(), i.version),
                        Err(_) => continue,
                    };
                    if fields.is_empty() {
                        continue; // nothing heard yet
                    }
                    if let Some(report) = self.step(&mut model, &fields, version, dt) {
                        queue.push_back(self.report(report));
                    }
                }
            }
            // Send what is queued, oldest first; a lost one is retried after a pause, same key.
            while let Some(r) = queue.front().cloned() {
                match self.send(&r).await {
                    Ok(()) => {
                        queue.pop_front();
                    }
                    Err(_) => {
                        tokio::select! {
                            _ = shutdown.cancelled() => break,
                            _ = tokio::time::sleep(Duration::from_millis(250)) => {}
                        }
                    }
                }
                if shutdown.is_cancelled() {
                    break;
                }
            }
            let pending = queue.len();
            self.update(|s| s.pending = pending);
        }
        stream.abort();
    }

    fn report(&mut self, fields: Map<String, Value>) -> Report {
        self.update(|s| s.reports += 1);
        let skew = if self.faulty() { self.options.faults.clock_skew_secs } else { 0 };
        Report {
            key: format!("{}-{:016x}", self.credential.device_id, self.rng.next()),
            fields,
            measured: chrono::Utc::now() + chrono::Duration::seconds(skew),
        }
    }

    /// One step of the device's life: apply what is intended, measure, and say what changed.
    fn step(
        &mut self,
        model: &mut Model,
        intended: &Map<String, Value>,
        version: u64,
        dt: f64,
    ) -> Option<Map<String, Value>> {
        let mut out = Map::new();
        let motion = self.rng.unit() < self.options.motion_per_hour * dt / 3600.0;
        let now = roost_model::units::format_time(chrono::Utc::now());
        match self.credential.kind.as_str() {
            "thermostats" => {
                model.thermostat(intended, self.options.outside_f, dt, &mut self.rng);
                for (k, v) in model.thermostat_report() {
                    if intended.get(&k) != Some(&v) {
                        out.insert(k, v);
                    }
                }
                if motion {
                    out.insert("last_motion_at".into(), Value::from(now));
                }
            }
            "cameras" if motion => {
                out.insert("last_event".into(), event(false, &now));
            }
            _ => {}
        }
        // Applying what is intended: this simple device applies it as soon as it hears it.
        let applied = intended.get("applied_version").and_then(Value::as_u64).unwrap_or(0);
        if version > applied && model.acknowledged_version < version {
            out.insert("applied_version".into(), Value::from(version));
            model.acknowledged_version = version;
        }
        self.update(|s| s.intended_version = version);
        (!out.is_empty()).then_some(out)
    }

    fn command(&mut self, c: Command) -> Option<Map<String, Value>> {
        let now = roost_model::units::format_time(chrono::Utc::now());
        let mut out = Map::new();
        match (self.credential.kind.as_str(), c) {
            ("smoke_co_alarms", Command::Alarm { which, state }) => {
                out.insert(which.into(), Value::from(state));
            }
            ("smoke_co_alarms", Command::ManualTest) => {
                out.insert("is_manual_test_active".into(), Value::from(false));
                out.insert("last_manual_test_time".into(), Value::from(now));
            }
            ("smoke_co_alarms", Command::Battery(state)) => {
                out.insert("battery_health".into(), Value::from(state));
            }
            ("cameras", Command::Person) => {
                out.insert("last_event".into(), event(true, &now));
            }
            ("cameras", Command::Motion) => {
                out.insert("last_event".into(), event(false, &now));
            }
            ("thermostats" | "smoke_co_alarms", Command::Motion) => {
                out.insert("last_motion_at".into(), Value::from(now));
            }
            (kind, c) => {
                eprintln!("sim: a {kind} cannot do {c:?}");
                return None;
            }
        }
        Some(out)
    }

    /// Sends one report through the faulty network. `Ok` once the server acknowledged it.
    async fn send(&mut self, r: &Report) -> anyhow::Result<()> {
        let faulty = self.faulty();
        let f = self.options.faults.clone();
        if faulty && f.latency_ms > 0 {
            let ms = (self.rng.unit() * f.latency_ms as f64) as u64;
            tokio::time::sleep(Duration::from_millis(ms)).await;
        }
        let lost = faulty && self.rng.unit() < f.drop_rate;
        let lost_before = lost && self.rng.unit() < 0.5;
        if lost_before {
            self.update(|s| s.dropped += 1);
            return Err(anyhow!("lost on the way"));
        }
        let resp = self
            .client
            .put(self.url())
            .bearer_auth(&self.credential.device_token)
            .header("idempotency-key", &r.key)
            .header("roost-measured-at", r.measured.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
            .json(&Value::Object(r.fields.clone()))
            .timeout(Duration::from_secs(10))
            .send()
            .await?;
        let ok = resp.status().is_success();
        let replayed = resp.headers().contains_key("idempotent-replayed");
        let status = resp.status();
        let body = resp.text().await.unwrap_or_default();
        if lost {
            // The server applied it; the answer never arrived.
            self.update(|s| s.dropped += 1);
            return Err(anyhow!("answer lost"));
        }
        if !ok {
            if status.is_client_error() && status != reqwest::StatusCode::TOO_MANY_REQUESTS {
                // Refused for good (a rule): drop it rather than retry forever.
                eprintln!("sim: {} report refused ({status}): {body}", self.credential.device_id);
                self.update(|s| s.acknowledged += 1);
                return Ok(());
            }
            return Err(anyhow!("server answered {status}"));
        }
        let fields = r.fields.clone();
        self.update(|s| {
            s.acknowledged += 1;
            if replayed {
                s.replayed += 1;
            }
            if let Some(v) = fields.get("applied_version").and_then(Value::as_u64) {
                s.applied_version = s.applied_version.max(v);
            }
            s.reported.extend(fields);
        });
        Ok(())
    }
}

fn event(person: bool, now: &str) -> Value {
    json!({
        "has_sound": false, "has_motion": true, "has_person": person,
        "start_time": now, "end_time": now,
    })
}

/// Follows the device's own element through a stream, reconnecting (and resuming from the
/// last event id) when it drops.
#[allow(clippy::too_many_arguments)]
async fn follow(
    client: reqwest::Client,
    url: String,
    token: String,
    intended: Arc<Mutex<Intended>>,
    status: Status,
    device_id: String,
    faults: Faults,
    started: Instant,
    shutdown: CancellationToken,
) {
    let mut last_id: Option<String> = None;
    while !shutdown.is_cancelled() {
        if let Ok(mut s) = status.lock() {
            s.entry(device_id.clone()).or_default().connects += 1;
        }
        let mut req = client.get(&url).bearer_auth(&token).header("accept", "text/event-stream");
        if let Some(id) = &last_id {
            req = req.header("last-event-id", id);
        }
        let faulty = faults.for_secs.is_none_or(|s| started.elapsed() < Duration::from_secs(s));
        let cut = match (faulty, faults.disconnect_secs) {
            (true, Some(s)) => Duration::from_secs(s.max(1)),
            _ => Duration::from_secs(24 * 3600),
        };
        let session = async {
            let resp = req.send().await.ok().filter(|r| r.status().is_success())?;
            // A real SSE parser: text is decoded across chunk boundaries (a character split
            // between two reads stays whole), events end at a blank line.
            let mut events = resp.bytes_stream().eventsource();
            while let Some(Ok(event)) = events.next().await {
                apply_event(&event, &mut last_id, &intended);
            }
            Some(())
        };
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(cut) => {}
            _ = session => {}
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// What one stream event tells a device: its id (to resume from), and on a `put` the intended
/// state of its element.
fn apply_event(event: &eventsource_stream::Event, last_id: &mut Option<String>, intended: &Mutex<Intended>) {
    if !event.id.is_empty() {
        *last_id = Some(event.id.clone());
    }
    if event.event == "put"
        && let Ok(v) = serde_json::from_str::<Value>(&event.data)
        && let (Some(fields), Ok(mut i)) = (v.get("data").and_then(Value::as_object), intended.lock())
    {
        i.version = fields.get("intended_version").and_then(Value::as_u64).unwrap_or(0);
        i.fields = fields.clone();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A character split between two reads of the stream reaches the device whole (decoding
    /// each read on its own turned it into U+FFFD).
    #[tokio::test]
    async fn a_character_split_across_reads_survives() {
        let text = "event: put\nid: s1:7\ndata: {\"path\":\"/\",\"data\":{\"label\":\"Salle à manger\",\"intended_version\":3}}\n\n";
        let split = text.find('à').map(|i| i + 1).unwrap_or(0);
        let (first, second) = text.as_bytes().split_at(split);
        assert!(std::str::from_utf8(first).is_err(), "the split is inside the character");
        let reads = futures_util::stream::iter([
            Ok::<_, std::convert::Infallible>(bytes::Bytes::copy_from_slice(first)),
            Ok(bytes::Bytes::copy_from_slice(second)),
        ]);
        let intended = Mutex::new(Intended::default());
        let mut last_id = None;
        let mut events = reads.eventsource();
        while let Some(Ok(event)) = events.next().await {
            apply_event(&event, &mut last_id, &intended);
        }
        let i = intended.lock().unwrap();
        assert_eq!(i.fields.get("label"), Some(&json!("Salle à manger")));
        assert_eq!(i.version, 3);
        assert_eq!(last_id.as_deref(), Some("s1:7"));
    }
}
