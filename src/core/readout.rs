//! XEP-0323 readouts: momentary from the current state, historical from the store, queued ones
//! for a later `when`, and `cancel`; and the gateway's own figures (its metrics) read from the
//! gateway's JID.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use gateway_api::{DeviceId, FieldSpec, FieldType, Metric, Quality, Reading, Value};
use minidom::Element;
use xmpp_parsers::jid::Jid;
use xmpp_parsers::stanza_error::{DefinedCondition, ErrorType};

use super::iq::IqRequest;
use super::{Core, Deferred};
use crate::access::Permission;
use crate::stats::Stats;
use crate::store::HistoryQuery;
use crate::translator::sensordata::{self, ReadoutRequest, Sample};
use crate::xmpp::stanzas;

/// Field values per `fields` message: keeps each message well below server stanza limits.
const VALUES_PER_MESSAGE: usize = 200;
/// At most this many stored readings answer one historical request.
const HISTORY_LIMIT: usize = 20_000;

/// A readout to run (now, or when its `when` comes).
#[derive(Debug)]
pub struct Pending {
    /// Index into the device table at the time of the request.
    pub device: usize,
    /// The device's id: a queued readout finds its device again after a reload.
    pub device_id: gateway_api::DeviceId,
    pub request: ReadoutRequest,
    /// Who asked (full JID): the data messages go there.
    pub requester: Jid,
    /// The JID the request was addressed to: the data messages come from there.
    pub addressed: Jid,
}

impl Core {
    pub(super) fn on_readout_request(&mut self, idx: usize, req: IqRequest) {
        let request = match sensordata::parse_req(&req.payload) {
            Ok(r) => r,
            Err(e) => {
                let answer = req.error(
                    ErrorType::Modify,
                    DefinedCondition::BadRequest,
                    &e.to_string(),
                );
                return self.reply(answer);
            }
        };
        let node = self.devices.get(idx).config.id.as_str();
        if request.node_ids.iter().any(|n| n != node) {
            let answer = req.error(
                ErrorType::Cancel,
                DefinedCondition::ItemNotFound,
                "no such node",
            );
            return self.reply(answer);
        }
        let pending = Pending {
            device_id: self.devices.get(idx).config.id.clone(),
            device: idx,
            request,
            requester: req.from.clone(),
            addressed: req.to.clone(),
        };
        let now = Utc::now();
        match pending.request.when {
            Some(when) if when > now => {
                self.reply(req.result(Some(sensordata::accepted(pending.request.seqnr, true))));
                let key = (pending.requester.to_string(), pending.request.seqnr);
                let delay = (when - now).to_std().unwrap_or_default();
                let tx = self.deferred_tx.clone();
                let task = tokio::spawn(async move {
                    tokio::time::sleep(delay).await;
                    let _ = tx.send(Deferred::StartReadout(Box::new(pending))).await;
                });
                if let Some(old) = self.scheduled.insert(key, task.abort_handle()) {
                    old.abort();
                }
            }
            _ => {
                self.reply(req.result(Some(sensordata::accepted(pending.request.seqnr, false))));
                self.run_readout(pending);
            }
        }
    }

    pub(super) fn on_readout_cancel(&mut self, req: IqRequest) {
        let answer = match sensordata::parse_cancel(&req.payload) {
            Err(e) => req.error(
                ErrorType::Modify,
                DefinedCondition::BadRequest,
                &e.to_string(),
            ),
            Ok(seqnr) => match self.scheduled.remove(&(req.from.to_string(), seqnr)) {
                Some(task) => {
                    task.abort();
                    req.result(Some(sensordata::cancelled(seqnr)))
                }
                None => req.error(
                    ErrorType::Cancel,
                    DefinedCondition::ItemNotFound,
                    "no such readout",
                ),
            },
        };
        self.reply(answer);
    }

    pub(super) fn started_message(&self, p: &Pending) -> Element {
        stanzas::data_message(
            &p.addressed,
            &p.requester,
            sensordata::started(p.request.seqnr),
        )
    }

