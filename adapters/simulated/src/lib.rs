//! Simulated devices: sine, step, random-walk and constant values, with optional outages.
//!
//! For demos and tests without hardware. One task serves every device of the adapter: it sleeps
//! until the next poll or outage edge of any device, emits what is due into the core's event
//! channel, and answers reads and writes from XMPP in between. Written values stick (the field
//! becomes constant until the next write), so a demo can show control working end to end. All
//! timing goes through `tokio::time`, so tests run with paused time and are exact.

use std::collections::VecDeque;
use std::f64::consts::TAU;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use gateway_api::{
    Adapter, AdapterContext, AdapterEvent, DeviceId, FieldSpec, FieldType, Quality, Reading,
    RequestError, RequestKind, Value, ValueError,
};
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use tokio::time::{sleep_until, Instant};
use tracing::{debug, trace, warn};

pub mod config;
pub use config::Simulated;

/// The reason a flapping device gives when it goes offline (also the `Unreachable` text).
pub const OUTAGE_REASON: &str = "simulated outage";

/// The shortest poll interval honoured; a zero `poll` would otherwise spin the task.
const MIN_POLL: Duration = Duration::from_millis(10);

/// How a simulated field produces values; the same meaning as the `generator` config keys.
#[derive(Debug, Clone, PartialEq)]
pub enum Generator {
    /// `min + (max-min) * (1 + sin(2πt/period)) / 2`, `t` counted from the adapter's start.
    Sine {
        min: f64,
        max: f64,
        period: Duration,
    },
    /// Starts at `start`, moves by (max-min)/10 each `period`; after passing `max` it goes back to
    /// `min` and cycles through the eleven points `min, min+step, …, max`.
    Step {
        min: f64,
        max: f64,
        period: Duration,
        start: f64,
    },
    /// A random walk starting at `start`: each poll moves it by up to ±(max-min)/20, kept within
    /// `[min, max]`.
    Random { min: f64, max: f64, start: f64 },
    /// Always this value (converted to the field's type).
    Constant { value: Value },
}

/// One field of a simulated device.
#[derive(Debug, Clone, PartialEq)]
pub struct SimField {
    pub spec: FieldSpec,
    pub generator: Generator,
}

/// One simulated device.
#[derive(Debug, Clone, PartialEq)]
pub struct SimDevice {
    pub id: DeviceId,
    /// Interval between readings (at least 10 ms is honoured).
    pub poll: Duration,
    /// Flapping: every `offline_every` (counted from the start) the device goes offline for
    /// `offline_for`. `None`, or a zero duration, means it never does.
    pub offline_every: Option<Duration>,
    pub offline_for: Duration,
    pub fields: Vec<SimField>,
}

/// The adapter: serves every configured simulated device from one task.
#[derive(Debug, Clone)]
pub struct SimulatedAdapter {
    /// The devices as configured; turned into running state when `run` starts.
    devices: Vec<SimDevice>,
    /// Seed of the random walks; `None` seeds from the OS (tests fix it to be reproducible).
    seed: Option<u64>,
}

impl SimulatedAdapter {
    pub fn new(devices: Vec<SimDevice>) -> Self {
        SimulatedAdapter {
            devices,
            seed: None,
        }
    }

    /// Makes the random walks reproducible.
    pub fn with_seed(mut self, seed: u64) -> Self {
        self.seed = Some(seed);
        self
    }
}

impl Adapter for SimulatedAdapter {
    async fn run(self, ctx: AdapterContext) {
        let AdapterContext {
            adapter,
            events,
            mut requests,
            shutdown,
        } = ctx;
        debug!(adapter = %adapter, devices = self.devices.len(), "Simulated adapter started");
        let mut sim = Sim::new(self, adapter.clone(), Instant::now());
        // Events produced but not yet accepted by the core. While any wait, no poll is taken
        // (back-pressure reaches the simulated bus), but requests are still answered.
        let mut out = VecDeque::new();
        sim.start(&mut out);
        // The core closes `requests` when it replaces the adapter; keep producing readings anyway
        // until shutdown, just stop polling the closed channel.
        let mut requests_open = true;
        loop {
            // The sleep below only runs once `out` is empty, and the deadline is a scan of every
            // device: computing it per queued event made a start of 10,000 devices quadratic.
            let deadline = if out.is_empty() {
                sim.next_deadline()
            } else {
                None
            };
            tokio::select! {
                biased;
                () = shutdown.cancelled() => break,
                req = requests.recv(), if requests_open => match req {
                    Some(req) => {
                        let result = sim.serve(&req.device, req.kind, Instant::now(), &mut out);
                        // The core may have given up waiting; nothing to do about it then.
                        let _ = req.reply.send(result);
                    }
                    None => requests_open = false,
                },
                permit = events.reserve(), if !out.is_empty() => match (permit, out.pop_front()) {
                    (Ok(permit), Some(ev)) => permit.send(ev),
                    // The core closed the channel: it is stopping.
                    _ => break,
                },
                () = sleep_until_opt(deadline), if out.is_empty() => sim.tick(Instant::now(), &mut out),
            }
        }
        debug!(adapter = %adapter, "Simulated adapter stopped");
    }
}

