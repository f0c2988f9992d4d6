//! The Modbus adapters' keys (`modbus-rtu`, `modbus-tcp`): bus, device and field settings; and
//! their registration ([`Modbus`]).
//!
//! Adapter keys: RTU `port` (required), `baud` (9600), `data_bits` (8), `parity` (`none`),
//! `stop_bits` (1), the RS-485 keys (`gateway_toolkit::rs485`); TCP `address` (required,
//! `host:port`, port 502 by default) and `framing` (`tcp`, or `rtu` for RTU over TCP); both `timeout` (1 s) and `delay_between_requests` (0).
//! Device keys: `unit_id` (1), `poll` (1 s), `byte_order` (the fields' default, `ABCD`),
//! `max_gap` (10), `max_registers_per_request` (125), `backoff_after` (3). Field keys:
//! `register`, `address` (both required), `data_type`, `byte_order`, `length`, `bit`, `scale`,
//! `offset`, `decimals`. Spellings of data types, byte orders and register kinds are the ones
//! this crate accepts (Telegraf's and Home Assistant's included). Keys that have no
//! effect on a point are warned about; values that cannot work are errors at their position.
//! [`plan_table`] renders each device's request plan for `check`.

use std::collections::HashMap;
use std::time::Duration;

use gateway_api::{AdapterContext, FieldType};
use gateway_toolkit::host_port::parse_host_port;
use gateway_toolkit::{
    duration, list_names, AdapterCx, AdapterSlice, AdapterTask, AdapterType, AnySettings,
    ConfigParser, DeviceCx, Entry, FieldCx, Keys, ParsedField, Report, Span, Spanned, StartEnv,
};

