//! Home Assistant MQTT discovery: a retained config on
//! `<prefix>/<component>/[<node_id>/]<object_id>/config` describes one entity.
//!
//! The payload's keys may be abbreviated (Home Assistant's table below, for the entity and for
//! its `device`); `~` stands for the base topic in any `*_topic` key and in the availability
//! list. Components read: `sensor`, `binary_sensor`, `switch`, `number`, `select` and `light`
//! (its `default` and `json` schemas); other components are skipped. An empty payload withdraws
//! the entity.

use std::time::Duration;

use gateway_api::FieldType;
use serde_json::{Map, Value as Json};

use super::entity::{
    short, Availability, AvailabilityMode, AvailabilityTopic, DeviceInfo, Entity, EntityField,
    Limits, Read, Source, Write,
};
use super::naming;
use crate::topic;

/// Home Assistant's `ABBREVIATIONS` (homeassistant/components/mqtt/abbreviations.py), sorted
/// for a binary search: (abbreviation, full key).
const ABBREVIATIONS: &[(&str, &str)] = &[
    ("act_t", "action_topic"),
    ("act_tpl", "action_template"),
    ("atype", "automation_type"),
    ("aux_cmd_t", "aux_command_topic"),
    ("aux_stat_t", "aux_state_topic"),
    ("aux_stat_tpl", "aux_state_template"),
    ("av_tones", "available_tones"),
    ("avty", "availability"),
    ("avty_mode", "availability_mode"),
    ("avty_t", "availability_topic"),
    ("avty_tpl", "availability_template"),
    ("away_mode_cmd_t", "away_mode_command_topic"),
    ("away_mode_stat_t", "away_mode_state_topic"),
    ("away_mode_stat_tpl", "away_mode_state_template"),
    ("b_tpl", "blue_template"),
    ("bat_lev_t", "battery_level_topic"),
    ("bat_lev_tpl", "battery_level_template"),
    ("bri_cmd_t", "brightness_command_topic"),
    ("bri_cmd_tpl", "brightness_command_template"),
    ("bri_scl", "brightness_scale"),
    ("bri_stat_t", "brightness_state_topic"),
    ("bri_tpl", "brightness_template"),
    ("bri_val_tpl", "brightness_value_template"),
    ("chrg_t", "charging_topic"),
    ("chrg_tpl", "charging_template"),
    ("cln_t", "cleaning_topic"),
    ("cln_tpl", "cleaning_template"),
    ("clr_temp_cmd_t", "color_temp_command_topic"),
    ("clr_temp_cmd_tpl", "color_temp_command_template"),
    ("clr_temp_stat_t", "color_temp_state_topic"),
    ("clr_temp_tpl", "color_temp_template"),
    ("clr_temp_val_tpl", "color_temp_value_template"),
    ("clrm", "color_mode"),
    ("clrm_stat_t", "color_mode_state_topic"),
    ("clrm_val_tpl", "color_mode_value_template"),
    ("cmd_off_tpl", "command_off_template"),
    ("cmd_on_tpl", "command_on_template"),
    ("cmd_t", "command_topic"),
    ("cmd_tpl", "command_template"),
    ("cod_arm_req", "code_arm_required"),
    ("cod_dis_req", "code_disarm_required"),
    ("cod_trig_req", "code_trigger_required"),
    ("curr_temp_t", "current_temperature_topic"),
    ("curr_temp_tpl", "current_temperature_template"),
    ("dev", "device"),
    ("dev_cla", "device_class"),
    ("dock_t", "docked_topic"),
    ("dock_tpl", "docked_template"),
    ("e", "encoding"),
    ("en", "enabled_by_default"),
    ("ent_cat", "entity_category"),
    ("err_t", "error_topic"),
    ("err_tpl", "error_template"),
    ("exp_aft", "expire_after"),
    ("fan_mode_cmd_t", "fan_mode_command_topic"),
    ("fan_mode_cmd_tpl", "fan_mode_command_template"),
    ("fan_mode_stat_t", "fan_mode_state_topic"),
    ("fan_mode_stat_tpl", "fan_mode_state_template"),
    ("fanspd_lst", "fan_speed_list"),
    ("fanspd_t", "fan_speed_topic"),
    ("fanspd_tpl", "fan_speed_template"),
    ("flsh_tlng", "flash_time_long"),
    ("flsh_tsht", "flash_time_short"),
    ("frc_upd", "force_update"),
    ("fx_cmd_t", "effect_command_topic"),
    ("fx_cmd_tpl", "effect_command_template"),
    ("fx_list", "effect_list"),
    ("fx_stat_t", "effect_state_topic"),
    ("fx_tpl", "effect_template"),
    ("fx_val_tpl", "effect_value_template"),
    ("g_tpl", "green_template"),
    ("hold_cmd_t", "hold_command_topic"),
    ("hold_cmd_tpl", "hold_command_template"),
    ("hold_stat_t", "hold_state_topic"),
    ("hold_stat_tpl", "hold_state_template"),
    ("hs_cmd_t", "hs_command_topic"),
    ("hs_stat_t", "hs_state_topic"),
    ("hs_val_tpl", "hs_value_template"),
    ("hum_cmd_t", "target_humidity_command_topic"),
    ("hum_cmd_tpl", "target_humidity_command_template"),
    ("hum_stat_t", "target_humidity_state_topic"),
    ("hum_state_tpl", "target_humidity_state_template"),
    ("ic", "icon"),
    ("init", "initial"),
    ("json_attr", "json_attributes"),
    ("json_attr_t", "json_attributes_topic"),
    ("json_attr_tpl", "json_attributes_template"),
    ("lrst_t", "last_reset_topic"),
    ("lrst_val_tpl", "last_reset_value_template"),
    ("max", "max"),
    ("max_hum", "max_humidity"),
    ("max_mirs", "max_mireds"),
    ("max_temp", "max_temp"),
    ("min", "min"),
    ("min_hum", "min_humidity"),
    ("min_mirs", "min_mireds"),
    ("min_temp", "min_temp"),
    ("mode_cmd_t", "mode_command_topic"),
    ("mode_cmd_tpl", "mode_command_template"),
    ("mode_stat_t", "mode_state_topic"),
    ("mode_stat_tpl", "mode_state_template"),
    ("modes", "modes"),
    ("name", "name"),
    ("obj_id", "object_id"),
    ("off_dly", "off_delay"),
    ("on_cmd_type", "on_command_type"),
    ("ops", "options"),
    ("opt", "optimistic"),
    ("osc_cmd_t", "oscillation_command_topic"),
    ("osc_cmd_tpl", "oscillation_command_template"),
    ("osc_stat_t", "oscillation_state_topic"),
    ("osc_val_tpl", "oscillation_value_template"),
    ("pct_cmd_t", "percentage_command_topic"),
    ("pct_cmd_tpl", "percentage_command_template"),
    ("pct_stat_t", "percentage_state_topic"),
    ("pct_val_tpl", "percentage_value_template"),
    ("pl", "payload"),
    ("pl_arm_away", "payload_arm_away"),
    ("pl_arm_custom_b", "payload_arm_custom_bypass"),
    ("pl_arm_home", "payload_arm_home"),
    ("pl_arm_nite", "payload_arm_night"),
    ("pl_arm_vacation", "payload_arm_vacation"),
    ("pl_avail", "payload_available"),
    ("pl_cln_sp", "payload_clean_spot"),
    ("pl_cls", "payload_close"),
    ("pl_disarm", "payload_disarm"),
    ("pl_hi_spd", "payload_high_speed"),
    ("pl_home", "payload_home"),
    ("pl_lo_spd", "payload_low_speed"),
    ("pl_loc", "payload_locate"),
    ("pl_lock", "payload_lock"),
    ("pl_med_spd", "payload_medium_speed"),
    ("pl_not_avail", "payload_not_available"),
    ("pl_not_home", "payload_not_home"),
    ("pl_off", "payload_off"),
    ("pl_off_spd", "payload_off_speed"),
    ("pl_on", "payload_on"),
    ("pl_open", "payload_open"),
    ("pl_osc_off", "payload_oscillation_off"),
    ("pl_osc_on", "payload_oscillation_on"),
    ("pl_paus", "payload_pause"),
    ("pl_prs", "payload_press"),
    ("pl_ret", "payload_return_to_base"),
    ("pl_rst", "payload_reset"),
    ("pl_rst_hum", "payload_reset_humidity"),
    ("pl_rst_mode", "payload_reset_mode"),
    ("pl_rst_pct", "payload_reset_percentage"),
    ("pl_rst_pr_mode", "payload_reset_preset_mode"),
    ("pl_stop", "payload_stop"),
    ("pl_stpa", "payload_start_pause"),
    ("pl_strt", "payload_start"),
    ("pl_toff", "payload_turn_off"),
    ("pl_ton", "payload_turn_on"),
    ("pl_trig", "payload_trigger"),
    ("pl_unlk", "payload_unlock"),
    ("pos_clsd", "position_closed"),
    ("pos_open", "position_open"),
    ("pos_t", "position_topic"),
    ("pos_tpl", "position_template"),
    ("pow_cmd_t", "power_command_topic"),
    ("pow_stat_t", "power_state_topic"),
    ("pow_stat_tpl", "power_state_template"),
    ("pr_mode_cmd_t", "preset_mode_command_topic"),
    ("pr_mode_cmd_tpl", "preset_mode_command_template"),
    ("pr_mode_stat_t", "preset_mode_state_topic"),
    ("pr_mode_val_tpl", "preset_mode_value_template"),
    ("pr_modes", "preset_modes"),
    ("r_tpl", "red_template"),
    ("ret", "retain"),
    ("rgb_cmd_t", "rgb_command_topic"),
    ("rgb_cmd_tpl", "rgb_command_template"),
    ("rgb_stat_t", "rgb_state_topic"),
    ("rgb_val_tpl", "rgb_value_template"),
    ("rgbw_cmd_t", "rgbw_command_topic"),
    ("rgbw_cmd_tpl", "rgbw_command_template"),
    ("rgbw_stat_t", "rgbw_state_topic"),
    ("rgbw_val_tpl", "rgbw_value_template"),
    ("rgbww_cmd_t", "rgbww_command_topic"),
    ("rgbww_cmd_tpl", "rgbww_command_template"),
    ("rgbww_stat_t", "rgbww_state_topic"),
    ("rgbww_val_tpl", "rgbww_value_template"),
    ("send_cmd_t", "send_command_topic"),
    ("send_if_off", "send_if_off"),
    ("set_fan_spd_t", "set_fan_speed_topic"),
    ("set_pos_t", "set_position_topic"),
    ("set_pos_tpl", "set_position_template"),
    ("spd_cmd_t", "speed_command_topic"),
    ("spd_rng_max", "speed_range_max"),
    ("spd_rng_min", "speed_range_min"),
    ("spd_stat_t", "speed_state_topic"),
    ("spd_val_tpl", "speed_value_template"),
    ("spds", "speeds"),
    ("src_type", "source_type"),
    ("stat_cla", "state_class"),
    ("stat_closing", "state_closing"),
    ("stat_clsd", "state_closed"),
    ("stat_locked", "state_locked"),
    ("stat_off", "state_off"),
    ("stat_on", "state_on"),
    ("stat_open", "state_open"),
    ("stat_opening", "state_opening"),
    ("stat_stopped", "state_stopped"),
    ("stat_t", "state_topic"),
    ("stat_tpl", "state_template"),
    ("stat_unlocked", "state_unlocked"),
    ("stat_val_tpl", "state_value_template"),
    ("step", "step"),
    ("stype", "subtype"),
    ("sup_clrm", "supported_color_modes"),
    ("sup_dur", "support_duration"),
    ("sup_feat", "supported_features"),
    ("sup_vol", "support_volume_set"),
    ("swing_mode_cmd_t", "swing_mode_command_topic"),
    ("swing_mode_cmd_tpl", "swing_mode_command_template"),
    ("swing_mode_stat_t", "swing_mode_state_topic"),
    ("swing_mode_stat_tpl", "swing_mode_state_template"),
    ("t", "topic"),
    ("temp_cmd_t", "temperature_command_topic"),
    ("temp_cmd_tpl", "temperature_command_template"),
    ("temp_hi_cmd_t", "temperature_high_command_topic"),
    ("temp_hi_cmd_tpl", "temperature_high_command_template"),
    ("temp_hi_stat_t", "temperature_high_state_topic"),
    ("temp_hi_stat_tpl", "temperature_high_state_template"),
    ("temp_lo_cmd_t", "temperature_low_command_topic"),
    ("temp_lo_cmd_tpl", "temperature_low_command_template"),
    ("temp_lo_stat_t", "temperature_low_state_topic"),
    ("temp_lo_stat_tpl", "temperature_low_state_template"),
    ("temp_stat_t", "temperature_state_topic"),
    ("temp_stat_tpl", "temperature_state_template"),
    ("temp_unit", "temperature_unit"),
    ("tilt_clsd_val", "tilt_closed_value"),
    ("tilt_cmd_t", "tilt_command_topic"),
    ("tilt_cmd_tpl", "tilt_command_template"),
    ("tilt_inv_stat", "tilt_invert_state"),
    ("tilt_max", "tilt_max"),
    ("tilt_min", "tilt_min"),
    ("tilt_opnd_val", "tilt_opened_value"),
    ("tilt_opt", "tilt_optimistic"),
    ("tilt_status_t", "tilt_status_topic"),
    ("tilt_status_tpl", "tilt_status_template"),
    ("uniq_id", "unique_id"),
    ("unit_of_meas", "unit_of_measurement"),
    ("val_tpl", "value_template"),
    ("whit_cmd_t", "white_command_topic"),
    ("whit_scl", "white_scale"),
    ("whit_val_cmd_t", "white_value_command_topic"),
    ("whit_val_scl", "white_value_scale"),
    ("whit_val_stat_t", "white_value_state_topic"),
    ("whit_val_tpl", "white_value_template"),
    ("xy_cmd_t", "xy_command_topic"),
    ("xy_stat_t", "xy_state_topic"),
    ("xy_val_tpl", "xy_value_template"),
];