async fn sleep_until_opt(deadline: Option<Instant>) {
    match deadline {
        Some(d) => sleep_until(d).await,
        None => std::future::pending().await,
    }
}

/// The running simulation: pure state changes, driven by the loop in `run`.
struct Sim {
    /// For logs.
    adapter: Arc<str>,
    /// Time zero of the sine and step generators.
    started: Instant,
    devices: Vec<DeviceState>,
    /// Drives the random walks.
    rng: StdRng,
}

struct DeviceState {
    id: DeviceId,
    poll: Duration,
    /// `(every, for)` when the device flaps.
    outage: Option<(Duration, Duration)>,
    online: bool,
    /// When the next reading is due (only looked at while online).
    next_poll: Instant,
    /// The next outage edge: while online its start, while offline its end.
    next_edge: Option<Instant>,
    /// Start of the current (or last) outage; the next one starts `every` later.
    outage_started: Instant,
    fields: Vec<FieldState>,
}

struct FieldState {
    spec: FieldSpec,
    generator: Generator,
    /// Current position of a random walk (unused by the other generators).
    walk: f64,
    /// Set by a write: the field then holds this value until the next write.
    written: Option<Value>,
    /// A value that does not fit the field type is logged once, then left out quietly.
    warned: bool,
}

impl Sim {
    fn new(adapter: SimulatedAdapter, name: Arc<str>, now: Instant) -> Self {
        let rng = match adapter.seed {
            Some(seed) => StdRng::seed_from_u64(seed),
            None => rand::make_rng(),
        };
        let devices = adapter
            .devices
            .into_iter()
            .map(|d| {
                let outage = match d.offline_every {
                    Some(every) if !every.is_zero() && !d.offline_for.is_zero() => {
                        Some((every, d.offline_for))
                    }
                    _ => None,
                };
                DeviceState {
                    id: d.id,
                    poll: d.poll.max(MIN_POLL),
                    outage,
                    online: true,
                    next_poll: now,
                    next_edge: outage.map(|(every, _)| now + every),
                    outage_started: now,
                    fields: d.fields.into_iter().map(FieldState::new).collect(),
                }
            })
            .collect();
        Sim {
            adapter: name,
            started: now,
            devices,
            rng,
        }
    }

    /// Every device comes online with a reading of every field.
    fn start(&mut self, out: &mut VecDeque<AdapterEvent>) {
        let elapsed = Duration::ZERO;
        for dev in &mut self.devices {
            out.push_back(AdapterEvent::Online {
                device: dev.id.clone(),
            });
            dev.readings(&self.adapter, elapsed, out);
            dev.next_poll = self.started + dev.poll;
        }
    }

    /// The earliest instant something is due, if anything ever is.
    fn next_deadline(&self) -> Option<Instant> {
        self.devices
            .iter()
            .flat_map(|d| [d.online.then_some(d.next_poll), d.next_edge])
            .flatten()
            .min()
    }

    /// Handles every poll and outage edge due at `now`.
    fn tick(&mut self, now: Instant, out: &mut VecDeque<AdapterEvent>) {
        let elapsed = now.saturating_duration_since(self.started);
        for dev in &mut self.devices {
            loop {
                let poll = dev.online.then_some(dev.next_poll);
                match (dev.next_edge, poll) {
                    // An outage edge at the same instant as a poll wins: no reading at the moment
                    // the device drops.
                    (Some(edge), _) if edge <= now && !matches!(poll, Some(p) if p < edge) => {
                        dev.edge(&self.adapter, edge, elapsed, out);
                    }
                    (_, Some(p)) if p <= now => {
                        for f in &mut dev.fields {
                            f.advance(&mut self.rng);
                        }
                        dev.readings(&self.adapter, elapsed, out);
                        dev.next_poll = p + dev.poll;
                        if dev.next_poll <= now {
                            // Fell behind (a slow core): skip the missed polls.
                            dev.next_poll = now + dev.poll;
                        }
                    }
                    _ => break,
                }
            }
        }
    }

