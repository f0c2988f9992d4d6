//! Client mode: every device is a session of its own on the server, so a device that arrives
//! while the gateway runs (added by a reload, found by an adapter's discovery) needs a session
//! opened for it, and one that leaves has its session closed. Closing a session is also its
//! goodbye: the server tells the account's subscribers (and any room it sat in) that the
//! resource went unavailable.

use xmpp_parsers::jid::Jid;

use super::Core;
use crate::devices::Device;
use crate::xmpp::client::SessionChange;

impl Core {
    /// Opens the session of device `idx`; the device is announced once it is online
    /// (`Inbound::SessionUp`).
    pub(super) fn open_session(&self, idx: usize) {
        let dev = self.devices.get(idx);
        self.change_session(SessionChange::Open {
            device: dev.jid.clone(),
            password: dev.config.password.clone(),
        });
    }

    /// Closes the session of the device with JID `device`.
    pub(super) fn close_session(&self, device: &Jid) {
        self.change_session(SessionChange::Close {
            device: device.clone(),
        });
    }

    fn change_session(&self, change: SessionChange) {
        if let Some(tx) = &self.sessions {
            // Closed only when the sessions have ended (shutdown): nothing to open then.
            let _ = tx.send(change);
        }
    }
}

/// Whether two entries of a device log in the same way: the same JID and, for an account of
/// its own, the same password.
pub(super) fn same_login(a: &Device, b: &Device) -> bool {
    a.jid == b.jid && a.config.password == b.config.password
}