    pub(super) fn run_readout(&mut self, p: Pending) {
        // A history readout includes what was read a moment ago.
        self.flush_store();
        let dev = self.devices.get(p.device);
        let r = &p.request;
        let historical = r.historical || r.all || r.from.is_some() || r.to.is_some();
        let momentary = r.momentary || r.all || !historical;
        let wanted =
            |name: &str| r.field_names.is_empty() || r.field_names.iter().any(|f| f == name);
        let in_range =
            |t: DateTime<Utc>| r.from.is_none_or(|f| t >= f) && r.to.is_none_or(|to| t <= to);
        let node = dev.config.id.to_string();

        if momentary && !historical && !dev.is_online() {
            let reason = dev
                .offline_reason
                .clone()
                .unwrap_or_else(|| "not connected yet".into());
            let failure = sensordata::failure(
                r.seqnr,
                &node,
                Utc::now(),
                &format!("device unreachable: {reason}"),
                true,
            );
            let msg = stanzas::data_message(&p.addressed, &p.requester, failure);
            return self.reply(msg);
        }

        // The current values as readings, filtered like the request asks.
        let current: Vec<Reading> = dev
            .config
            .fields
            .iter()
            .zip(&dev.values)
            .filter(|(f, _)| wanted(&f.spec.name))
            .filter_map(|(f, s)| {
                let s = s.as_ref()?;
                Some(Reading {
                    device: dev.config.id.clone(),
                    field: f.spec.name.clone(),
                    value: s.value.clone(),
                    timestamp: s.timestamp,
                    quality: s.quality,
                })
            })
            .filter(|rd| momentary || in_range(rd.timestamp))
            .collect();
        let specs: Arc<Vec<FieldSpec>> = Arc::new(dev.specs().cloned().collect());

        if historical && self.store.history_enabled() {
            let query = HistoryQuery {
                device: dev.config.id.clone(),
                fields: r.field_names.clone(),
                from: r.from,
                to: r.to,
                limit: HISTORY_LIMIT,
            };
            let store = self.store.clone();
            let tx = self.deferred_tx.clone();
            let momentary_values = if momentary { current } else { Vec::new() };
            tokio::spawn(async move {
                let seqnr = p.request.seqnr;
                let messages = match store.history(query).await {
                    Ok(mut rows) => {
                        let n_hist = rows.len();
                        rows.extend(momentary_values);
                        fields_messages(&specs, &node, seqnr, &rows, n_hist)
                    }
                    Err(e) => {
                        tracing::error!(error = %e, "history query failed");
                        vec![sensordata::failure(
                            seqnr,
                            &node,
                            Utc::now(),
                            "history is unavailable",
                            true,
                        )]
                    }
                };
                for m in messages {
                    let el = stanzas::data_message(&p.addressed, &p.requester, m);
                    if tx.send(Deferred::Send(el)).await.is_err() {
                        return;
                    }
                }
                let _ = tx
                    .send(Deferred::ReadoutFinished {
                        requester: p.requester.to_string(),
                        seqnr,
                    })
                    .await;
            });
        } else {
            // Without a store, the only samples held are the current ones.
            let n_hist = if momentary { 0 } else { current.len() };
            for m in fields_messages(&specs, &node, r.seqnr, &current, n_hist) {
                let el = stanzas::data_message(&p.addressed, &p.requester, m);
                self.reply(el);
            }
        }
    }
}