    /// Answers a read or write for `device`; a write also reports the new values as events.
    fn serve(
        &mut self,
        device: &DeviceId,
        kind: RequestKind,
        now: Instant,
        out: &mut VecDeque<AdapterEvent>,
    ) -> Result<Vec<Reading>, RequestError> {
        let elapsed = now.saturating_duration_since(self.started);
        let Some(dev) = self.devices.iter_mut().find(|d| &d.id == device) else {
            return Err(RequestError::Refused(format!(
                "no device {device} on this adapter"
            )));
        };
        match kind {
            RequestKind::Read { fields } => {
                let wanted = if fields.is_empty() {
                    (0..dev.fields.len()).collect()
                } else {
                    fields
                        .iter()
                        .map(|name| dev.field_index(name))
                        .collect::<Result<Vec<_>, _>>()?
                };
                if !dev.online {
                    return Err(RequestError::Unreachable(OUTAGE_REASON.into()));
                }
                let mut readings = Vec::with_capacity(wanted.len());
                let now = Utc::now();
                for i in wanted {
                    if let Some(r) = dev.reading(&self.adapter, i, elapsed, now) {
                        readings.push(r);
                    }
                }
                Ok(readings)
            }
            RequestKind::Write { values } => {
                // Validate everything first: a write that fails anywhere changes nothing.
                let mut checked = Vec::with_capacity(values.len());
                for (name, value) in values {
                    let i = dev.field_index(&name)?;
                    let spec = &dev.fields[i].spec;
                    if !spec.writable {
                        return Err(RequestError::NotWritable(name.to_string()));
                    }
                    let value = value
                        .coerce(spec.kind)
                        .map_err(|e| RequestError::OutOfRange {
                            field: name.to_string(),
                            reason: e.to_string(),
                        })?;
                    checked.push((i, value));
                }
                if !dev.online {
                    return Err(RequestError::Unreachable(OUTAGE_REASON.into()));
                }
                let mut changed: Vec<usize> = Vec::with_capacity(checked.len());
                for (i, value) in checked {
                    debug!(adapter = %self.adapter, device = %dev.id,
                        field = %dev.fields[i].spec.name, value = %value, "Simulated write");
                    dev.fields[i].written = Some(value);
                    if !changed.contains(&i) {
                        changed.push(i);
                    }
                }
                let now = Utc::now();
                let readings: Vec<Reading> = changed
                    .into_iter()
                    .filter_map(|i| dev.reading(&self.adapter, i, elapsed, now))
                    .collect();
                if !readings.is_empty() {
                    out.push_back(AdapterEvent::Readings(readings.clone()));
                }
                Ok(readings)
            }
        }
    }
}

impl DeviceState {
    fn field_index(&self, name: &str) -> Result<usize, RequestError> {
        self.fields
            .iter()
            .position(|f| &*f.spec.name == name)
            .ok_or_else(|| RequestError::UnknownField(name.to_owned()))
    }

    /// Field `i` read at `timestamp`: the fields of one poll or request share one time, as
    /// a real device's one answer does.
    fn reading(
        &mut self,
        adapter: &str,
        i: usize,
        elapsed: Duration,
        timestamp: DateTime<Utc>,
    ) -> Option<Reading> {
        let value = self.fields[i].value(adapter, &self.id, elapsed)?;
        Some(Reading {
            device: self.id.clone(),
            field: self.fields[i].spec.name.clone(),
            value,
            timestamp,
            quality: Quality::Good,
        })
    }

    fn readings(&mut self, adapter: &str, elapsed: Duration, out: &mut VecDeque<AdapterEvent>) {
        let mut readings = Vec::with_capacity(self.fields.len());
        let now = Utc::now();
        for i in 0..self.fields.len() {
            if let Some(r) = self.reading(adapter, i, elapsed, now) {
                trace!(adapter, device = %r.device, field = %r.field, value = %r.value, "Reading");
                readings.push(r);
            }
        }
        if !readings.is_empty() {
            out.push_back(AdapterEvent::Readings(readings));
        }
    }

    /// Crosses the outage edge scheduled at `at`.
    fn edge(
        &mut self,
        adapter: &str,
        at: Instant,
        elapsed: Duration,
        out: &mut VecDeque<AdapterEvent>,
    ) {
        let Some((every, length)) = self.outage else {
            self.next_edge = None;
            return;
        };
        if self.online {
            debug!(adapter, device = %self.id, "Simulated device goes offline");
            self.online = false;
            self.outage_started = at;
            self.next_edge = Some(at + length);
            out.push_back(AdapterEvent::Offline {
                device: self.id.clone(),
                reason: OUTAGE_REASON.into(),
            });
        } else {
            debug!(adapter, device = %self.id, "Simulated device is back online");
            self.online = true;
            let mut next = self.outage_started + every;
            if next <= at {
                // The outage lasted a whole period or more: the next one is a period from now.
                next = at + every;
            }
            self.next_edge = Some(next);
            out.push_back(AdapterEvent::Online {
                device: self.id.clone(),
            });
            self.readings(adapter, elapsed, out);
            self.next_poll = at + self.poll;
        }
    }
}

impl FieldState {
    fn new(f: SimField) -> Self {
        let walk = match f.generator {
            Generator::Random { min, max, start } if max > min => start.clamp(min, max),
            Generator::Random { start, .. } => start,
            _ => 0.0,
        };
        FieldState {
            spec: f.spec,
            generator: f.generator,
            walk,
            written: None,
            warned: false,
        }
    }

    /// One poll's step of a random walk.
    fn advance(&mut self, rng: &mut StdRng) {
        if let Generator::Random { min, max, .. } = self.generator {
            let reach = (max - min) / 20.0;
            // Also false for NaN bounds, and it guarantees min < max for `clamp`.
            if reach > 0.0 {
                self.walk = (self.walk + rng.random_range(-reach..=reach)).clamp(min, max);
            }
        }
    }

