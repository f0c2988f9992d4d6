//! The Modbus adapters' keys (`modbus-rtu`, `modbus-tcp`): bus, device and field settings.
//!
//! Adapter keys: RTU `port` (required), `baud` (9600), `data_bits` (8), `parity` (`none`),
//! `stop_bits` (1), the RS-485 keys (`gateway_toolkit::rs485`); TCP `address` (required, `host:port`, port 502 by default) and `framing`
//! (`tcp`, or `rtu` for RTU over TCP); both `timeout` (1 s) and `delay_between_requests` (0).
//! Device keys: `unit_id` (1), `poll` (1 s), `byte_order` (the fields' default, `ABCD`),
//! `max_gap` (10), `max_registers_per_request` (125), `backoff_after` (3). Field keys:
//! `register`, `address` (both required), `data_type`, `byte_order`, `length`, `bit`, `scale`,
//! `offset`, `decimals`. Spellings of data types, byte orders and register kinds are the ones
//! [`gateway_modbus`] accepts (Telegraf's and Home Assistant's included). Keys that have no
//! effect on a point are warned about; values that cannot work are errors at their position.
//! [`plan_table`] renders each device's request plan for `check`.

use std::collections::HashMap;
use std::time::Duration;

use gateway_api::FieldType;
use gateway_modbus::config::{
    DEFAULT_BACKOFF_AFTER, DEFAULT_BAUD, DEFAULT_MAX_GAP, DEFAULT_POLL, DEFAULT_TCP_PORT,
    DEFAULT_TIMEOUT, DEFAULT_UNIT, MAX_REGISTERS,
};
use gateway_modbus::{
    BusSettings, ByteOrder, DataType, DeviceSettings, Encoding, Framing, ModbusAdapter,
    ModbusDevice, ModbusField, Parity, Point, RegisterKind, SerialSettings, Transport,
};

use super::jid::parse_host_port;
use super::model::{AdapterKind, Config, DeviceBinding, FieldBinding};
use super::raw::{Entry, Spanned};
use gateway_toolkit::{duration, list_names, Report, Span};

/// Whether `type = name` is one of ours.
pub(super) fn is_modbus(name: &str) -> bool {
    matches!(name, "modbus-rtu" | "modbus-tcp")
}

/// A duration key that may be zero only if `zero_ok`.
fn duration(e: &Entry<'_>, rep: &mut Report<'_>, zero_ok: bool) -> Option<Duration> {
    let d = e.duration(rep)?;
    if d.value.is_zero() && !zero_ok {
        rep.error(&d.span, format!("`{}` must be longer than zero", e.key));
        return None;
    }
    Some(d.value)
}