impl Core {
    /// An XEP-0323 readout of the gateway itself: its metrics (the same figures as `/metrics`,
    /// named without the `xmpp_iot_gateway_` prefix, labels in braces) as momentary fields of
    /// the node named after the gateway. Who may read at least one device may read these, minus
    /// the per-device figures of devices they may not read. No history and no `when`: the
    /// figures exist only now.
    pub(super) fn gateway_readout(&mut self, req: IqRequest) {
        let requester = req.from.to_bare().to_string();
        let readable: Vec<bool> = self
            .devices
            .iter()
            .map(|(idx, _)| self.devices.allows(idx, &requester, Permission::Read))
            .collect();
        if !readable.iter().any(|r| *r) {
            Stats::inc(&self.stats.access_refused);
            let gateway = self.gateway_jid.to_string();
            self.log_refused("status readout", &gateway, &requester);
            return self.reply(req.error(ErrorType::Cancel, DefinedCondition::Forbidden, ""));
        }
        let request = match sensordata::parse_req(&req.payload) {
            Ok(r) => r,
            Err(e) => {
                let answer = req.error(
                    ErrorType::Modify,
                    DefinedCondition::BadRequest,
                    &e.to_string(),
                );
                return self.reply(answer);
            }
        };
        let node = self.config.gateway.name.clone();
        if request.node_ids.iter().any(|n| *n != node) {
            let answer = req.error(
                ErrorType::Cancel,
                DefinedCondition::ItemNotFound,
                "no such node",
            );
            return self.reply(answer);
        }
        let now = Utc::now();
        if request.when.is_some_and(|w| w > now) {
            let answer = req.error(
                ErrorType::Cancel,
                DefinedCondition::FeatureNotImplemented,
                "the gateway's figures can only be read now: ask without `when`",
            );
            return self.reply(answer);
        }
        self.reply(req.result(Some(sensordata::accepted(request.seqnr, false))));

        let historical = request.historical || request.from.is_some() || request.to.is_some();
        let momentary = request.momentary || request.all || !historical;
        let fields = if momentary {
            let device_readable = |id: &str| {
                DeviceId::new(id)
                    .ok()
                    .and_then(|id| self.devices.index_of(&id))
                    .is_some_and(|idx| readable[idx])
            };
            status_fields(
                &self.metrics.collect(),
                &request.field_names,
                device_readable,
            )
        } else {
            Vec::new()
        };
        let chunks: Vec<&[(FieldSpec, Value)]> = if fields.is_empty() {
            vec![&[]]
        } else {
            fields.chunks(VALUES_PER_MESSAGE).collect()
        };
        let last = chunks.len() - 1;
        for (i, chunk) in chunks.into_iter().enumerate() {
            let sample = Sample {
                timestamp: now,
                values: chunk
                    .iter()
                    .map(|(spec, value)| (spec, value, Quality::Good))
                    .collect(),
                momentary: true,
            };
            let samples = if chunk.is_empty() {
                vec![]
            } else {
                vec![sample]
            };
            let payload = sensordata::fields(request.seqnr, &node, &samples, i == last);
            let msg = stanzas::data_message(&req.to, &req.from, payload);
            self.reply(msg);
        }
    }
}

/// The gateway's status fields from `metrics`: one per sample, named `metric` (plus a summary's
/// `_sum`/`_count`) and `{label="value",...}` when labelled; `wanted` filters by that name or by
/// the metric's name alone; samples labelled with a `device` that `device_readable` refuses are
/// left out.
fn status_fields(
    metrics: &[Metric],
    wanted: &[String],
    device_readable: impl Fn(&str) -> bool,
) -> Vec<(FieldSpec, Value)> {
    let mut out = Vec::new();
    for m in metrics {
        let whole_metric_wanted = wanted.is_empty() || wanted.iter().any(|w| w == m.name);
        for s in &m.samples {
            if s.labels
                .iter()
                .any(|(k, v)| *k == "device" && !device_readable(v))
            {
                continue;
            }
            let mut name = format!("{}{}", m.name, s.suffix);
            if !s.labels.is_empty() {
                let labels: Vec<String> = s
                    .labels
                    .iter()
                    .map(|(k, v)| format!("{k}=\"{v}\""))
                    .collect();
                name = format!("{name}{{{}}}", labels.join(","));
            }
            if !whole_metric_wanted && !wanted.contains(&name) {
                continue;
            }
            let unit = if m.name.ends_with("_seconds") && s.suffix != "_count" {
                "s"
            } else {
                ""
            };
            let (kind, value) = if s.value.fract() == 0.0 && s.value.abs() < 9.0e15 {
                (FieldType::Integer, Value::Int(s.value as i64))
            } else {
                (FieldType::Numeric, Value::Float(s.value))
            };
            let spec = FieldSpec {
                name: name.into(),
                unit: unit.into(),
                kind,
                writable: false,
            };
            out.push((spec, value));
        }
    }
    out
}