    /// The current value in the field's type, or `None` (logged once) if it does not fit.
    fn value(&mut self, adapter: &str, device: &DeviceId, elapsed: Duration) -> Option<Value> {
        if let Some(v) = &self.written {
            return Some(v.clone());
        }
        let kind = self.spec.kind;
        let result = match &self.generator {
            Generator::Constant { value } => value.clone().coerce(kind),
            Generator::Sine { min, max, period } => {
                typed(sine(*min, *max, *period, elapsed), kind, mid(*min, *max))
            }
            Generator::Step {
                min,
                max,
                period,
                start,
            } => typed(
                step(*min, *max, *period, *start, elapsed),
                kind,
                mid(*min, *max),
            ),
            Generator::Random { min, max, .. } => typed(self.walk, kind, mid(*min, *max)),
        };
        match result {
            Ok(v) => Some(v),
            Err(error) => {
                if !self.warned {
                    self.warned = true;
                    warn!(adapter, device = %device, field = %self.spec.name, error = %error,
                        "Simulated value does not fit the field type; the field is left out");
                }
                None
            }
        }
    }
}

fn mid(min: f64, max: f64) -> f64 {
    min + (max - min) / 2.0
}

/// A generated number in the field's type: numbers rounded to 2 decimals (integers to 0), so
/// status lines stay readable; a boolean is true in the upper half of the range (a square wave
/// from a sine), since "non-zero" would make almost every value true.
fn typed(raw: f64, kind: FieldType, mid: f64) -> Result<Value, ValueError> {
    match kind {
        FieldType::Boolean => Ok(Value::Bool(raw >= mid)),
        FieldType::Integer => Value::Float(raw.round()).coerce(kind),
        FieldType::Numeric | FieldType::String => {
            Value::Float((raw * 100.0).round() / 100.0).coerce(kind)
        }
    }
}

fn sine(min: f64, max: f64, period: Duration, elapsed: Duration) -> f64 {
    if period.is_zero() {
        return mid(min, max);
    }
    let phase = elapsed.as_secs_f64() / period.as_secs_f64();
    min + (max - min) * (1.0 + (TAU * phase).sin()) / 2.0
}

/// The step generator after `elapsed`, in closed form (no state to drift).
fn step(min: f64, max: f64, period: Duration, start: f64, elapsed: Duration) -> f64 {
    let size = (max - min) / 10.0;
    if period.is_zero() || size.is_nan() || size <= 0.0 {
        return start;
    }
    let n = (elapsed.as_nanos() / period.as_nanos()) as f64;
    // Steps taken before the first wrap (the epsilon absorbs rounding when start is on the grid).
    let before_wrap = ((max - start) / size + 1e-9).floor().max(0.0);
    if n <= before_wrap {
        return start + n * size;
    }
    let k = (n - before_wrap - 1.0) % 11.0;
    min + k * size
}

#[cfg(test)]
mod tests {
    use super::*;
    use gateway_api::testing::AdapterHarness;
    use tokio::time::timeout;

    fn spec(name: &str, kind: FieldType, writable: bool) -> FieldSpec {
        FieldSpec {
            name: name.into(),
            unit: "".into(),
            kind,
            writable,
        }
    }

    fn field(name: &str, kind: FieldType, writable: bool, generator: Generator) -> SimField {
        SimField {
            spec: spec(name, kind, writable),
            generator,
        }
    }

    fn device(id: &str, poll_s: u64, fields: Vec<SimField>) -> SimDevice {
        SimDevice {
            id: DeviceId::new(id).unwrap(),
            poll: Duration::from_secs(poll_s),
            offline_every: None,
            offline_for: Duration::ZERO,
            fields,
        }
    }

    fn constant(v: Value) -> Generator {
        Generator::Constant { value: v }
    }

    /// The shared harness, with the time checks and shorthands of these tests.
    struct Harness(AdapterHarness);

    impl std::ops::Deref for Harness {
        type Target = AdapterHarness;
        fn deref(&self) -> &AdapterHarness {
            &self.0
        }
    }

    impl std::ops::DerefMut for Harness {
        fn deref_mut(&mut self) -> &mut AdapterHarness {
            &mut self.0
        }
    }

    fn spawn(devices: Vec<SimDevice>) -> Harness {
        spawn_with(devices, 64)
    }

    /// Under paused time, so a wait may be long: time jumps to the next timer.
    fn spawn_with(devices: Vec<SimDevice>, capacity: usize) -> Harness {
        let adapter = SimulatedAdapter::new(devices).with_seed(7);
        Harness(
            AdapterHarness::start("sim", capacity, |ctx| adapter.run(ctx))
                .with_deadline(Duration::from_secs(3600))
                .split_batches(),
        )
    }

    impl Harness {
        /// The next reading and the seconds since start it came at.
        async fn timed(&mut self) -> (u64, Value) {
            let r = self.reading().await;
            (self.secs(), r.value)
        }