/// Home Assistant's `DEVICE_ABBREVIATIONS`: the keys of `device`.
const DEVICE_ABBREVIATIONS: &[(&str, &str)] = &[
    ("cns", "connections"),
    ("cu", "configuration_url"),
    ("ids", "identifiers"),
    ("mdl", "model"),
    ("mf", "manufacturer"),
    ("name", "name"),
    ("sa", "suggested_area"),
    ("sw", "sw_version"),
];

/// The components this gateway makes fields of.
pub const COMPONENTS: &[&str] = &[
    "binary_sensor",
    "light",
    "number",
    "select",
    "sensor",
    "switch",
];

/// The parts of a config topic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConfigTopic<'a> {
    pub component: &'a str,
    pub node_id: Option<&'a str>,
    pub object_id: &'a str,
}

impl ConfigTopic<'_> {
    /// The entity's key: unique per config topic.
    pub fn key(&self) -> String {
        match self.node_id {
            Some(n) => format!("homeassistant:{}/{n}/{}", self.component, self.object_id),
            None => format!("homeassistant:{}/{}", self.component, self.object_id),
        }
    }
}

/// The filters that receive every config under `prefix`.
pub fn filters(prefix: &str) -> [String; 2] {
    [
        format!("{prefix}/+/+/config"),
        format!("{prefix}/+/+/+/config"),
    ]
}

