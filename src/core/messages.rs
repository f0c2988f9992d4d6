//! Messages to devices: chat commands (`help`, `get`, `set`, `alert`, `alerts`, `chart`), XEP-0325
//! `set` in a message, and XEP-0184 receipts for the chats answered.

use xmpp_parsers::jid::Jid;
use xmpp_parsers::message::{Message, MessageType};
use xmpp_parsers::stanza_error::{DefinedCondition, ErrorType};

use super::control::ControlReply;
use super::Core;
use crate::access::Permission;
use crate::stats::Stats;
use crate::translator::chat::{self, ChatCommand};
use crate::xmlns;
use crate::xmpp::stanzas;

impl Core {
    pub(super) fn on_message(&mut self, m: Message) {
        let (Some(from), Some(to)) = (m.from.clone(), m.to.clone()) else {
            return;
        };
        if m.type_ == MessageType::Groupchat {
            return self.on_room_message(&m);
        }
        // Errors are never answered; headlines are not commands.
        if !matches!(m.type_, MessageType::Chat | MessageType::Normal) {
            return;
        }
        let id = m.id.as_ref().map(|i| i.0.clone());
        // Private messages from room occupants: answered like room commands, never with an error
        // (a room can kick an occupant over an error).
        if self.is_room(&from) {
            if let Some(idx) = self.devices.by_jid(&to) {
                self.on_room_private(idx, &m);
            }
            return;
        }
        let Some(idx) = self.devices.by_jid(&to) else {
            if m.bodies.is_empty() && m.payloads.is_empty() {
                return;
            }
            if self.is_gateway(&to) && !m.bodies.is_empty() {
                self.acknowledge(&m, &to, &from);
                return self.gateway_chat(&from, &to, m.type_.clone(), m.thread.clone());
            }
            let e = stanzas::error(ErrorType::Cancel, DefinedCondition::ServiceUnavailable, "");
            return self.reply(stanzas::message_error(id.as_deref(), &to, &from, e));
        };
        let requester = from.to_bare().to_string();

        if let Some(set) = m.payloads.iter().find(|p| p.is("set", xmlns::CONTROL)) {
            let set = set.clone();
            return self.on_control_set(idx, &set, &from, ControlReply::Silent);
        }
        // Chat states, receipts and the like carry no body: nothing to answer.
        let Some((_, body)) = m.get_best_body(vec!["en"]) else {
            return;
        };
        if !self.devices.allows(idx, &requester, Permission::Read) {
            Stats::inc(&self.stats.access_refused);
            let device = self.devices.get(idx).config.id.to_string();
            self.log_refused("chat", &device, &requester);
            let e = stanzas::error(ErrorType::Auth, DefinedCondition::Forbidden, "");
            return self.reply(stanzas::message_error(id.as_deref(), &to, &from, e));
        }
        self.acknowledge(&m, &to, &from);
        let can_set = self.devices.allows(idx, &requester, Permission::Control);
        let (type_, thread) = (m.type_.clone(), m.thread.clone());
        let answer = match chat::parse_command(body) {
            ChatCommand::Chart(rest) => {
                let reply = super::chart::ChartReply {
                    from: to.clone(),
                    to: from.clone(),
                    type_: m.type_.clone(),
                    thread: m.thread.clone(),
                };
                match self.chart_command(idx, &rest, reply) {
                    Some(text) => ChatAnswer::Text(text),
                    // The answer comes when the store has read the history.
                    None => return,
                }
            }
            // Alerts belong to the sender: only a one-to-one chat knows who that is.
            ChatCommand::Alert(rest) => {
                ChatAnswer::Text(self.alert_command(idx, &requester, &rest))
            }
            ChatCommand::Alerts => ChatAnswer::Text(self.alert_list(idx, &requester)),
            cmd => self.chat_command(idx, cmd, can_set),
        };
        match answer {
            ChatAnswer::Text(text) => {
                self.reply(stanzas::text_message(type_, &to, &from, &text, thread));
                self.check_fresh_alert();
            }
            ChatAnswer::Write(checked) => {
                let reply = ControlReply::Chat {
                    from: to.clone(),
                    to: from.clone(),
                    type_,
                    thread,
                };
                self.start_write(idx, vec![checked], reply, from.to_string());
            }
        }
    }

