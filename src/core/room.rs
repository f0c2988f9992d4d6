//! `[publish] room`: every device joins one MUC room (XEP-0045) under its id as nick, posts its
//! changes there and answers `<id>: help | get | set ...` addressed to it.
//!
//! Rooms are shared spaces with their own rules, so the gateway never answers room traffic with
//! an error (Prosody kicks occupants over some errors) and checks `set` against the access lists
//! only when the room tells it the occupant's real JID. A room that Prosody keeps locked for its
//! creator is unlocked with an instant-room configuration; joins that race the lock are retried.

use std::collections::HashMap;
use std::time::Duration;

use minidom::Element;
use xmpp_parsers::jid::Jid;
use xmpp_parsers::message::{Message, MessageType};
use xmpp_parsers::presence::{Presence, Type as PresenceType};

use super::control::ControlReply;
use super::messages::ChatAnswer;
use super::{Core, Deferred};
use crate::access::Permission;
use crate::devices::retain_mapped;
use crate::translator::{self, chat};
use crate::xmlns;
use crate::xmpp::stanzas;

/// The resource a component-mode device joins rooms from.
const ROOM_RESOURCE: &str = "room";
const MAX_JOIN_ATTEMPTS: u32 = 10;

/// Where a device stands with the room.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RoomState {
    pub joined: bool,
    pub attempts: u32,
}

/// Where the devices stand with `[publish] room`, and what the room told of its other
/// occupants. Indexed like the core's device table.
pub(super) struct RoomSeats {
    /// Per device: its place in the room.
    seats: Vec<RoomState>,
    /// Room occupants' nicks and, where the room shows them, their real bare JIDs.
    occupants: HashMap<String, String>,
}

impl RoomSeats {
    /// For a table of `devices` devices, none seated yet.
    pub(super) fn new(devices: usize) -> Self {
        RoomSeats {
            seats: vec![RoomState::default(); devices],
            occupants: HashMap::new(),
        }
    }

    pub(super) fn seat(&self, idx: usize) -> RoomState {
        self.seats[idx]
    }

    pub(super) fn seat_mut(&mut self, idx: usize) -> &mut RoomState {
        &mut self.seats[idx]
    }

    pub(super) fn joined(&self, idx: usize) -> bool {
        self.seats[idx].joined
    }

    /// The real bare JID of the occupant `nick`, where the room showed it.
    pub(super) fn real_jid(&self, nick: &str) -> Option<&str> {
        self.occupants.get(nick).map(String::as_str)
    }

    pub(super) fn note_occupant(&mut self, nick: String, real: String) {
        self.occupants.insert(nick, real);
    }

    pub(super) fn forget_occupant(&mut self, nick: &str) {
        self.occupants.remove(nick);
    }

    /// The upstream went down: the room let go of every device's seat.
    pub(super) fn link_down(&mut self) {
        for seat in &mut self.seats {
            *seat = RoomState::default();
        }
    }

    /// Seats for a whole new device table (a reload), indexed like it.
    pub(super) fn replace(&mut self, seats: Vec<RoomState>) {
        self.seats = seats;
    }

    /// A device appended to the table, not seated yet.
    pub(super) fn push(&mut self) {
        self.seats.push(RoomState::default());
    }

    /// The device table was renumbered (`map` as from `Devices::retain`).
    pub(super) fn renumber(&mut self, map: &[Option<usize>]) {
        retain_mapped(&mut self.seats, map);
    }
}

impl Core {
    fn room(&self) -> Option<Jid> {
        self.config
            .publish
            .room
            .as_deref()
            .and_then(|r| Jid::new(r).ok())
    }

    /// Whether `jid` is the room or one of its occupants.
    pub(super) fn is_room(&self, jid: &Jid) -> bool {
        self.room().is_some_and(|r| r.to_bare() == jid.to_bare())
    }