        fn secs(&self) -> u64 {
            let e = self.start.elapsed();
            assert_eq!(e.subsec_nanos(), 0, "events come at whole seconds: {e:?}");
            e.as_secs()
        }

        async fn online(&mut self) {
            match self.next().await {
                AdapterEvent::Online { .. } => {}
                other => panic!("expected online, got {other:?}"),
            }
        }

        async fn read(&self, dev: &str, fields: &[&str]) -> Result<Vec<Reading>, RequestError> {
            let fields = fields.iter().map(|n| Arc::from(*n)).collect();
            self.request(dev, RequestKind::Read { fields }).await
        }
    }

    fn values(readings: &[Reading]) -> Vec<(&str, Value)> {
        readings
            .iter()
            .map(|r| (&*r.field, r.value.clone()))
            .collect()
    }

    #[tokio::test(start_paused = true)]
    async fn every_device_comes_online_with_a_reading_of_every_field() {
        let a = device(
            "a",
            1,
            vec![
                field("x", FieldType::Numeric, false, constant(Value::Float(1.0))),
                field("y", FieldType::Boolean, false, constant(Value::Bool(true))),
            ],
        );
        let b = device(
            "b",
            1,
            vec![field(
                "z",
                FieldType::String,
                false,
                constant(Value::Text("hi".into())),
            )],
        );
        let mut h = spawn(vec![a, b]);
        let mut got = Vec::new();
        for _ in 0..5 {
            got.push(h.next().await);
        }
        assert_eq!(h.secs(), 0);
        let ids: Vec<String> = got
            .iter()
            .map(|e| match e {
                AdapterEvent::Online { device } => format!("online {device}"),
                AdapterEvent::Readings(rs) => {
                    format!("{} {}={}", rs[0].device, rs[0].field, rs[0].value)
                }
                AdapterEvent::Offline { device, .. } => format!("offline {device}"),
                other => panic!("the simulator has no discovery, yet: {other:?}"),
            })
            .collect();
        assert_eq!(ids, ["online a", "a x=1", "a y=true", "online b", "b z=hi"]);
        assert!(got.iter().all(|e| match e {
            AdapterEvent::Readings(rs) => rs[0].quality == Quality::Good,
            _ => true,
        }));
    }

    #[tokio::test(start_paused = true)]
    async fn sine_follows_time_since_start() {
        let period = Duration::from_secs(4);
        let g = Generator::Sine {
            min: 0.0,
            max: 10.0,
            period,
        };
        let mut h = spawn(vec![device(
            "s",
            1,
            vec![field("v", FieldType::Numeric, false, g)],
        )]);
        h.online().await;
        let mut got = Vec::new();
        for _ in 0..6 {
            got.push(h.timed().await);
        }
        let want = [5.0, 10.0, 5.0, 0.0, 5.0, 10.0].map(Value::Float);
        let want: Vec<_> = want
            .into_iter()
            .enumerate()
            .map(|(i, v)| (i as u64, v))
            .collect();
        assert_eq!(got, want);
    }

    #[tokio::test(start_paused = true)]
    async fn step_moves_a_tenth_per_period_and_wraps() {
        let g = Generator::Step {
            min: 0.0,
            max: 10.0,
            period: Duration::from_secs(2),
            start: 8.0,
        };
        let mut h = spawn(vec![device(
            "s",
            1,
            vec![field("v", FieldType::Numeric, false, g)],
        )]);
        h.online().await;
        let mut got = Vec::new();
        for _ in 0..10 {
            got.push(h.reading().await.value.as_f64().unwrap());
        }
        assert_eq!(got, [8.0, 8.0, 9.0, 9.0, 10.0, 10.0, 0.0, 0.0, 1.0, 1.0]);
    }

    #[test]
    fn step_closed_form_matches_stepping_one_by_one() {
        let p = Duration::from_secs(1);
        for start in [0.0, 3.0, 2.5, 10.0] {
            let mut v: f64 = start;
            for n in 0..40u64 {
                let got = step(0.0, 10.0, p, start, Duration::from_secs(n));
                assert!((got - v).abs() < 1e-9, "start {start} n {n}: {got} != {v}");
                v += 1.0;
                if v > 10.0 + 1e-9 {
                    v = 0.0;
                }
            }
        }
        // Degenerate configurations hold still instead of producing NaN.
        assert_eq!(step(5.0, 5.0, p, 5.0, Duration::from_secs(3)), 5.0);
        assert_eq!(
            step(0.0, 10.0, Duration::ZERO, 4.0, Duration::from_secs(3)),
            4.0
        );
        assert_eq!(sine(0.0, 10.0, Duration::ZERO, Duration::from_secs(3)), 5.0);
    }