/// `topic` split as a config topic under `prefix`, if it is one.
pub fn config_topic<'a>(prefix: &str, topic: &'a str) -> Option<ConfigTopic<'a>> {
    let rest = topic.strip_prefix(prefix)?.strip_prefix('/')?;
    let rest = rest.strip_suffix("/config")?;
    let parts: Vec<&str> = rest.split('/').collect();
    let (component, node_id, object_id) = match parts.as_slice() {
        [c, o] => (*c, None, *o),
        [c, n, o] => (*c, Some(*n), *o),
        _ => return None,
    };
    if component.is_empty() || object_id.is_empty() || node_id.is_some_and(str::is_empty) {
        return None;
    }
    Some(ConfigTopic {
        component,
        node_id,
        object_id,
    })
}

/// What a config message says.
#[derive(Debug, Clone, PartialEq)]
pub enum Config {
    /// The entity is withdrawn (an empty retained payload).
    Removed,
    /// A component this gateway does not make fields of (a button, a cover...).
    Unsupported,
    Entity(Entity),
}

fn lookup(table: &[(&str, &'static str)], key: &str) -> Option<&'static str> {
    table
        .binary_search_by(|(a, _)| (*a).cmp(key))
        .ok()
        .map(|i| table[i].1)
}

/// `obj` with its abbreviated keys written out (a full key given too wins).
fn expand(obj: Map<String, Json>, table: &[(&str, &'static str)]) -> Map<String, Json> {
    let mut out = Map::new();
    let mut abbreviated = Vec::new();
    for (k, v) in obj {
        match lookup(table, &k) {
            Some(full) if full != k => abbreviated.push((full.to_owned(), v)),
            _ => {
                out.insert(k, v);
            }
        }
    }
    for (k, v) in abbreviated {
        out.entry(k).or_insert(v);
    }
    out
}

/// `~` at the start or end of a topic replaced by `base`.
fn with_base(value: &str, base: &str) -> String {
    let mut v = value.to_owned();
    if let Some(rest) = v.strip_prefix('~') {
        v = format!("{base}{rest}");
    }
    if let Some(rest) = v.strip_suffix('~') {
        v = format!("{rest}{base}");
    }
    v
}

/// The config payload as a map with every key written out and `~` replaced.
pub fn normalise(payload: &[u8]) -> Result<Map<String, Json>, String> {
    let doc: Json =
        serde_json::from_slice(payload).map_err(|e| format!("the config is not JSON: {e}"))?;
    let Json::Object(obj) = doc else {
        return Err("the config is not a JSON object".into());
    };
    let mut obj = expand(obj, ABBREVIATIONS);
    if let Some(Json::Object(dev)) = obj.remove("device") {
        obj.insert(
            "device".into(),
            Json::Object(expand(dev, DEVICE_ABBREVIATIONS)),
        );
    }
    if let Some(list) = obj.remove("availability") {
        let list = match list {
            Json::Array(items) => items,
            one => vec![one],
        };
        let items = list
            .into_iter()
            .map(|item| match item {
                Json::Object(o) => Json::Object(expand(o, ABBREVIATIONS)),
                other => other,
            })
            .collect();
        obj.insert("availability".into(), Json::Array(items));
    }
    if let Some(base) = obj.remove("~") {
        let base = base
            .as_str()
            .ok_or("`~` (the base topic) is not a string")?
            .to_owned();
        for (k, v) in obj.iter_mut() {
            if k.ends_with("topic") {
                if let Json::String(s) = v {
                    *s = with_base(s, &base);
                }
            }
        }
        if let Some(Json::Array(items)) = obj.get_mut("availability") {
            for item in items {
                if let Some(Json::String(t)) = item.get_mut("topic") {
                    *t = with_base(t, &base);
                }
            }
        }
    }
    Ok(obj)
}

/// Reads one key of a normalised config.
struct Keys<'a>(&'a Map<String, Json>);

impl Keys<'_> {
    /// A string value (numbers and booleans as their text: `"pl_on": 1` is `"1"`).
    fn text(&self, key: &str) -> Option<String> {
        match self.0.get(key)? {
            Json::String(s) => Some(s.clone()),
            Json::Number(n) => Some(n.to_string()),
            Json::Bool(b) => Some(if *b { "True".into() } else { "False".into() }),
            _ => None,
        }
    }

    fn number(&self, key: &str) -> Result<Option<f64>, String> {
        match self.0.get(key) {
            None | Some(Json::Null) => Ok(None),
            Some(Json::Number(n)) => Ok(n.as_f64().filter(|f| f.is_finite())),
            Some(Json::String(s)) => s
                .trim()
                .parse::<f64>()
                .map(Some)
                .map_err(|_| format!("`{key}` is not a number")),
            Some(_) => Err(format!("`{key}` is not a number")),
        }
    }

    fn flag(&self, key: &str) -> bool {
        matches!(self.0.get(key), Some(Json::Bool(true)))
    }

    /// A topic to read or write: no wildcards, valid MQTT.
    fn topic(&self, key: &str) -> Result<Option<String>, String> {
        let Some(t) = self.text(key) else {
            return Ok(None);
        };
        topic::check_topic(&t).map_err(|e| format!("`{key}` `{}`: {e}", short(&t)))?;
        Ok(Some(t))
    }

    fn template(&self, key: &str) -> Option<String> {
        self.text(key).filter(|t| !t.trim().is_empty())
    }
}

/// The device an entity belongs to: grouped by the first of `device.identifiers` (else of
/// `device.connections`); an entity without a device is a device of its own.
fn device_info(keys: &Keys<'_>, t: &ConfigTopic<'_>, entity_key: &str) -> DeviceInfo {
    let entity_name = keys.text("name").filter(|n| !n.trim().is_empty());
    let dev = keys.0.get("device").and_then(Json::as_object);
    let ident = dev.and_then(|d| {
        let first = |v: &Json| match v {
            Json::String(s) if !s.is_empty() => Some(s.clone()),
            Json::Array(items) => items.iter().find_map(|i| match i {
                Json::String(s) if !s.is_empty() => Some(s.clone()),
                // A connection: `["mac", "aa:bb:..."]`.
                Json::Array(pair) => Some(
                    pair.iter()
                        .filter_map(Json::as_str)
                        .collect::<Vec<_>>()
                        .join(":"),
                ),
                _ => None,
            }),
            _ => None,
        };
        d.get("identifiers")
            .and_then(first)
            .or_else(|| d.get("connections").and_then(first))
    });
    let text = |k: &str| {
        dev.and_then(|d| d.get(k))
            .and_then(Json::as_str)
            .map(str::to_owned)
            .filter(|s| !s.trim().is_empty())
    };
    let name = text("name")
        .or(entity_name)
        .unwrap_or_else(|| t.object_id.to_owned());
    DeviceInfo {
        key: match ident {
            Some(i) => format!("homeassistant-device:{i}"),
            None => entity_key.to_owned(),
        },
        name,
        manufacturer: text("manufacturer"),
        model: text("model"),
    }
}

fn availability(keys: &Keys<'_>) -> Result<Availability, String> {
    let mut topics = Vec::new();
    if let Some(Json::Array(items)) = keys.0.get("availability") {
        for item in items {
            let Json::Object(o) = item else {
                return Err("an `availability` entry is not an object".into());
            };
            let k = Keys(o);
            let Some(t) = k.topic("topic")? else {
                return Err("an `availability` entry has no `topic`".into());
            };
            topics.push(AvailabilityTopic {
                topic: t,
                online: k
                    .text("payload_available")
                    .unwrap_or_else(|| "online".into()),
                offline: k
                    .text("payload_not_available")
                    .unwrap_or_else(|| "offline".into()),
                template: k.template("value_template"),
            });
        }
    } else if let Some(t) = keys.topic("availability_topic")? {
        topics.push(AvailabilityTopic {
            topic: t,
            online: keys
                .text("payload_available")
                .unwrap_or_else(|| "online".into()),
            offline: keys
                .text("payload_not_available")
                .unwrap_or_else(|| "offline".into()),
            template: keys.template("availability_template"),
        });
    }
    let mode = match keys.text("availability_mode").as_deref() {
        None | Some("latest") => AvailabilityMode::Latest,
        Some("all") => AvailabilityMode::All,
        Some("any") => AvailabilityMode::Any,
        Some(other) => {
            return Err(format!(
                "`availability_mode` {:?} is not all, any or latest",
                short(other)
            ))
        }
    };
    Ok(Availability { topics, mode })
}

/// Device classes of `sensor` whose states are text rather than numbers.
const TEXT_SENSOR_CLASSES: &[&str] = &["date", "enum", "timestamp"];

/// Parses a config received on `t`.
pub fn parse(t: &ConfigTopic<'_>, payload: &[u8]) -> Result<Config, String> {
    if payload.iter().all(u8::is_ascii_whitespace) {
        return Ok(Config::Removed);
    }
    if !COMPONENTS.contains(&t.component) {
        return Ok(Config::Unsupported);
    }
    let obj = normalise(payload)?;
    let keys = Keys(&obj);
    let key = t.key();
    let name = naming::field_slug(t.object_id)
        .ok_or_else(|| format!("object id {:?} makes no field name", short(t.object_id)))?;
    let unit = keys.text("unit_of_measurement").unwrap_or_default();
    let state_topic = keys.topic("state_topic")?;
    let command_topic = keys.topic("command_topic")?;
    let value_read = |k: &str| keys.template(k).map_or(Read::Payload, Read::Template);
    let command_write = |k: &str| keys.template(k).map_or(Write::Payload, Write::Template);
    let on_off = || {
        Some((
            keys.text("payload_on").unwrap_or_else(|| "ON".into()),
            keys.text("payload_off").unwrap_or_else(|| "OFF".into()),
        ))
    };
    let base = EntityField {
        name: name.clone(),
        unit,
        kind: FieldType::String,
        state_topic,
        read: value_read("value_template"),
        command_topic: None,
        write: Write::Payload,
        on_off: None,
        limits: Limits::None,
    };
    let fields = match t.component {
        "sensor" => {
            let class = keys.text("device_class");
            let numeric = !base.unit.is_empty()
                || keys.0.contains_key("state_class")
                || class
                    .as_deref()
                    .is_some_and(|c| !TEXT_SENSOR_CLASSES.contains(&c));
            vec![EntityField {
                kind: if numeric {
                    FieldType::Numeric
                } else {
                    FieldType::String
                },
                ..base
            }]
        }
        "binary_sensor" => vec![EntityField {
            kind: FieldType::Boolean,
            on_off: on_off(),
            ..base
        }],
        "switch" => vec![EntityField {
            kind: FieldType::Boolean,
            on_off: on_off(),
            command_topic,
            write: command_write("command_template"),
            ..base
        }],
        "number" => {
            let min = keys.number("min")?.unwrap_or(1.0);
            let max = keys.number("max")?.unwrap_or(100.0);
            let step = keys.number("step")?.unwrap_or(1.0);
            if min > max || step < 0.0 {
                return Err(format!(
                    "`min` {min}, `max` {max}, `step` {step} make no range"
                ));
            }
            vec![EntityField {
                kind: FieldType::Numeric,
                command_topic,
                write: command_write("command_template"),
                limits: Limits::Range { min, max, step },
                ..base
            }]
        }
        "select" => {
            let options: Vec<String> = match obj.get("options") {
                Some(Json::Array(items)) => items
                    .iter()
                    .filter_map(|o| o.as_str().map(str::to_owned))
                    .collect(),
                _ => Vec::new(),
            };
            if options.is_empty() {
                return Err("a `select` needs `options`".into());
            }
            vec![EntityField {
                kind: FieldType::String,
                command_topic,
                write: command_write("command_template"),
                limits: Limits::Options(options),
                ..base
            }]
        }
        "light" => light(&keys, base, command_topic)?,
        _ => return Ok(Config::Unsupported),
    };
    let expire_after = match t.component {
        "sensor" | "binary_sensor" => expire_after(&keys)?,
        _ => None,
    };
    Ok(Config::Entity(Entity {
        device: device_info(&keys, t, &key),
        key,
        source: Source::HomeAssistant,
        fields,
        availability: availability(&keys)?,
        expire_after,
    }))
}

/// `expire_after`, in seconds; 0 (Home Assistant's default) never expires. More than a year is
/// taken as a year, which is as good as never on a device that announces itself.
fn expire_after(keys: &Keys<'_>) -> Result<Option<Duration>, String> {
    const MAX_SECS: f64 = 366.0 * 24.0 * 3600.0;
    match keys.number("expire_after")? {
        None => Ok(None),
        Some(s) if s < 0.0 => Err(format!("`expire_after` {s} is negative")),
        Some(0.0) => Ok(None),
        Some(s) => Ok(Some(Duration::from_secs_f64(s.min(MAX_SECS)))),
    }
}

/// A light: its on/off as the field named after the object id and, when it dims, its
/// brightness as `<object id>_brightness` (0 to `brightness_scale`, 255 by default).
fn light(
    keys: &Keys<'_>,
    base: EntityField,
    command_topic: Option<String>,
) -> Result<Vec<EntityField>, String> {
    let scale = keys.number("brightness_scale")?.unwrap_or(255.0);
    if scale < 1.0 {
        return Err("`brightness_scale` must be at least 1".into());
    }
    let brightness_name = format!("{}_brightness", base.name);
    let range = Limits::Range {
        min: 0.0,
        max: scale,
        step: 1.0,
    };
    let schema = keys.text("schema").unwrap_or_else(|| "default".into());
    match schema.as_str() {
        "default" | "basic" => {
            let on_off = Some((
                keys.text("payload_on").unwrap_or_else(|| "ON".into()),
                keys.text("payload_off").unwrap_or_else(|| "OFF".into()),
            ));
            let mut fields = vec![EntityField {
                kind: FieldType::Boolean,
                read: keys
                    .template("state_value_template")
                    .map_or(Read::Payload, Read::Template),
                command_topic,
                on_off,
                ..base.clone()
            }];
            let b_state = keys.topic("brightness_state_topic")?;
            let b_command = keys.topic("brightness_command_topic")?;
            if b_state.is_some() || b_command.is_some() {
                fields.push(EntityField {
                    name: brightness_name,
                    unit: String::new(),
                    kind: FieldType::Numeric,
                    state_topic: b_state,
                    read: keys
                        .template("brightness_value_template")
                        .map_or(Read::Payload, Read::Template),
                    command_topic: b_command,
                    write: keys
                        .template("brightness_command_template")
                        .map_or(Write::Payload, Write::Template),
                    on_off: None,
                    limits: range,
                });
            }
            Ok(fields)
        }
        "json" => {
            let on_off = Some(("ON".to_owned(), "OFF".to_owned()));
            let mut fields = vec![EntityField {
                kind: FieldType::Boolean,
                read: Read::JsonKey("state".into()),
                command_topic: command_topic.clone(),
                write: Write::JsonKey {
                    key: "state".into(),
                    extra: Vec::new(),
                },
                on_off,
                ..base.clone()
            }];
            let dims = keys.flag("brightness")
                || matches!(keys.0.get("supported_color_modes"), Some(Json::Array(m))
                    if m.iter().any(|c| c.as_str().is_some_and(|c| c != "onoff")));
            if dims {
                fields.push(EntityField {
                    name: brightness_name,
                    unit: String::new(),
                    kind: FieldType::Numeric,
                    state_topic: base.state_topic.clone(),
                    read: Read::JsonKey("brightness".into()),
                    command_topic,
                    write: Write::JsonKey {
                        key: "brightness".into(),
                        extra: vec![("state".into(), "ON".into())],
                    },
                    on_off: None,
                    limits: range,
                });
            }
            Ok(fields)
        }
        other => Err(format!(
            "light schema {:?} is not supported (default and json are)",
            short(other)
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture(name: &str) -> Vec<u8> {
        let path = format!(
            "{}/../../tests/fixtures/discovery/{name}",
            env!("CARGO_MANIFEST_DIR")
        );
        std::fs::read(path).unwrap()
    }

    fn entity(topic: &str, payload: &[u8]) -> Entity {
        let t = config_topic("homeassistant", topic).unwrap();
        match parse(&t, payload).unwrap() {
            Config::Entity(e) => e,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn the_tables_are_sorted_for_lookup() {
        for table in [ABBREVIATIONS, DEVICE_ABBREVIATIONS] {
            assert!(table.windows(2).all(|w| w[0].0 < w[1].0));
        }
        assert_eq!(lookup(ABBREVIATIONS, "stat_t"), Some("state_topic"));
        assert_eq!(lookup(ABBREVIATIONS, "avty"), Some("availability"));
        assert_eq!(
            lookup(ABBREVIATIONS, "unit_of_meas"),
            Some("unit_of_measurement")
        );
        assert_eq!(lookup(DEVICE_ABBREVIATIONS, "ids"), Some("identifiers"));
        assert_eq!(lookup(ABBREVIATIONS, "nope"), None);
        assert_eq!(ABBREVIATIONS.len(), 252);
    }

    #[test]
    fn config_topics() {
        let t = config_topic(
            "homeassistant",
            "homeassistant/sensor/tasmota_A1B2C3/temperature/config",
        )
        .unwrap();
        assert_eq!(
            (t.component, t.node_id, t.object_id),
            ("sensor", Some("tasmota_A1B2C3"), "temperature")
        );
        assert_eq!(t.key(), "homeassistant:sensor/tasmota_A1B2C3/temperature");
        let t = config_topic("ha", "ha/switch/pump/config").unwrap();
        assert_eq!((t.node_id, t.object_id), (None, "pump"));
        assert!(config_topic("homeassistant", "homeassistant/sensor/config").is_none());
        assert!(config_topic("homeassistant", "homeassistant/a/b/c/d/config").is_none());
        assert!(config_topic("homeassistant", "homeassistant/sensor/x/state").is_none());
        assert!(config_topic("homeassistant", "other/sensor/x/config").is_none());
    }

    #[test]
    fn tasmota_abbreviations_and_base_topic() {
        let e = entity(
            "homeassistant/sensor/tasmota_A1B2C3/temperature/config",
            &fixture("tasmota_temperature.json"),
        );
        assert_eq!(e.device.key, "homeassistant-device:A1B2C3");
        assert_eq!(e.device.name, "Kitchen");
        assert_eq!(e.device.manufacturer.as_deref(), Some("Tasmota"));
        let f = &e.fields[0];
        assert_eq!(f.name, "temperature");
        assert_eq!((f.unit.as_str(), f.kind), ("°C", FieldType::Numeric));
        assert_eq!(f.state_topic.as_deref(), Some("tele/tasmota_A1B2C3/SENSOR"));
        assert_eq!(
            f.read,
            Read::Template("{{value_json['AM2301'].Temperature}}".into())
        );
        assert!(!f.writable());
        assert_eq!(
            e.availability.topics,
            [AvailabilityTopic {
                topic: "tele/tasmota_A1B2C3/LWT".into(),
                online: "Online".into(),
                offline: "Offline".into(),
                template: None
            }]
        );
    }

    #[test]
    fn tilde_at_either_end_and_full_keys_win() {
        let e = entity(
            "homeassistant/switch/n/relay/config",
            br#"{"~":"base/x","stat_t":"~/state","cmd_t":"cmd/~","state_topic":"given/state","name":"R"}"#,
        );
        let f = &e.fields[0];
        assert_eq!(f.state_topic.as_deref(), Some("given/state"));
        assert_eq!(f.command_topic.as_deref(), Some("cmd/base/x"));
        // Without a device the entity is a device of its own, named after the entity.
        assert_eq!(e.device.key, e.key);
        assert_eq!(e.device.name, "R");
    }

    #[test]
    fn esphome_switch_and_json_light() {
        let e = entity(
            "homeassistant/switch/garage-door/relay/config",
            &fixture("esphome_switch.json"),
        );
        assert_eq!(e.device.key, "homeassistant-device:a4cf12b3c4d5");
        assert_eq!(e.device.name, "garage-door");
        let f = &e.fields[0];
        assert_eq!((f.kind, f.writable()), (FieldType::Boolean, true));
        assert_eq!(f.on_off, Some(("ON".into(), "OFF".into())));
        assert_eq!(
            f.command_topic.as_deref(),
            Some("garage-door/switch/relay/command")
        );

        let e = entity(
            "homeassistant/light/study/desk_lamp/config",
            &fixture("esphome_light.json"),
        );
        let names: Vec<&str> = e.fields.iter().map(|f| f.name.as_str()).collect();
        assert_eq!(names, ["desk_lamp", "desk_lamp_brightness"]);
        assert_eq!(
            e.fields[0].state_topic.as_deref(),
            Some("study/light/desk_lamp/state")
        );
        assert_eq!(e.fields[1].read, Read::JsonKey("brightness".into()));
        assert_eq!(
            e.fields[1].limits,
            Limits::Range {
                min: 0.0,
                max: 255.0,
                step: 1.0
            }
        );
    }

    #[test]
    fn shelly_availability_list() {
        let e = entity(
            "homeassistant/sensor/shellyplus1pm-a8032ab12345/power/config",
            &fixture("shelly_power.json"),
        );
        assert_eq!(e.availability.mode, AvailabilityMode::All);
        let topics: Vec<(&str, &str, &str)> = e
            .availability
            .topics
            .iter()
            .map(|t| (t.topic.as_str(), t.online.as_str(), t.offline.as_str()))
            .collect();
        assert_eq!(
            topics,
            [("shellyplus1pm-a8032ab12345/online", "true", "false")]
        );
        let e = entity(
            "homeassistant/switch/shellyplus1pm-a8032ab12345/relay/config",
            &fixture("shelly_switch.json"),
        );
        assert!(matches!(&e.fields[0].write, Write::Template(t) if t.contains("iif(")));
        assert_eq!(e.device.name, "Hall Shelly Plus 1PM");
    }

    #[test]
    fn number_select_and_default_light() {
        let e = entity(
            "homeassistant/number/thermostat/setpoint/config",
            r#"{"name":"Setpoint","cmd_t":"t/set","stat_t":"t/state","min":5,"max":30,"step":0.5,"unit_of_meas":"°C"}"#.as_bytes(),
        );
        assert_eq!(
            e.fields[0].limits,
            Limits::Range {
                min: 5.0,
                max: 30.0,
                step: 0.5
            }
        );
        let e = entity(
            "homeassistant/select/thermostat/mode/config",
            br#"{"name":"Mode","cmd_t":"t/mode/set","stat_t":"t/mode","ops":["eco","comfort"]}"#,
        );
        assert_eq!(
            e.fields[0].limits,
            Limits::Options(vec!["eco".into(), "comfort".into()])
        );
        let e = entity(
            "homeassistant/light/hall/ceiling/config",
            br#"{"name":"Ceiling","cmd_t":"h/set","stat_t":"h/state","bri_cmd_t":"h/bri/set","bri_stat_t":"h/bri","bri_scl":100,"bri_cmd_tpl":"{{ value | int }}","pl_on":"1","pl_off":"0"}"#,
        );
        assert_eq!(e.fields.len(), 2);
        assert_eq!(e.fields[0].on_off, Some(("1".into(), "0".into())));
        assert_eq!(e.fields[1].command_topic.as_deref(), Some("h/bri/set"));
        assert_eq!(
            e.fields[1].write,
            Write::Template("{{ value | int }}".into())
        );
    }

    #[test]
    fn removals_unsupported_and_malformed() {
        let t = config_topic("homeassistant", "homeassistant/sensor/broken/temp/config").unwrap();
        assert_eq!(parse(&t, b""), Ok(Config::Removed));
        assert!(parse(&t, &fixture("malformed.json")).is_err());
        assert!(parse(&t, b"[1,2]").is_err());
        assert!(parse(&t, br#"{"stat_t":"a/#"}"#).is_err());
        assert!(parse(&t, br#"{"~":5,"stat_t":"~x"}"#).is_err());
        let b = config_topic("homeassistant", "homeassistant/button/x/restart/config").unwrap();
        assert_eq!(parse(&b, br#"{"cmd_t":"x"}"#), Ok(Config::Unsupported));
        let s = config_topic("homeassistant", "homeassistant/select/x/mode/config").unwrap();
        assert!(parse(&s, br#"{"cmd_t":"x"}"#).is_err());
    }
}