    /// The full JID device `idx` is an occupant with.
    pub(super) fn occupant(&self, idx: usize) -> Jid {
        let jid = &self.devices.get(idx).jid;
        if jid.resource().is_some() {
            return jid.clone();
        }
        let resource = if self.client_mode {
            crate::xmpp::client::DEVICE_RESOURCE
        } else {
            ROOM_RESOURCE
        };
        Jid::new(&format!("{jid}/{resource}")).unwrap_or_else(|_| jid.clone())
    }

    /// Joins (or rejoins, after a reconnect) the room as `<room>/<device id>`.
    pub(super) fn join_room(&mut self, idx: usize) {
        let Some(room) = self.room() else { return };
        let nick = self.devices.get(idx).config.id.to_string();
        let Ok(to) = Jid::new(&format!("{room}/{nick}")) else {
            return;
        };
        let mut p = Presence::available()
            .with_from(self.occupant(idx))
            .with_to(to);
        p.payloads.push(translator::muc::join());
        self.seats.seat_mut(idx).joined = false;
        self.reply(p.into());
    }

    /// Presence from the room to device `idx`: our own join confirmed, a lock to lift, or an error.
    pub(super) fn on_room_presence(&mut self, idx: usize, p: &Presence) {
        let nick = self.devices.get(idx).config.id.to_string();
        let from_nick = p
            .from
            .as_ref()
            .and_then(|f| f.resource())
            .map(|r| r.as_str().to_owned());
        if p.type_ == PresenceType::Error {
            let state = self.seats.seat_mut(idx);
            state.joined = false;
            state.attempts += 1;
            let attempts = state.attempts;
            if attempts <= MAX_JOIN_ATTEMPTS {
                tracing::debug!(device = %nick, attempts, "room join refused; trying again");
                let tx = self.deferred_tx.clone();
                let id = self.devices.get(idx).config.id.clone();
                tokio::spawn(async move {
                    tokio::time::sleep(Duration::from_millis(500 * u64::from(attempts))).await;
                    let _ = tx.send(Deferred::JoinRoom(id)).await;
                });
            } else if attempts == MAX_JOIN_ATTEMPTS + 1 {
                tracing::warn!(device = %nick, room = ?self.config.publish.room, "cannot join the room; giving up until the next reconnect");
            }
            return;
        }
        if from_nick.as_deref() != Some(nick.as_str()) {
            return;
        }
        let Some(x) = p.payloads.iter().find(|e| e.is("x", xmlns::MUC_USER)) else {
            return;
        };
        let codes: Vec<&str> = x
            .children()
            .filter(|c| c.name() == "status")
            .filter_map(|c| c.attr("code"))
            .collect();
        if p.type_ == PresenceType::Unavailable {
            self.seats.seat_mut(idx).joined = false;
            return;
        }
        if codes.contains(&"110") {
            *self.seats.seat_mut(idx) = RoomState {
                joined: true,
                attempts: 0,
            };
            tracing::info!(device = %nick, "joined the room");
        }
        // We created the room: Prosody keeps it locked until its owner submits a configuration.
        if codes.contains(&"201") {
            if let Some(room) = self.room() {
                let iq = xmpp_parsers::iq::Iq::Set {
                    from: Some(self.occupant(idx)),
                    to: Some(room.to_bare().into()),
                    id: format!("room-unlock-{idx}"),
                    payload: translator::muc::instant_room_config(),
                };
                self.reply(iq.into());
            }
        }
    }

    /// Leaving presences for every device seated in the room (at shutdown).
    pub(super) fn room_goodbyes(&self) -> Vec<Element> {
        let Some(room) = self.room() else {
            return Vec::new();
        };
        self.devices
            .iter()
            .filter(|(i, _)| self.seats.joined(*i))
            .filter_map(|(i, d)| {
                let to = Jid::new(&format!("{room}/{}", d.config.id)).ok()?;
                Some(
                    Presence::unavailable()
                        .with_from(self.occupant(i))
                        .with_to(to)
                        .into(),
                )
            })
            .collect()
    }