    #[tokio::test(start_paused = true)]
    async fn random_walk_stays_in_range_with_small_steps() {
        let g = Generator::Random {
            min: 0.0,
            max: 1.0,
            start: 0.5,
        };
        let mut h = spawn(vec![device(
            "r",
            1,
            vec![field("v", FieldType::Numeric, false, g)],
        )]);
        h.online().await;
        let mut prev = h.reading().await.value.as_f64().unwrap();
        assert_eq!(prev, 0.5);
        let mut moved = 0;
        for _ in 0..300 {
            let v = h.reading().await.value.as_f64().unwrap();
            assert!((0.0..=1.0).contains(&v), "{v} out of range");
            // ±(max-min)/20 per poll, plus the rounding to 2 decimals.
            assert!((v - prev).abs() <= 0.05 + 0.01 + 1e-9, "{prev} -> {v}");
            assert_eq!((v * 100.0).round() / 100.0, v);
            if v != prev {
                moved += 1;
            }
            prev = v;
        }
        assert!(moved > 200, "the walk barely moves: {moved}");
    }

    #[tokio::test(start_paused = true)]
    async fn values_are_converted_to_the_field_type() {
        let sine = Generator::Sine {
            min: 0.0,
            max: 10.0,
            period: Duration::from_secs(7),
        };
        let fields = vec![
            field(
                "int_const",
                FieldType::Integer,
                false,
                constant(Value::Float(2.0)),
            ),
            field(
                "num_const",
                FieldType::Numeric,
                false,
                constant(Value::Int(3)),
            ),
            field(
                "text",
                FieldType::String,
                false,
                constant(Value::Text("<ok>".into())),
            ),
            field(
                "bad",
                FieldType::Numeric,
                false,
                constant(Value::Text("warm".into())),
            ),
            field("int_sine", FieldType::Integer, false, sine.clone()),
            field("bool_sine", FieldType::Boolean, false, sine.clone()),
            field("num_sine", FieldType::Numeric, false, sine.clone()),
            field("str_sine", FieldType::String, false, sine),
        ];
        let mut h = spawn(vec![device("c", 1, fields)]);
        h.online().await;
        let mut first = Vec::new();
        for _ in 0..7 {
            first.push(h.reading().await);
        }
        // "bad" does not parse as a number: left out, the others still come.
        assert_eq!(
            values(&first),
            [
                ("int_const", Value::Int(2)),
                ("num_const", Value::Float(3.0)),
                ("text", Value::Text("<ok>".into())),
                ("int_sine", Value::Int(5)),
                ("bool_sine", Value::Bool(true)),
                ("num_sine", Value::Float(5.0)),
                ("str_sine", Value::Text("5".into())),
            ]
        );
        // One second in: 5 + 5*sin(2π/7) = 8.909…
        let mut second = Vec::new();
        for _ in 0..7 {
            second.push(h.reading().await);
        }
        let second = values(&second);
        assert_eq!(second[3], ("int_sine", Value::Int(9)));
        assert_eq!(second[4], ("bool_sine", Value::Bool(true)));
        assert_eq!(second[5], ("num_sine", Value::Float(8.91)));
        assert_eq!(second[6], ("str_sine", Value::Text("8.91".into())));
        // Four seconds in: 5 + 5*sin(8π/7) = 2.83…, the lower half.
        for _ in 0..14 {
            h.reading().await;
        }
        let mut fourth = Vec::new();
        for _ in 0..7 {
            fourth.push(h.reading().await);
        }
        assert_eq!(h.secs(), 4);
        assert_eq!(values(&fourth)[4], ("bool_sine", Value::Bool(false)));
        assert_eq!(values(&fourth)[5], ("num_sine", Value::Float(2.83)));
    }

    #[tokio::test(start_paused = true)]
    async fn flapping_device_goes_offline_and_back_without_readings_between() {
        let mut d = device(
            "f",
            1,
            vec![field(
                "v",
                FieldType::Integer,
                false,
                constant(Value::Int(1)),
            )],
        );
        d.offline_every = Some(Duration::from_secs(5));
        d.offline_for = Duration::from_secs(2);
        let mut h = spawn(vec![d]);
        let mut log = Vec::new();
        while log.len() < 16 {
            let e = h.next().await;
            let t = h.secs();
            log.push(match e {
                AdapterEvent::Online { .. } => format!("{t} online"),
                AdapterEvent::Offline { reason, .. } => format!("{t} offline: {reason}"),
                AdapterEvent::Readings(_) => format!("{t} reading"),
                other => panic!("the simulator has no discovery, yet: {other:?}"),
            });
        }
        assert_eq!(
            log,
            [
                "0 online",
                "0 reading",
                "1 reading",
                "2 reading",
                "3 reading",
                "4 reading",
                "5 offline: simulated outage",
                "7 online",
                "7 reading",
                "8 reading",
                "9 reading",
                "10 offline: simulated outage",
                "12 online",
                "12 reading",
                "13 reading",
                "14 reading",
            ]
        );
    }