/// Groups readings by timestamp into `fields` payloads of bounded size; the last says `done`.
/// The first `n_historical` readings are historical values, the rest momentary.
pub(super) fn fields_messages(
    specs: &[FieldSpec],
    node: &str,
    seqnr: i32,
    readings: &[Reading],
    n_historical: usize,
) -> Vec<Element> {
    let spec_of = |name: &str| specs.iter().find(|s| &*s.name == name);
    let mut samples: Vec<Sample<'_>> = Vec::new();
    for (i, rd) in readings.iter().enumerate() {
        let Some(spec) = spec_of(&rd.field) else {
            continue;
        };
        let momentary = i >= n_historical;
        match samples.last_mut() {
            Some(s) if s.timestamp == rd.timestamp && s.momentary == momentary => {
                s.values.push((spec, &rd.value, rd.quality))
            }
            _ => samples.push(Sample {
                timestamp: rd.timestamp,
                values: vec![(spec, &rd.value, rd.quality)],
                momentary,
            }),
        }
    }
    let mut out = Vec::new();
    let mut chunk: Vec<Sample<'_>> = Vec::new();
    let mut count = 0;
    for s in samples {
        count += s.values.len();
        chunk.push(s);
        if count >= VALUES_PER_MESSAGE {
            out.push(sensordata::fields(seqnr, node, &chunk, false));
            chunk.clear();
            count = 0;
        }
    }
    out.push(sensordata::fields(seqnr, node, &chunk, true));
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use gateway_api::{MetricKind, MetricSample};

    fn metrics() -> Vec<Metric> {
        vec![
            Metric::single("devices_online", "", MetricKind::Gauge, 2.0),
            Metric {
                name: "device_readings_total",
                help: "",
                kind: MetricKind::Counter,
                samples: vec![
                    MetricSample::new(vec![("device", "a".into())], 5.0),
                    MetricSample::new(vec![("device", "secret".into())], 7.0),
                ],
            },
            Metric {
                name: "bus_round_trip_seconds",
                help: "",
                kind: MetricKind::Summary,
                samples: vec![
                    MetricSample {
                        suffix: "_sum",
                        labels: vec![("adapter", "rs485".into())],
                        value: 0.25,
                    },
                    MetricSample {
                        suffix: "_count",
                        labels: vec![("adapter", "rs485".into())],
                        value: 3.0,
                    },
                ],
            },
        ]
    }

    fn names(fields: &[(FieldSpec, Value)]) -> Vec<String> {
        fields.iter().map(|(s, _)| s.name.to_string()).collect()
    }

    #[test]
    fn status_fields_name_label_filter_and_type_the_samples() {
        let readable = |id: &str| id != "secret";
        let all = status_fields(&metrics(), &[], readable);
        assert_eq!(
            names(&all),
            [
                "devices_online",
                "device_readings_total{device=\"a\"}",
                "bus_round_trip_seconds_sum{adapter=\"rs485\"}",
                "bus_round_trip_seconds_count{adapter=\"rs485\"}",
            ]
        );
        assert_eq!(all[0].1, Value::Int(2));
        assert_eq!(all[2].1, Value::Float(0.25));
        assert_eq!((&*all[2].0.unit, &*all[3].0.unit), ("s", ""));
        assert!(all.iter().all(|(s, _)| !s.writable));

        let wanted = vec![
            "device_readings_total".to_owned(),
            "devices_online".to_owned(),
        ];
        assert_eq!(
            names(&status_fields(&metrics(), &wanted, |_| true)),
            [
                "devices_online",
                "device_readings_total{device=\"a\"}",
                "device_readings_total{device=\"secret\"}",
            ]
        );
        let exact = vec!["device_readings_total{device=\"a\"}".to_owned()];
        assert_eq!(
            names(&status_fields(&metrics(), &exact, |_| true)),
            ["device_readings_total{device=\"a\"}"]
        );
    }
}