    /// A changed device says so in the room.
    pub(super) fn post_to_room(&mut self, idx: usize) {
        let Some(room) = self.room() else { return };
        if !self.seats.joined(idx) {
            return;
        }
        let line = crate::translator::status::status_line(&self.devices.get(idx).current());
        let el = stanzas::text_message(
            MessageType::Groupchat,
            &self.occupant(idx),
            &room.to_bare().into(),
            &line,
            None,
        );
        self.reply(el);
    }

    /// A groupchat message: a command for one of our devices if it starts with its nick.
    pub(super) fn on_room_message(&mut self, m: &Message) {
        let (Some(from), Some(room)) = (m.from.as_ref(), self.room()) else {
            return;
        };
        if from.to_bare() != room.to_bare() {
            return;
        }
        let Some(sender) = from.resource().map(|r| r.as_str().to_owned()) else {
            return;
        };
        let Some((_, body)) = m.get_best_body(vec!["en"]) else {
            return;
        };
        // Delayed history is not a command.
        if m.payloads.iter().any(|p| p.is("delay", xmlns::DELAY)) {
            return;
        }
        // The room hands every occupant its own copy of the message, so with N devices seated
        // the gateway receives the command N times: only the copy addressed to the device the
        // command names is acted on, or it would be answered (and written) N times.
        let Some(to) = m.to.clone() else { return };
        let targets: Vec<(usize, String)> = self
            .devices
            .iter()
            .filter(|(i, d)| self.seats.joined(*i) && d.config.id.as_str() != sender)
            .filter(|(i, _)| self.occupant(*i) == to)
            .filter_map(|(i, d)| {
                chat::addressed_to(body, d.config.id.as_str()).map(|cmd| (i, cmd.to_owned()))
            })
            .collect();
        for (idx, cmd) in targets {
            // The occupant's real JID, if the room shows it: only then may `set` be allowed.
            let real = self.seats.real_jid(&sender).map(str::to_owned);
            let can_set = real
                .as_deref()
                .is_some_and(|j| self.devices.allows(idx, j, Permission::Control));
            let from_occupant = self.occupant(idx);
            match self.chat_command(idx, chat::parse_command(&cmd), can_set) {
                ChatAnswer::Text(text) => {
                    let line = format!("{sender}: {text}");
                    self.reply(stanzas::text_message(
                        MessageType::Groupchat,
                        &from_occupant,
                        &room.to_bare().into(),
                        &line,
                        None,
                    ));
                }
                ChatAnswer::Write(checked) => {
                    let reply = ControlReply::Room {
                        from: from_occupant,
                        room: room.to_bare().into(),
                        nick: sender.clone(),
                    };
                    self.start_write(idx, vec![checked], reply, format!("{room}/{sender}"));
                }
            }
        }
    }

    /// A private message from an occupant: answered privately, reads only.
    pub(super) fn on_room_private(&mut self, idx: usize, m: &Message) {
        let (Some(from), Some(to)) = (m.from.clone(), m.to.clone()) else {
            return;
        };
        let Some((_, body)) = m.get_best_body(vec!["en"]) else {
            return;
        };
        if let ChatAnswer::Text(text) = self.chat_command(idx, chat::parse_command(body), false) {
            self.reply(stanzas::text_message(
                MessageType::Chat,
                &to,
                &from,
                &text,
                None,
            ));
        }
    }

    /// Other occupants' presence in the room: remember their real JIDs where the room shows them.
    pub(super) fn note_occupant(&mut self, p: &Presence) {
        let Some(nick) = p
            .from
            .as_ref()
            .and_then(|f| f.resource())
            .map(|r| r.as_str().to_owned())
        else {
            return;
        };
        if p.type_ == PresenceType::Unavailable {
            self.seats.forget_occupant(&nick);
            return;
        }
        let real = p
            .payloads
            .iter()
            .find(|e| e.is("x", xmlns::MUC_USER))
            .and_then(|x| x.get_child("item", xmlns::MUC_USER))
            .and_then(|i| i.attr("jid"))
            .and_then(|j| Jid::new(j).ok())
            .map(|j| j.to_bare().to_string());
        if let Some(real) = real {
            self.seats.note_occupant(nick, real);
        }
    }
}