    #[tokio::test(start_paused = true)]
    async fn an_outage_longer_than_its_period_still_ends() {
        let mut d = device(
            "f",
            1,
            vec![field(
                "v",
                FieldType::Integer,
                false,
                constant(Value::Int(1)),
            )],
        );
        d.offline_every = Some(Duration::from_secs(2));
        d.offline_for = Duration::from_secs(3);
        let mut h = spawn(vec![d]);
        let mut log = Vec::new();
        while log.len() < 7 {
            let e = h.next().await;
            let t = h.secs();
            log.push(match e {
                AdapterEvent::Online { .. } => format!("{t} online"),
                AdapterEvent::Offline { .. } => format!("{t} offline"),
                AdapterEvent::Readings(_) => format!("{t} reading"),
                other => panic!("the simulator has no discovery, yet: {other:?}"),
            });
        }
        assert_eq!(
            log,
            [
                "0 online",
                "0 reading",
                "1 reading",
                "2 offline",
                "5 online",
                "5 reading",
                "6 reading"
            ]
        );
    }

    fn actuator() -> SimDevice {
        let sine = Generator::Sine {
            min: 0.0,
            max: 100.0,
            period: Duration::from_secs(60),
        };
        device(
            "act",
            1,
            vec![
                field(
                    "setpoint",
                    FieldType::Numeric,
                    true,
                    constant(Value::Float(20.0)),
                ),
                field(
                    "relay",
                    FieldType::Boolean,
                    true,
                    constant(Value::Bool(false)),
                ),
                field("temp", FieldType::Numeric, false, sine.clone()),
                field("dimmer", FieldType::Integer, true, sine),
            ],
        )
    }

    #[tokio::test(start_paused = true)]
    async fn writes_set_values_that_then_stay() {
        let mut h = spawn(vec![actuator()]);
        h.online().await;
        for _ in 0..4 {
            h.reading().await;
        }
        let reply = h
            .write(
                "act",
                &[
                    ("setpoint", Value::Text("21.5".into())),
                    ("dimmer", Value::Float(42.0)),
                ],
            )
            .await
            .unwrap();
        assert_eq!(
            values(&reply),
            [("setpoint", Value::Float(21.5)), ("dimmer", Value::Int(42))]
        );
        // The write is also reported as events, before the next poll.
        assert_eq!(h.reading().await.value, Value::Float(21.5));
        assert_eq!(h.reading().await.value, Value::Int(42));
        assert_eq!(h.secs(), 0);
        // The written sine field is constant from now on.
        for _ in 0..3 {
            let poll: Vec<_> = [
                h.reading().await,
                h.reading().await,
                h.reading().await,
                h.reading().await,
            ]
            .into();
            assert_eq!(poll[0].value, Value::Float(21.5));
            assert_eq!(poll[3].value, Value::Int(42));
        }
        // Writing the same field twice: the last value wins, reported once.
        let reply = h
            .write(
                "act",
                &[
                    ("relay", Value::Bool(true)),
                    ("relay", Value::Text("off".into())),
                ],
            )
            .await
            .unwrap();
        assert_eq!(values(&reply), [("relay", Value::Bool(false))]);
    }

    #[tokio::test(start_paused = true)]
    async fn bad_writes_are_refused_and_change_nothing() {
        let h = spawn(vec![actuator()]);
        assert_eq!(
            h.write("act", &[("temp", Value::Float(1.0))]).await,
            Err(RequestError::NotWritable("temp".into()))
        );
        assert_eq!(
            h.write(
                "act",
                &[("setpoint", Value::Float(1.0)), ("nope", Value::Float(1.0))]
            )
            .await,
            Err(RequestError::UnknownField("nope".into()))
        );
        let err = h
            .write(
                "act",
                &[
                    ("setpoint", Value::Float(30.0)),
                    ("relay", Value::Text("maybe".into())),
                ],
            )
            .await
            .unwrap_err();
        match err {
            RequestError::OutOfRange { field, reason } => {
                assert_eq!(field, "relay");
                assert!(reason.contains("not a boolean"), "{reason}");
            }
            other => panic!("expected OutOfRange, got {other:?}"),
        }
        assert!(matches!(
            h.write("act", &[("setpoint", Value::Float(f64::NAN))])
                .await,
            Err(RequestError::OutOfRange { .. })
        ));
        assert!(matches!(
            h.write("act", &[("dimmer", Value::Float(1.5))]).await,
            Err(RequestError::OutOfRange { .. })
        ));
        // Nothing of the failed writes was applied.
        let now = h.read("act", &["setpoint", "relay"]).await.unwrap();
        assert_eq!(
            values(&now),
            [
                ("setpoint", Value::Float(20.0)),
                ("relay", Value::Bool(false))
            ]
        );
        assert_eq!(
            h.write("nosuch", &[("setpoint", Value::Float(1.0))]).await,
            Err(RequestError::Refused(
                "no device nosuch on this adapter".into()
            ))
        );
    }

