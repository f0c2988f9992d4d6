//! The subscription state machine a component must run itself (RFC 6121 §3):
//! the server keeps no roster for component JIDs, so the gateway approves, refuses, remembers
//! and answers probes.

use xmpp_parsers::presence::Type;

/// What to do with a presence stanza addressed to a device.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SubAction {
    /// Remember the subscriber, answer `subscribed`, then send current presence.
    Approve,
    /// Answer `unsubscribed`; remember nothing.
    Refuse,
    /// Forget the subscriber, answer `unsubscribed` and a final `unavailable`.
    Remove,
    /// Send current presence to the prober.
    AnswerProbe,
    /// Nothing: other presence types need no answer from a device.
    Ignore,
}

/// `allowed`: the access lists let the sender read the device. `subscribed`: the sender is a
/// stored subscriber.
pub fn decide(type_: &Type, allowed: bool, subscribed: bool) -> SubAction {
    match type_ {
        Type::Subscribe if allowed => SubAction::Approve,
        Type::Subscribe => SubAction::Refuse,
        Type::Unsubscribe if subscribed => SubAction::Remove,
        // Answering an unknown unsubscribe keeps the other side's roster consistent.
        Type::Unsubscribe => SubAction::Refuse,
        Type::Probe if subscribed && allowed => SubAction::AnswerProbe,
        // RFC 6121 §4.3.2: a probe from a non-subscriber gets `unsubscribed`, never presence.
        Type::Probe => SubAction::Refuse,
        Type::Subscribed | Type::Unsubscribed | Type::None | Type::Unavailable | Type::Error => {
            SubAction::Ignore
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subscriptions_follow_the_access_lists() {
        assert_eq!(decide(&Type::Subscribe, true, false), SubAction::Approve);
        // Clients resend subscribe; the answer is the same.
        assert_eq!(decide(&Type::Subscribe, true, true), SubAction::Approve);
        assert_eq!(decide(&Type::Subscribe, false, false), SubAction::Refuse);
    }

    #[test]
    fn probes_reveal_presence_only_to_allowed_subscribers() {
        assert_eq!(decide(&Type::Probe, true, true), SubAction::AnswerProbe);
        assert_eq!(decide(&Type::Probe, true, false), SubAction::Refuse);
        assert_eq!(decide(&Type::Probe, false, true), SubAction::Refuse);
    }

    #[test]
    fn unsubscribe_removes_and_the_rest_is_ignored() {
        assert_eq!(decide(&Type::Unsubscribe, true, true), SubAction::Remove);
        assert_eq!(decide(&Type::Unsubscribe, false, false), SubAction::Refuse);
        for t in [
            Type::Subscribed,
            Type::Unsubscribed,
            Type::None,
            Type::Unavailable,
            Type::Error,
        ] {
            assert_eq!(decide(&t, true, true), SubAction::Ignore);
        }
    }
}