    /// Sends the XEP-0184 receipt `m` asks for, if any, from `own` (the address it was sent to).
    fn acknowledge(&mut self, m: &Message, own: &Jid, sender: &Jid) {
        if let Some(receipt) = super::receipts::receipt_for(m, own, sender) {
            self.reply(receipt);
        }
    }

    /// What a chat command asks of device `idx`: a text answer, or a checked write to start.
    pub(super) fn chat_command(
        &mut self,
        idx: usize,
        cmd: ChatCommand,
        can_set: bool,
    ) -> ChatAnswer {
        let dev = self.devices.get(idx);
        match cmd {
            ChatCommand::Help => {
                let specs: Vec<_> = dev.specs().collect();
                ChatAnswer::Text(chat::help_text(
                    &dev.config.name,
                    &specs,
                    can_set && dev.has_writable_fields(),
                ))
            }
            ChatCommand::Get(None) => ChatAnswer::Text(chat::get_text(&dev.current())),
            ChatCommand::Get(Some(field)) => {
                let current = dev.current();
                ChatAnswer::Text(
                    match current
                        .iter()
                        .find(|(s, _)| s.name.eq_ignore_ascii_case(&field))
                    {
                        Some(one) => chat::get_text(&[*one]),
                        None => chat::no_such_field(&field, dev.specs().map(|s| &*s.name)),
                    },
                )
            }
            ChatCommand::Set { field, value } => {
                if !can_set {
                    Stats::inc(&self.stats.access_refused);
                    return ChatAnswer::Text("You may read this device but not change it.".into());
                }
                let Some(name) = dev
                    .specs()
                    .find(|s| s.name.eq_ignore_ascii_case(&field))
                    .map(|s| s.name.to_string())
                else {
                    return ChatAnswer::Text(chat::no_such_field(
                        &field,
                        dev.specs().map(|s| &*s.name),
                    ));
                };
                match self.check_param(idx, &name, &value) {
                    Ok(checked) => ChatAnswer::Write(checked),
                    Err(pe) => ChatAnswer::Text(format!("Not done: {}", pe.text)),
                }
            }
            ChatCommand::Alert(_) | ChatCommand::Alerts | ChatCommand::Chart(_) => {
                ChatAnswer::Text(format!(
                    "Alerts and charts are in a one-to-one chat with {}.",
                    dev.jid
                ))
            }
            ChatCommand::Unknown(cmd) => ChatAnswer::Text(chat::unknown_text(&cmd)),
        }
    }
}

/// The outcome of a chat command.
pub(super) enum ChatAnswer {
    Text(String),
    Write((std::sync::Arc<str>, gateway_api::Value)),
}

impl Core {
    /// Chat to the gateway itself: the devices the sender may read, with their addresses.
    fn gateway_chat(
        &mut self,
        from: &xmpp_parsers::jid::Jid,
        to: &xmpp_parsers::jid::Jid,
        type_: MessageType,
        thread: Option<xmpp_parsers::message::Thread>,
    ) {
        let requester = from.to_bare().to_string();
        let lines: Vec<String> = self
            .devices
            .iter()
            .filter(|(i, _)| self.devices.allows(*i, &requester, Permission::Read))
            .map(|(_, d)| {
                format!(
                    "{} ({}): {}",
                    d.config.name,
                    d.jid,
                    if d.is_online() { "online" } else { "offline" }
                )
            })
            .collect();
        let text = if lines.is_empty() {
            format!(
                "This is {}. You may read no device here.",
                self.config.gateway.name
            )
        } else {
            format!(
                "This is {}. Devices you may read; send them `help`:\n{}",
                self.config.gateway.name,
                lines.join("\n")
            )
        };
        self.reply(stanzas::text_message(type_, to, from, &text, thread));
    }
}