    #[tokio::test(start_paused = true)]
    async fn reads_return_current_values_of_all_or_named_fields() {
        let walk = Generator::Random {
            min: 0.0,
            max: 10.0,
            start: 3.0,
        };
        let mut d = actuator();
        d.fields
            .push(field("walk", FieldType::Numeric, false, walk));
        let mut h = spawn(vec![d]);
        h.online().await;
        for _ in 0..5 {
            h.reading().await;
        }
        let all = h.read("act", &[]).await.unwrap();
        let names: Vec<&str> = all.iter().map(|r| &*r.field).collect();
        assert_eq!(names, ["setpoint", "relay", "temp", "dimmer", "walk"]);
        assert!(all.iter().all(|r| r.device.as_str() == "act"));
        // At t=0 the sine sits in the middle; a read does not move the random walk.
        assert_eq!(all[2].value, Value::Float(50.0));
        assert_eq!(all[4].value, Value::Float(3.0));
        let some = h.read("act", &["walk", "relay"]).await.unwrap();
        assert_eq!(
            values(&some),
            [("walk", Value::Float(3.0)), ("relay", Value::Bool(false))]
        );
        assert_eq!(
            h.read("act", &["relay", "nope"]).await,
            Err(RequestError::UnknownField("nope".into()))
        );
        // Fifteen seconds in, a quarter period: the read sees the sine at its top.
        tokio::time::sleep_until(h.start + Duration::from_secs(15)).await;
        let temp = h.read("act", &["temp"]).await.unwrap();
        assert_eq!(temp[0].value, Value::Float(100.0));
    }

    #[tokio::test(start_paused = true)]
    async fn an_offline_device_refuses_reads_and_writes() {
        let mut d = actuator();
        d.offline_every = Some(Duration::from_secs(3));
        d.offline_for = Duration::from_secs(5);
        let mut h = spawn(vec![d]);
        loop {
            if let AdapterEvent::Offline { .. } = h.next().await {
                break;
            }
        }
        let unreachable = Err(RequestError::Unreachable("simulated outage".into()));
        assert_eq!(
            h.write("act", &[("setpoint", Value::Float(1.0))]).await,
            unreachable
        );
        assert_eq!(h.read("act", &[]).await, unreachable);
        // Validation still comes first: an unknown field is named as such.
        assert_eq!(
            h.write("act", &[("nope", Value::Float(1.0))]).await,
            Err(RequestError::UnknownField("nope".into()))
        );
        h.online().await;
        assert_eq!(h.secs(), 8);
        assert_eq!(
            h.read("act", &["setpoint"]).await.unwrap()[0].value,
            Value::Float(20.0)
        );
    }

    #[tokio::test(start_paused = true)]
    async fn stops_promptly_on_shutdown() {
        let mut h = spawn(vec![actuator()]);
        h.online().await;
        h.shutdown.cancel();
        timeout(Duration::from_millis(1), h.0.task)
            .await
            .expect("stops without waiting for the next poll")
            .unwrap();
    }

    #[tokio::test(start_paused = true)]
    async fn stops_on_shutdown_even_when_the_core_is_not_reading() {
        // Capacity 1, never drained: the adapter is stuck sending the second event.
        let h = spawn_with(vec![actuator()], 1);
        tokio::time::sleep(Duration::from_millis(1)).await;
        assert!(!h.task.is_finished());
        h.shutdown.cancel();
        timeout(Duration::from_millis(1), h.0.task)
            .await
            .unwrap()
            .unwrap();
    }

    #[tokio::test(start_paused = true)]
    async fn answers_requests_while_the_core_is_behind_and_pauses_polling() {
        // Capacity 1, not drained for a minute: readings back up, requests must not.
        let mut h = spawn_with(vec![actuator()], 1);
        tokio::time::sleep(Duration::from_secs(60)).await;
        let reply = h
            .write("act", &[("setpoint", Value::Float(25.0))])
            .await
            .unwrap();
        assert_eq!(values(&reply), [("setpoint", Value::Float(25.0))]);
        // Draining delivers the start-up events and the write, not sixty missed polls.
        h.online().await;
        let mut backlog = Vec::new();
        for _ in 0..5 {
            backlog.push(h.reading().await);
        }
        assert_eq!(backlog[4].value, Value::Float(25.0));
        assert_eq!(h.secs(), 60);
        // One overdue poll as soon as the queue is free, then the usual cadence.
        for t in [60, 61] {
            let poll = [
                h.reading().await,
                h.reading().await,
                h.reading().await,
                h.reading().await,
            ];
            assert_eq!((h.secs(), &*poll[0].field), (t, "setpoint"));
        }
    }

    #[tokio::test(start_paused = true)]
    async fn stops_when_the_core_closes_the_event_channel() {
        let h = spawn(vec![actuator()]);
        drop(h.0.events);
        timeout(Duration::from_secs(2), h.0.task)
            .await
            .unwrap()
            .unwrap();
    }

    #[tokio::test(start_paused = true)]
    async fn keeps_polling_after_the_request_channel_closes() {
        let mut h = spawn(vec![device(
            "d",
            1,
            vec![field(
                "v",
                FieldType::Integer,
                false,
                constant(Value::Int(1)),
            )],
        )]);
        h.requests = None;
        h.online().await;
        for _ in 0..3 {
            h.reading().await;
        }
        assert_eq!(h.secs(), 2);
    }
}