use super::{
    BusSettings, DeviceSettings, Framing, Parity, Point, RegisterKind, SerialSettings, Transport,
    DEFAULT_BACKOFF_AFTER, DEFAULT_BAUD, DEFAULT_MAX_GAP, DEFAULT_POLL, DEFAULT_TCP_PORT,
    DEFAULT_TIMEOUT, DEFAULT_UNIT, MAX_REGISTERS,
};
use crate::{ByteOrder, DataType, Encoding, ModbusAdapter, ModbusDevice, ModbusField};

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
fn adapter(
    type_name: &str,
    own: &[Entry<'_>],
    header: &Span,
    rep: &mut Report<'_>,
) -> Option<BusSettings> {
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
    ok.then_some(BusSettings {
        transport,
        timeout,
        delay_between_requests: delay,
    })
}

/// A Modbus device's settings, and its fields' default byte order.
fn device(
    type_name: &str,
    own: &[Entry<'_>],
    rep: &mut Report<'_>,
) -> Option<(DeviceSettings, ByteOrder)> {
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
    ok.then_some((s, order))
}

/// The first device seen at each (adapter, unit id): one bus address is one physical device.
type UnitsSeen = HashMap<(String, u8), (String, Span)>;

/// Warns when a device takes a unit id another device on the same adapter already has: both
/// read one physical device. A warning, not an error: splitting one meter's registers into two
/// XMPP devices is legitimate; two meters left at the factory address 1 is the usual mistake.
fn shared_unit(
    seen: &mut UnitsSeen,
    adapter: &str,
    settings: &DeviceSettings,
    own: &[Entry<'_>],
    header: &Span,
    label: &str,
    rep: &mut Report<'_>,
) {
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
type PointsSeen = Vec<(Point, String, Span)>;

/// Warns when a field reads registers another field of the device already reads: usually an
/// address copied wrong from a datasheet (a `float32` takes two registers). Fields that take
/// single bits of a register (`bit`), and bit registers, may share on purpose and are left
/// alone. A warning: two views of one register (raw and scaled) are legitimate.
fn overlapping_registers(
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
struct FieldContext<'a> {
    /// The field's `type`, if written.
    written_type: Option<&'a Spanned<String>>,
    /// The field's type (written or the default).
    kind: FieldType,
    writable: Option<&'a Spanned<bool>>,
    /// The device's default byte order.
    order: ByteOrder,
    /// The device's `max_registers_per_request`.
    max_registers: u16,
    /// The field's header, for a missing key.
    header: &'a Span,
    /// "field `x` of device `y`", for messages.
    label: &'a str,
}

/// A Modbus field's point, and the field type it implies when `type` is not written
/// (`boolean` for bits, `string` for strings).
fn field(
    own: &[Entry<'_>],
    cx: &FieldContext<'_>,
    rep: &mut Report<'_>,
) -> Option<(Point, Option<FieldType>)> {
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
    Some((point, implied))
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

/// The Modbus devices of an adapter's slice of the configuration.
fn devices_of(adapter: &AdapterSlice<'_>) -> Vec<ModbusDevice> {
    adapter
        .devices
        .iter()
        .filter_map(|d| {
            let settings = d.settings.get::<DeviceSettings>()?.clone();
            let fields = d
                .fields
                .iter()
                .filter_map(|f| {
                    Some(ModbusField {
                        spec: f.spec.clone(),
                        point: f.settings.get::<Point>()?.clone(),
                    })
                })
                .collect();
            Some(ModbusDevice {
                id: d.id.clone(),
                settings,
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
pub fn plan_table(adapters: &[AdapterSlice<'_>]) -> String {
    let mut rows: Vec<[String; 5]> = Vec::new();
    for adapter in adapters {
        for device in devices_of(adapter) {
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

/// The Modbus adapter types, registered in the gateway as `modbus-tcp` and `modbus-rtu`.
pub struct Modbus;

const DEVICE_KEYS: &[&str] = &[
    "unit_id",
    "poll",
    "byte_order",
    "max_gap",
    "max_registers_per_request",
    "backoff_after",
];

const FIELD_KEYS: &[&str] = &[
    "register",
    "address",
    "data_type",
    "byte_order",
    "length",
    "scale",
    "offset",
    "bit",
    "decimals",
];

impl AdapterType for Modbus {
    fn names(&self) -> &'static [&'static str] {
        &["modbus-tcp", "modbus-rtu"]
    }

    fn keys(&self, type_name: &str) -> Keys {
        let adapter: &'static [&'static str] = if type_name == "modbus-rtu" {
            &[
                "port",
                "baud",
                "data_bits",
                "parity",
                "stop_bits",
                "rs485",
                "rts_on_send",
                "rts_after_send",
                "delay_before_send",
                "delay_after_send",
                "timeout",
                "delay_between_requests",
            ]
        } else {
            &["address", "timeout", "delay_between_requests", "framing"]
        };
        Keys {
            adapter,
            device: DEVICE_KEYS,
            field: FIELD_KEYS,
        }
    }

    fn peer_names(&self) -> &'static [(&'static str, &'static str)] {
        &[
            ("slave", "unit_id"),
            ("slave_id", "unit_id"),
            ("device_address", "unit_id"),
            ("scan_interval", "poll"),
            ("precision", "decimals"),
            ("swap", "byte_order"),
            ("input_type", "register"),
            ("register_type", "register"),
            ("bytesize", "data_bits"),
            ("baudrate", "baud"),
            ("stopbits", "stop_bits"),
        ]
    }

    fn parser(&self) -> Box<dyn ConfigParser> {
        Box::new(Parser::default())
    }

    fn check_summary(&self, adapter: &AdapterSlice<'_>) -> String {
        let Some(Transport::Rtu(c)) = adapter.settings.get::<BusSettings>().map(|b| &b.transport)
        else {
            return String::new();
        };
        gateway_toolkit::rs485::port_line(
            adapter.id,
            &c.port,
            c.baud,
            (c.data_bits, c.parity.letter(), c.stop_bits),
            c.rs485,
        )
    }

    fn check_lines(&self, adapters: &[AdapterSlice<'_>]) -> String {
        plan_table(adapters)
    }

    fn start(
        &self,
        adapter: AdapterSlice<'_>,
        env: &StartEnv<'_>,
        ctx: AdapterContext,
    ) -> AdapterTask {
        use gateway_api::Adapter;
        let Some(settings) = adapter.settings.get::<BusSettings>() else {
            // The gateway starts an adapter only with the settings this type's parser made.
            tracing::error!(adapter = %adapter.id, "Modbus adapter started without its settings");
            return Box::pin(async {});
        };
        let bus = ModbusAdapter::new(adapter.id, settings.clone(), devices_of(&adapter));
        (env.metrics)(bus.stats());
        Box::pin(bus.run(ctx))
    }
}

/// What the parser remembers during one load.
struct Parser {
    /// Unit ids taken on each adapter, for the shared-unit warning.
    units: UnitsSeen,
    /// The current device's default byte order and `max_registers_per_request`, for its
    /// fields (the defaults when the device's keys had errors).
    defaults: (ByteOrder, u16),
    /// The current device's fields' points, for the overlap warning.
    points: PointsSeen,
}

impl Default for Parser {
    fn default() -> Self {
        Parser {
            units: UnitsSeen::new(),
            defaults: (ByteOrder::Abcd, MAX_REGISTERS),
            points: PointsSeen::new(),
        }
    }
}

impl ConfigParser for Parser {
    fn adapter(&mut self, mut cx: AdapterCx<'_>, rep: &mut Report<'_>) -> Option<AnySettings> {
        let settings = adapter(cx.type_name, cx.own, cx.header, rep);
        cx.claim_port(rep);
        settings.map(AnySettings::new)
    }

    fn device(&mut self, cx: DeviceCx<'_>, rep: &mut Report<'_>) -> Option<AnySettings> {
        self.defaults = (ByteOrder::Abcd, MAX_REGISTERS);
        self.points.clear();
        let (settings, order) = device(cx.type_name, cx.own, rep)?;
        self.defaults = (order, settings.max_registers_per_request);
        shared_unit(
            &mut self.units,
            cx.adapter_id,
            &settings,
            cx.own,
            cx.header,
            cx.label,
            rep,
        );
        Some(AnySettings::new(settings))
    }

    fn field(&mut self, cx: FieldCx<'_>, rep: &mut Report<'_>) -> Option<ParsedField> {
        let fc = FieldContext {
            written_type: cx.written_type,
            kind: cx.kind,
            writable: cx.writable,
            order: self.defaults.0,
            max_registers: self.defaults.1,
            header: cx.header,
            label: cx.label,
        };
        let (point, implied) = field(cx.own, &fc, rep)?;
        overlapping_registers(&mut self.points, &point, cx.header, cx.label, rep);
        Some(ParsedField {
            settings: AnySettings::new(point),
            implied_type: implied,
        })
    }
}