/// Builds a Modbus `[[adapter]]`'s settings from its own keys. `header` is the adapter's
/// header, for a missing required key.
pub(super) fn adapter(
    type_name: &str,
    own: &[Entry<'_>],
    header: &Span,
    rep: &mut Report<'_>,
) -> Option<AdapterKind> {
    let mut ok = true;
    let mut timeout = DEFAULT_TIMEOUT;
    let mut delay = Duration::ZERO;
    let (mut port, mut address) = (None, None);
    let mut serial = SerialSettings {
        port: String::new(),
        baud: DEFAULT_BAUD,
        data_bits: 8,
        parity: Parity::None,
        stop_bits: 1,
        rs485: None,
    };
    let mut framing = Framing::Tcp;
    for e in own {
        let parsed = match e.key {
            "timeout" => duration(e, rep, false).map(|d| timeout = d).is_some(),
            "delay_between_requests" => duration(e, rep, true).map(|d| delay = d).is_some(),
            "port" => e
                .string(rep)
                .and_then(|p| {
                    if p.value.trim().is_empty() {
                        rep.error(
                            &p.span,
                            "`port` must name a serial device, e.g. \"/dev/ttyUSB0\"",
                        );
                        None
                    } else {
                        // As for a serial adapter: USB adapters come and go.
                        if !std::path::Path::new(&p.value).exists() {
                            rep.warn(
                                &p.span,
                                format!(
                                    "serial port `{}` does not exist (yet): the gateway will keep trying to open it",
                                    p.value
                                ),
                            );
                        }
                        port = Some(p.value);
                        Some(())
                    }
                })
                .is_some(),
            "baud" => e.integer(rep, 50, 4_000_000)
                .map(|b| serial.baud = b.value as u32)
                .is_some(),
            "data_bits" => e.integer(rep, 5, 8)
                .map(|b| serial.data_bits = b.value as u8)
                .is_some(),
            "stop_bits" => e.integer(rep, 1, 2)
                .map(|b| serial.stop_bits = b.value as u8)
                .is_some(),
            "parity" => e.choice(rep, &["none", "even", "odd"], |s| {
                match s.to_ascii_lowercase().as_str() {
                    "none" | "n" => Some(Parity::None),
                    "even" | "e" => Some(Parity::Even),
                    "odd" | "o" => Some(Parity::Odd),
                    _ => None,
                }
            })
            .map(|p| serial.parity = p)
            .is_some(),
            "address" => match e.string(rep) {
                Some(a) => match parse_host_port(&a.value, DEFAULT_TCP_PORT) {
                    Ok(hp) => {
                        address = Some(hp.to_string());
                        true
                    }
                    Err(why) => {
                        rep.error(
                            &a.span,
                            format!(
                                "`address` `{}` is not `host:port` (e.g. \"192.168.1.20:502\"): {why}",
                                a.value
                            ),
                        );
                        false
                    }
                },
                None => false,
            },
            "framing" => e.choice(rep, &["tcp", "rtu"], |s| {
                match s.to_ascii_lowercase().as_str() {
                    "tcp" | "mbap" => Some(Framing::Tcp),
                    "rtu" | "rtu-over-tcp" | "rtuovertcp" => Some(Framing::Rtu),
                    _ => None,
                }
            })
            .map(|f| framing = f)
            .is_some(),
            _ => true,
        };
        ok &= parsed;
    }
    match gateway_toolkit::rs485::settings(own, rep) {
        Ok(rs485) => serial.rs485 = rs485,
        Err(_) => ok = false,
    }
    let transport = if type_name == "modbus-rtu" {
        let Some(port) = port else {
            if ok {
                rep.error(
                    header,
                    "a `modbus-rtu` adapter needs `port`, e.g. `port = \"/dev/ttyUSB0\"`",
                );
            }
            return None;
        };
        serial.port = port;
        Transport::Rtu(serial)
    } else {
        let Some(address) = address else {
            if ok {
                rep.error(
                    header,
                    "a `modbus-tcp` adapter needs `address`, e.g. `address = \"192.168.1.20:502\"`",
                );
            }
            return None;
        };
        Transport::Tcp { address, framing }
    };
    ok.then_some(AdapterKind::Modbus(BusSettings {
        transport,
        timeout,
        delay_between_requests: delay,
    }))
}

/// A Modbus device's settings, and its fields' default byte order.
pub(super) fn device(
    type_name: &str,
    own: &[Entry<'_>],
    rep: &mut Report<'_>,
) -> Option<(DeviceBinding, ByteOrder)> {
    let mut ok = true;
    let mut s = DeviceSettings {
        unit: DEFAULT_UNIT,
        poll: DEFAULT_POLL,
        max_gap: DEFAULT_MAX_GAP,
        max_registers_per_request: MAX_REGISTERS,
        backoff_after: DEFAULT_BACKOFF_AFTER,
    };
    let mut order = ByteOrder::Abcd;
    // RTU unit 0 is the broadcast address, which never answers; 248-255 are reserved there.
    let max_unit = if type_name == "modbus-rtu" { 247 } else { 255 };
    let min_unit = if type_name == "modbus-rtu" { 1 } else { 0 };
    for e in own {
        let parsed = match e.key {
            "unit_id" => e
                .integer(rep, min_unit, max_unit)
                .map(|u| s.unit = u.value as u8)
                .is_some(),
            "poll" => duration(e, rep, false).map(|d| s.poll = d).is_some(),
            "byte_order" => e
                .choice(rep, ByteOrder::NAMES, ByteOrder::parse)
                .map(|o| order = o)
                .is_some(),
            "max_gap" => e
                .integer(rep, 0, i64::from(MAX_REGISTERS))
                .map(|g| s.max_gap = g.value as u16)
                .is_some(),
            "max_registers_per_request" => e
                .integer(rep, 1, i64::from(MAX_REGISTERS))
                .map(|m| s.max_registers_per_request = m.value as u16)
                .is_some(),
            "backoff_after" => e
                .integer(rep, 1, 1000)
                .map(|n| s.backoff_after = n.value as u32)
                .is_some(),
            _ => true,
        };
        ok &= parsed;
    }
    ok.then_some((DeviceBinding::Modbus(s), order))
}

/// The first device seen at each (adapter, unit id): one bus address is one physical device.
pub(super) type UnitsSeen = HashMap<(String, u8), (String, Span)>;

/// Warns when a device takes a unit id another device on the same adapter already has: both
/// read one physical device. A warning, not an error: splitting one meter's registers into two
/// XMPP devices is legitimate; two meters left at the factory address 1 is the usual mistake.
pub(super) fn shared_unit(
    seen: &mut UnitsSeen,
    adapter: &str,
    binding: &DeviceBinding,
    own: &[Entry<'_>],
    header: &Span,
    label: &str,
    rep: &mut Report<'_>,
) {
    let DeviceBinding::Modbus(settings) = binding else {
        return;
    };
    let span = own
        .iter()
        .find(|e| e.key == "unit_id")
        .map_or_else(|| header.clone(), Entry::span);
    match seen.get(&(adapter.to_owned(), settings.unit)) {
        Some((other, first)) => {
            let line = rep.line(first);
            rep.warn(
                &span,
                format!(
                    "{label} has unit_id {}, as {other} (line {line}) on adapter `{adapter}`: both read \
                     the same device; give each device on a bus its own unit_id (the default is 1)",
                    settings.unit
                ),
            );
        }
        None => {
            seen.insert(
                (adapter.to_owned(), settings.unit),
                (label.to_owned(), span),
            );
        }
    }
}

/// A device's Modbus fields seen so far: their point, label and header.
pub(super) type PointsSeen = Vec<(Point, String, Span)>;

/// Warns when a field reads registers another field of the device already reads: usually an
/// address copied wrong from a datasheet (a `float32` takes two registers). Fields that take
/// single bits of a register (`bit`), and bit registers, may share on purpose and are left
/// alone. A warning: two views of one register (raw and scaled) are legitimate.
pub(super) fn overlapping_registers(
    seen: &mut PointsSeen,
    point: &Point,
    header: &Span,
    label: &str,
    rep: &mut Report<'_>,
) {
    if point.kind.is_bits() || point.encoding.bit.is_some() {
        return;
    }
    let range = |p: &Point| u32::from(p.address)..u32::from(p.address) + u32::from(p.span());
    let mine = range(point);
    if let Some((_, other, first)) = seen.iter().find(|(p, _, _)| {
        let theirs = range(p);
        p.kind == point.kind && mine.start < theirs.end && theirs.start < mine.end
    }) {
        let line = rep.line(first);
        rep.warn(
            header,
            format!(
                "{label} reads registers {}-{}, which {other} (line {line}) reads too: check the \
                 addresses (a 32-bit value takes two registers, a 64-bit one four)",
                mine.start,
                mine.end - 1
            ),
        );
    }
    seen.push((point.clone(), label.to_owned(), header.clone()));
}

/// What a Modbus field needs from its device and its common keys.
pub(super) struct FieldContext<'a> {
    /// The field's `type`, if written.
    pub written_type: Option<&'a Spanned<String>>,
    /// The field's type (written or the default).
    pub kind: FieldType,
    pub writable: Option<&'a Spanned<bool>>,
    /// The device's default byte order.
    pub order: ByteOrder,
    /// The device's `max_registers_per_request`.
    pub max_registers: u16,
    /// The field's header, for a missing key.
    pub header: &'a Span,
    /// "field `x` of device `y`", for messages.
    pub label: &'a str,
}

/// A Modbus field's point, and the field type it implies when `type` is not written
/// (`boolean` for bits, `string` for strings).
pub(super) fn field(
    own: &[Entry<'_>],
    cx: &FieldContext<'_>,
    rep: &mut Report<'_>,
) -> Option<(FieldBinding, Option<FieldType>)> {
    let mut ok = true;
    let mut register: Option<(RegisterKind, Span)> = None;
    let mut address: Option<(u16, Span)> = None;
    let mut data_type: Option<(DataType, Span)> = None;
    let mut order: Option<(ByteOrder, Span)> = None;
    let mut length: Option<Spanned<i64>> = None;
    let mut bit: Option<Spanned<i64>> = None;
    let mut scale: Option<Spanned<f64>> = None;
    let mut offset: Option<Spanned<f64>> = None;
    let mut decimals: Option<Spanned<i64>> = None;
    for e in own {
        let parsed = match e.key {
            "register" => e
                .choice(rep, RegisterKind::NAMES, RegisterKind::parse)
                .map(|k| register = Some((k, e.span())))
                .is_some(),
            "address" => e
                .integer(rep, 0, 65535)
                .map(|a| address = Some((a.value as u16, a.span)))
                .is_some(),
            "data_type" => e
                .choice(rep, DataType::NAMES, DataType::parse)
                .map(|t| data_type = Some((t, e.span())))
                .is_some(),
            "byte_order" => e
                .choice(rep, ByteOrder::NAMES, ByteOrder::parse)
                .map(|o| order = Some((o, e.key_span.clone())))
                .is_some(),
            "length" => e
                .integer(rep, 1, i64::from(MAX_REGISTERS))
                .map(|l| length = Some(l))
                .is_some(),
            "bit" => e.integer(rep, 0, 15).map(|b| bit = Some(b)).is_some(),
            "decimals" => e.integer(rep, 0, 15).map(|d| decimals = Some(d)).is_some(),
            "scale" => match e.number(rep) {
                Some(s) if s.value == 0.0 => {
                    rep.error(&s.span, "`scale` must not be zero (writes divide by it)");
                    false
                }
                Some(s) => {
                    scale = Some(s);
                    true
                }
                None => false,
            },
            "offset" => e.number(rep).map(|o| offset = Some(o)).is_some(),
            _ => true,
        };
        ok &= parsed;
    }
    let label = cx.label;
    let Some((kind, kind_span)) = register else {
        if ok {
            rep.error(
                cx.header,
                format!(
                    "{label} needs `register` ({})",
                    list_names(RegisterKind::NAMES)
                ),
            );
        }
        return None;
    };
    let Some((address, address_span)) = address else {
        if ok {
            rep.error(
                cx.header,
                format!(
                    "{label} needs `address`, the 0-based number of its first {}",
                    if kind.is_bits() { "bit" } else { "register" }
                ),
            );
        }
        return None;
    };
    if !ok {
        return None;
    }
    let no_effect = |rep: &mut Report<'_>, span: &Span, key: &str, why: &str| {
        rep.warn(span, format!("`{key}` has no effect {why}"));
    };

    // Bits: coils and discrete inputs are booleans, nothing else applies.
    if kind.is_bits() {
        if let Some((t, span)) = &data_type {
            if *t != DataType::Bool {
                rep.error(
                    span,
                    format!("a {kind} is a single bit: `data_type` must be `bool`, not `{t}`"),
                );
                return None;
            }
        }
        for (key, span) in [
            ("byte_order", order.as_ref().map(|o| &o.1)),
            ("length", length.as_ref().map(|l| &l.key)),
            ("bit", bit.as_ref().map(|b| &b.key)),
            ("scale", scale.as_ref().map(|s| &s.key)),
            ("offset", offset.as_ref().map(|o| &o.key)),
            ("decimals", decimals.as_ref().map(|d| &d.key)),
        ] {
            if let Some(span) = span {
                no_effect(rep, span, key, &format!("on a {kind}"));
            }
        }
    }
    if let Some(w) = cx.writable {
        if w.value && !kind.is_writable() {
            rep.error(
                &w.span,
                format!(
                    "{label} is a{} {kind}, which Modbus cannot write; use a coil or a holding register, or drop `writable`",
                    if kind == RegisterKind::Input { "n" } else { "" }
                ),
            );
            return None;
        }
    }
    let data_type_value = match (&data_type, &bit) {
        (Some((t, span)), Some(_)) if *t != DataType::Bool => {
            rep.error(
                span,
                format!("with `bit` the field is one bit: `data_type` must be `bool`, not `{t}`"),
            );
            return None;
        }
        (Some((t, _)), _) => *t,
        (None, _) if kind.is_bits() || bit.is_some() => DataType::Bool,
        (None, _) => DataType::Int16,
    };
    if data_type_value == DataType::String {
        if let Some(t) = cx.written_type {
            if cx.kind != FieldType::String {
                rep.error(
                    &t.span,
                    format!("{label} has `data_type = \"string\"`, so its `type` must be `string`"),
                );
                return None;
            }
        }
    }
    let length_value = match (&length, data_type_value) {
        (Some(l), DataType::String) => l.value as u16,
        (None, DataType::String) => {
            rep.error(
                &data_type
                    .as_ref()
                    .map_or(kind_span.clone(), |d| d.1.clone()),
                format!("{label} is a string: give its `length` in registers (2 characters each)"),
            );
            return None;
        }
        (Some(l), _) => {
            no_effect(rep, &l.key, "length", "unless `data_type = \"string\"`");
            1
        }
        (None, _) => 1,
    };
    if !data_type_value.is_numeric() {
        for (key, span) in [
            ("scale", scale.as_ref().map(|s| &s.key)),
            ("offset", offset.as_ref().map(|o| &o.key)),
            ("decimals", decimals.as_ref().map(|d| &d.key)),
        ] {
            if let Some(span) = span {
                if !kind.is_bits() {
                    no_effect(rep, span, key, &format!("on a {data_type_value} field"));
                }
            }
        }
    }
    if !datasheet_number(kind, address, &address_span, label, rep) {
        return None;
    }
    let encoding = Encoding {
        data_type: data_type_value,
        byte_order: order.map_or(cx.order, |o| o.0),
        length: length_value,
        bit: bit.map(|b| b.value as u8),
        scale: scale.map_or(1.0, |s| s.value),
        offset: offset.map_or(0.0, |o| o.value),
        decimals: decimals.map(|d| d.value as u8),
    };
    let point = Point {
        kind,
        address,
        encoding,
    };
    let span = point.span();
    if u32::from(address) + u32::from(span) > 65536 {
        rep.error(
            &kind_span,
            format!("{label} starts at {address} and takes {span} registers: past the last address, 65535"),
        );
        return None;
    }
    if !kind.is_bits() && span > cx.max_registers {
        rep.error(
            &kind_span,
            format!(
                "{label} takes {span} registers, more than one request may read (`max_registers_per_request` = {})",
                cx.max_registers
            ),
        );
        return None;
    }
    let implied = match data_type_value {
        DataType::Bool => Some(FieldType::Boolean),
        DataType::String => Some(FieldType::String),
        _ => None,
    };
    Some((FieldBinding::Modbus(point), implied))
}

/// Datasheets number registers from 1 with the kind as a leading digit: 30001 is the first
/// input register, 40001 the first holding register. `address` is the 0-based offset within the
/// kind (30001 is `register = "input"`, `address = 0`). An address in 30001..=49999 is likely such
/// a number: an error when its leading digit names another kind than `register` (no device maps
/// it that way), a warning otherwise (some devices, SunSpec ones among them, really do place
/// registers at 40000 and above). False when it is an error.
fn datasheet_number(
    kind: RegisterKind,
    address: u16,
    span: &Span,
    label: &str,
    rep: &mut Report<'_>,
) -> bool {
    let (named, offset) = match address {
        30001..=39999 => (RegisterKind::Input, address - 30001),
        40001..=49999 => (RegisterKind::Holding, address - 40001),
        _ => return true,
    };
    let kind_name = |k: RegisterKind| match k {
        RegisterKind::Input => "input",
        _ => "holding",
    };
    let rule = format!(
        "{address} looks like a datasheet register number ({}): `address` is the 0-based offset \
         within the register kind, so datasheet register {address} is `register = \"{}\"`, `address = {offset}`",
        if named == RegisterKind::Input { "3xxxx: input registers from 30001" } else { "4xxxx: holding registers from 40001" },
        kind_name(named),
    );
    if kind == named {
        rep.warn(span, format!("{label}: {rule}"));
        true
    } else {
        rep.error(span, format!("{label}: {rule}"));
        false
    }
}

/// The Modbus adapter for `config.adapters[index]`, with its devices.
pub(crate) fn build_adapter(config: &Config, index: usize) -> Option<ModbusAdapter> {
    let adapter = config.adapters.get(index)?;
    let AdapterKind::Modbus(settings) = &adapter.kind else {
        return None;
    };
    Some(ModbusAdapter::new(
        &adapter.id,
        settings.clone(),
        devices_of(config, index),
    ))
}

fn devices_of(config: &Config, index: usize) -> Vec<ModbusDevice> {
    config
        .devices
        .iter()
        .filter(|d| d.adapter_index == index)
        .filter_map(|d| {
            let DeviceBinding::Modbus(settings) = &d.binding else {
                return None;
            };
            let fields = d
                .fields
                .iter()
                .filter_map(|f| match &f.binding {
                    FieldBinding::Modbus(point) => Some(ModbusField {
                        spec: f.spec.clone(),
                        point: point.clone(),
                    }),
                    _ => None,
                })
                .collect();
            Some(ModbusDevice {
                id: d.id.clone(),
                settings: settings.clone(),
                fields,
            })
        })
        .collect()
}

/// What `check` prints after the device table: each Modbus device's reads per poll, e.g.
///
/// ```text
/// MODBUS DEVICE  UNIT  ADAPTER  POLL  REQUEST
/// meter          1     rs485    2s    holding start 0 count 14
///                                     input start 100 count 2
/// ```
///
/// Empty when no device is on a Modbus adapter.
pub fn plan_table(config: &Config) -> String {
    let mut rows: Vec<[String; 5]> = Vec::new();
    for (index, adapter) in config.adapters.iter().enumerate() {
        if !matches!(adapter.kind, AdapterKind::Modbus(_)) {
            continue;
        }
        for device in devices_of(config, index) {
            let plan = ModbusAdapter::request_plan(&device);
            let head = [
                device.id.to_string(),
                device.settings.unit.to_string(),
                adapter.id.to_string(),
                duration::format(device.settings.poll),
            ];
            if plan.is_empty() {
                let [a, b, c, d] = head.clone();
                rows.push([a, b, c, d, "-".into()]);
            }
            for (i, r) in plan.iter().enumerate() {
                let [a, b, c, d] = if i == 0 {
                    head.clone()
                } else {
                    Default::default()
                };
                rows.push([a, b, c, d, r.to_string()]);
            }
        }
    }
    if rows.is_empty() {
        return String::new();
    }
    rows.insert(
        0,
        ["MODBUS DEVICE", "UNIT", "ADAPTER", "POLL", "REQUEST"].map(str::to_owned),
    );
    let mut widths = [0usize; 5];
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::from("\n");
    for row in &rows {
        let cells: Vec<String> = row
            .iter()
            .zip(widths)
            .map(|(cell, width)| format!("{cell:<width$}"))
            .collect();
        out.push_str(cells.join("  ").trim_end());
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::validate::tests::{errors, ok, warnings};
    use crate::config::{device_table, XmppConfig};

    const HEAD: &str = "[xmpp]\ndomain = \"sensors.example.org\"\nsecret = \"s\"\n\
        [[adapter]]\nid = \"rs485\"\ntype = \"modbus-rtu\"\nport = \"/dev/ttyUSB0\"\n\
        [[adapter]]\nid = \"plc\"\ntype = \"modbus-tcp\"\naddress = \"127.0.0.1:5020\"\n";
    // Lines 1-11 are HEAD; a test's own text starts on line 12.

    fn with(rest: &str) -> String {
        format!("{HEAD}{rest}")
    }

    /// The warnings, without the ones about HEAD's inline secret and its RTU port (which this
    /// machine does not have).
    fn own_warnings(loaded: &crate::config::Loaded) -> Vec<String> {
        warnings(loaded)
            .into_iter()
            .filter(|w| !w.contains("inline `secret`") && !w.contains("does not exist"))
            .collect()
    }

    fn point(src: &str) -> Point {
        let loaded = ok(&with(src));
        let FieldBinding::Modbus(p) = &loaded.config.devices[0].fields[0].binding else {
            panic!("a modbus field");
        };
        p.clone()
    }

    #[test]
    fn adapters_with_defaults_and_every_key() {
        let loaded = ok(HEAD);
        let AdapterKind::Modbus(rtu) = &loaded.config.adapters[0].kind else {
            panic!("modbus")
        };
        assert_eq!(
            rtu.transport,
            Transport::Rtu(SerialSettings {
                port: "/dev/ttyUSB0".into(),
                baud: 9600,
                data_bits: 8,
                parity: Parity::None,
                stop_bits: 1,
                rs485: None
            })
        );
        assert_eq!(rtu.timeout, Duration::from_secs(1));
        assert_eq!(loaded.config.adapters[0].kind.type_name(), "modbus-rtu");
        assert_eq!(loaded.config.adapters[1].kind.type_name(), "modbus-tcp");

        let src = "[xmpp]\ndomain = \"s.example.org\"\nsecret = \"s\"\n\
            [[adapter]]\nid = \"a\"\ntype = \"modbus-rtu\"\nport = \"/dev/ttyAMA0\"\nbaud = 19200\n\
            data_bits = 7\nparity = \"Even\"\nstop_bits = 2\ntimeout = \"250ms\"\ndelay_between_requests = \"20ms\"\n\
            [[adapter]]\nid = \"b\"\ntype = \"modbus-tcp\"\naddress = \"plc.local\"\nframing = \"rtu\"\n";
        let loaded = ok(src);
        let AdapterKind::Modbus(a) = &loaded.config.adapters[0].kind else {
            panic!()
        };
        assert_eq!(
            a.transport,
            Transport::Rtu(SerialSettings {
                port: "/dev/ttyAMA0".into(),
                baud: 19200,
                data_bits: 7,
                parity: Parity::Even,
                stop_bits: 2,
                rs485: None
            })
        );
        assert_eq!(a.timeout, Duration::from_millis(250));
        assert_eq!(a.delay_between_requests, Duration::from_millis(20));
        let AdapterKind::Modbus(b) = &loaded.config.adapters[1].kind else {
            panic!()
        };
        assert_eq!(
            b.transport,
            Transport::Tcp {
                address: "plc.local:502".into(),
                framing: Framing::Rtu
            }
        );
        assert!(matches!(loaded.config.xmpp, XmppConfig::Component(_)));
    }

    #[test]
    fn adapter_errors() {
        let e = errors("[xmpp]\ndomain = \"s.example.org\"\nsecret = \"s\"\n[[adapter]]\nid = \"a\"\ntype = \"modbus-rtu\"\nbaud = 9601.5\nparity = \"evn\"\nstop_bits = 3\ntimeout = \"0s\"\n[[adapter]]\nid = \"b\"\ntype = \"modbus-tcp\"\n[[adapter]]\nid = \"c\"\ntype = \"modbus-tcp\"\naddress = \"host:port\"\nport = \"/dev/x\"\n");
        assert_eq!(
            e,
            [
                "7:8: `baud` must be an integer from 50 to 4000000",
                "8:10: unknown `parity` `evn`; did you mean `even`? (use `none`, `even` and `odd`)",
                "9:13: `stop_bits` must be an integer from 1 to 2",
                "10:11: `timeout` must be longer than zero",
                "11:1: a `modbus-tcp` adapter needs `address`, e.g. `address = \"192.168.1.20:502\"`",
                "17:11: `address` `host:port` is not `host:port` (e.g. \"192.168.1.20:502\"): `port` is not a port number (1 to 65535)",
                "18:1: `port` is a key of `modbus-rtu` and `serial` adapters, but this adapter's type is `modbus-tcp`",
            ]
        );
        let e = errors("[xmpp]\ndomain = \"s.example.org\"\nsecret = \"s\"\n[[adapter]]\nid = \"a\"\ntype = \"modbus-rtu\"\n");
        assert_eq!(
            e,
            ["4:1: a `modbus-rtu` adapter needs `port`, e.g. `port = \"/dev/ttyUSB0\"`"]
        );
    }

    #[test]
    fn devices_and_fields_with_defaults() {
        let src = with(
            "[[device]]\nid = \"meter\"\nadapter = \"rs485\"\n\
             [[device.field]]\nname = \"v\"\nregister = \"holding\"\naddress = 3\n\
             [[device.field]]\nname = \"relay\"\nregister = \"coil\"\naddress = 0\nwritable = true\n\
             [[device.field]]\nname = \"serial\"\nregister = \"input\"\naddress = 10\ndata_type = \"STRING\"\nlength = 4\n",
        );
        let loaded = ok(&src);
        let d = &loaded.config.devices[0];
        let DeviceBinding::Modbus(s) = &d.binding else {
            panic!()
        };
        assert_eq!(*s, DeviceSettings::default());
        let FieldBinding::Modbus(v) = &d.fields[0].binding else {
            panic!()
        };
        assert_eq!(v.encoding, Encoding::plain(DataType::Int16));
        assert_eq!(d.fields[0].spec.kind, FieldType::Numeric);
        // Bits and strings get the matching field type unless `type` says otherwise.
        assert_eq!(d.fields[1].spec.kind, FieldType::Boolean);
        assert!(d.fields[1].spec.writable);
        assert_eq!(d.fields[2].spec.kind, FieldType::String);
        let FieldBinding::Modbus(serial) = &d.fields[2].binding else {
            panic!()
        };
        assert_eq!(serial.encoding.length, 4);
        assert!(own_warnings(&loaded).is_empty(), "{:?}", warnings(&loaded));
    }

    #[test]
    fn every_device_and_field_key() {
        let src = with(
            "[[device]]\nid = \"m\"\nadapter = \"plc\"\nunit_id = 0\npoll = \"250ms\"\nbyte_order = \"word\"\n\
             max_gap = 0\nmax_registers_per_request = 60\nbackoff_after = 5\n\
             [[device.field]]\nname = \"p\"\nregister = \"holding_register\"\naddress = 65534\n\
             data_type = \"FLOAT32-IEEE\"\nscale = -0.5\noffset = 2\ndecimals = 1\n\
             [[device.field]]\nname = \"q\"\nregister = \"input\"\naddress = 7\ndata_type = \"int32\"\nbyte_order = \"ABCD\"\n\
             [[device.field]]\nname = \"b\"\nregister = \"holding\"\naddress = 7\nbit = 15\nwritable = true\n",
        );
        let loaded = ok(&src);
        let d = &loaded.config.devices[0];
        let DeviceBinding::Modbus(s) = &d.binding else {
            panic!()
        };
        assert_eq!(
            *s,
            DeviceSettings {
                unit: 0,
                poll: Duration::from_millis(250),
                max_gap: 0,
                max_registers_per_request: 60,
                backoff_after: 5
            }
        );
        let p = |i: usize| match &d.fields[i].binding {
            FieldBinding::Modbus(p) => p.clone(),
            _ => panic!(),
        };
        assert_eq!(
            p(0),
            Point {
                kind: RegisterKind::Holding,
                address: 65534,
                encoding: Encoding {
                    data_type: DataType::Float32,
                    byte_order: ByteOrder::Cdab,
                    length: 1,
                    bit: None,
                    scale: -0.5,
                    offset: 2.0,
                    decimals: Some(1)
                }
            }
        );
        assert_eq!(p(1).encoding.byte_order, ByteOrder::Abcd);
        assert_eq!(p(2).encoding.bit, Some(15));
        assert_eq!(p(2).encoding.data_type, DataType::Bool);
        assert_eq!(d.fields[2].spec.kind, FieldType::Boolean);
        assert_eq!(
            point("[[device]]\nid = \"m\"\nadapter = \"plc\"\n[[device.field]]\nname = \"x\"\nregister = \"discrete_input\"\naddress = 1\n").kind,
            RegisterKind::Discrete
        );
    }

    #[test]
    fn field_errors_name_the_key() {
        let dev = "[[device]]\nid = \"m\"\nadapter = \"rs485\"\n";
        // Lines: 12 [[device]], 13 id, 14 adapter, 15 [[device.field]], 16 name, 17.. keys.
        let errs = |field: &str| {
            errors(&with(&format!(
                "{dev}[[device.field]]\nname = \"f\"\n{field}"
            )))
        };
        assert_eq!(
            errs("address = 1\n"),
            ["15:1: field `f` of device `m` needs `register` (`coil`, `discrete`, `holding` and `input`)"]
        );
        assert_eq!(
            errs("register = \"holding\"\n"),
            ["15:1: field `f` of device `m` needs `address`, the 0-based number of its first register"]
        );
        assert_eq!(
            errs("register = \"holdng\"\naddress = 1\n"),
            ["17:12: unknown `register` `holdng`; did you mean `holding`? (use `coil`, `discrete`, `holding` and `input`)"]
        );
        assert_eq!(
            errs("register = \"holding\"\naddress = 70000\n"),
            ["18:11: `address` must be an integer from 0 to 65535"]
        );
        assert_eq!(
            errs("register = \"holding\"\naddress = 1\ndata_type = \"float16\"\n"),
            ["19:13: unknown `data_type` `float16`; did you mean `float64`? (use `bool`, `int16`, `uint16`, `int32`, `uint32`, `int64`, `uint64`, `float32`, `float64` and `string`)"]
        );
        assert_eq!(
            errs("register = \"holding\"\naddress = 1\nbyte_order = \"ACBD\"\n"),
            ["19:14: unknown `byte_order` `ACBD`; did you mean `ABCD`? (use `ABCD`, `DCBA`, `BADC` and `CDAB`)"]
        );
        assert_eq!(
            errs("register = \"input\"\naddress = 1\nwritable = true\n"),
            ["19:12: field `f` of device `m` is an input, which Modbus cannot write; use a coil or a holding register, or drop `writable`"]
        );
        assert_eq!(
            errs("register = \"coil\"\naddress = 1\ndata_type = \"int16\"\n"),
            ["19:13: a coil is a single bit: `data_type` must be `bool`, not `int16`"]
        );
        assert_eq!(
            errs("register = \"holding\"\naddress = 1\ndata_type = \"string\"\n"),
            ["19:13: field `f` of device `m` is a string: give its `length` in registers (2 characters each)"]
        );
        assert_eq!(
            errs("type = \"numeric\"\nregister = \"holding\"\naddress = 1\ndata_type = \"string\"\nlength = 2\n"),
            ["17:8: field `f` of device `m` has `data_type = \"string\"`, so its `type` must be `string`"]
        );
        assert_eq!(
            errs("register = \"holding\"\naddress = 1\nbit = 16\n"),
            ["19:7: `bit` must be an integer from 0 to 15"]
        );
        assert_eq!(
            errs("register = \"holding\"\naddress = 1\nbit = 3\ndata_type = \"int16\"\n"),
            ["20:13: with `bit` the field is one bit: `data_type` must be `bool`, not `int16`"]
        );
        assert_eq!(
            errs("register = \"holding\"\naddress = 1\nscale = 0\n"),
            ["19:9: `scale` must not be zero (writes divide by it)"]
        );
        assert_eq!(
            errs("register = \"holding\"\naddress = 65535\ndata_type = \"uint32\"\n"),
            ["17:12: field `f` of device `m` starts at 65535 and takes 2 registers: past the last address, 65535"]
        );
        assert_eq!(
            errs("register = \"holding\"\naddress = 1\nvalue = 3\n"),
            ["19:1: `value` is a key of `simulated` fields, but field `f` of device `m` uses adapter `rs485` of type `modbus-rtu`"]
        );
        // Unit ids: RTU 1-247.
        let e = errors(&with("[[device]]\nid = \"m\"\nadapter = \"rs485\"\nunit_id = 0\nmax_registers_per_request = 126\n"));
        assert_eq!(
            e,
            [
                "15:11: `unit_id` must be an integer from 1 to 247",
                "16:29: `max_registers_per_request` must be an integer from 1 to 125",
            ]
        );
        let e = errors(&with("[[device]]\nid = \"m\"\nadapter = \"rs485\"\nmax_registers_per_request = 3\n[[device.field]]\nname = \"f\"\nregister = \"holding\"\naddress = 0\ndata_type = \"int64\"\n"));
        assert_eq!(
            e,
            ["18:12: field `f` of device `m` takes 4 registers, more than one request may read (`max_registers_per_request` = 3)"]
        );
    }

    #[test]
    fn keys_without_effect_are_warned_about() {
        let loaded = ok(&with(
            "[[device]]\nid = \"m\"\nadapter = \"rs485\"\n[[device.field]]\nname = \"f\"\nregister = \"coil\"\naddress = 1\nscale = 2\n\
             [[device.field]]\nname = \"g\"\nregister = \"holding\"\naddress = 1\nlength = 3\n",
        ));
        assert_eq!(
            own_warnings(&loaded),
            [
                "19:1: `scale` has no effect on a coil",
                "24:1: `length` has no effect unless `data_type = \"string\"`",
            ]
        );
    }

    #[test]
    fn the_example_configuration_section_is_valid() {
        let path =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/gateway.example.toml");
        let example = std::fs::read_to_string(&path).expect("deploy/gateway.example.toml");
        let loaded = ok(&example);
        // Files and ports of a real installation are absent here; nothing else may be off.
        let warnings: Vec<String> = own_warnings(&loaded)
            .into_iter()
            .filter(|w| !w.contains("does not exist"))
            .collect();
        assert!(warnings.is_empty(), "{warnings:?}");
        let modbus = loaded
            .config
            .devices
            .iter()
            .filter(|d| matches!(d.binding, DeviceBinding::Modbus(_)))
            .count();
        assert!(modbus >= 2);
        assert!(device_table(&loaded.config).contains("input start 0 count 12"));
    }

    #[test]
    fn check_prints_the_request_plan() {
        let loaded = ok(&with(
            "[[device]]\nid = \"meter\"\nadapter = \"rs485\"\npoll = \"2s\"\nunit_id = 3\n\
             [[device.field]]\nname = \"a\"\nregister = \"holding\"\naddress = 0\ndata_type = \"float32\"\n\
             [[device.field]]\nname = \"b\"\nregister = \"holding\"\naddress = 10\ndata_type = \"uint64\"\n\
             [[device.field]]\nname = \"c\"\nregister = \"input\"\naddress = 100\ndata_type = \"int32\"\n\
             [[device]]\nid = \"plc\"\nadapter = \"plc\"\n\
             [[device.field]]\nname = \"on\"\nregister = \"coil\"\naddress = 4\n",
        ));
        let table = device_table(&loaded.config);
        assert!(
            table.ends_with(
                "\n\
MODBUS DEVICE  UNIT  ADAPTER  POLL  REQUEST
meter          3     rs485    2s    holding start 0 count 14
                                    input start 100 count 2
plc            1     plc      1s    coil start 4 count 1
"
            ),
            "{table}"
        );
    }
}
