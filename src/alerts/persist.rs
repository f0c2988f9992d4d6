//! The store's rows for alerts: alerts set by chat, and the phase of every alert, so that a
//! restart neither forgets a user's alert nor fires again what had already fired.
//!
//! Phases are stored in wall-clock milliseconds (instants do not survive a restart) and turned
//! back into instants on load, measured back from now.

use std::time::Duration;

use chrono::Utc;
use rusqlite::{params, Connection};
use tokio::time::Instant;

use super::Phase;

pub const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS user_alerts (
    n INTEGER PRIMARY KEY,
    owner TEXT NOT NULL,
    device TEXT NOT NULL,
    field TEXT,
    op TEXT NOT NULL,
    threshold REAL,
    hold_ms INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS alert_state (
    key TEXT PRIMARY KEY,
    fingerprint TEXT NOT NULL,
    phase TEXT NOT NULL,
    since INTEGER,
    last_sent INTEGER
) WITHOUT ROWID;
";

/// An alert set by chat. `op` is `>`, `<` or `offline`.
#[derive(Debug, Clone, PartialEq)]
pub struct UserAlertRow {
    pub n: u32,
    pub owner: String,
    pub device: String,
    pub field: Option<String>,
    pub op: String,
    pub threshold: Option<f64>,
    pub hold_ms: u64,
}

/// The stored phase of one alert.
#[derive(Debug, Clone, PartialEq)]
pub struct StateRow {
    pub key: String,
    pub fingerprint: String,
    /// `armed`, `pending` or `firing`.
    pub phase: String,
    /// Wall-clock milliseconds.
    pub since: Option<i64>,
    pub last_sent: Option<i64>,
}

/// What the core asks of the store about alerts.
#[derive(Debug)]
pub enum AlertOp {
    SaveUser(UserAlertRow),
    RemoveUser(u32),
    SaveState(StateRow),
    RemoveState(String),
}

/// Everything stored about alerts, read at start.
#[derive(Debug, Default)]
pub struct Stored {
    pub user: Vec<UserAlertRow>,
    pub states: Vec<StateRow>,
}

pub fn apply(conn: &Connection, op: AlertOp) -> rusqlite::Result<()> {
    match op {
        AlertOp::SaveUser(r) => conn.execute(
            "INSERT OR REPLACE INTO user_alerts (n, owner, device, field, op, threshold, hold_ms) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            params![r.n, r.owner, r.device, r.field, r.op, r.threshold, r.hold_ms as i64],
        ),
        AlertOp::RemoveUser(n) => {
            conn.execute("DELETE FROM alert_state WHERE key = ?1", params![format!("user:{n}")])?;
            conn.execute("DELETE FROM user_alerts WHERE n = ?1", params![n])
        }
        AlertOp::SaveState(s) => conn.execute(
            "INSERT OR REPLACE INTO alert_state (key, fingerprint, phase, since, last_sent) VALUES (?1, ?2, ?3, ?4, ?5)",
            params![s.key, s.fingerprint, s.phase, s.since, s.last_sent],
        ),
        AlertOp::RemoveState(key) => {
            conn.execute("DELETE FROM alert_state WHERE key = ?1", params![key])
        }
    }
    .map(|_| ())
}

pub fn load(conn: &Connection) -> rusqlite::Result<Stored> {
    let mut stmt = conn.prepare(
        "SELECT n, owner, device, field, op, threshold, hold_ms FROM user_alerts ORDER BY n",
    )?;
    let user = stmt
        .query_map([], |r| {
            Ok(UserAlertRow {
                n: r.get(0)?,
                owner: r.get(1)?,
                device: r.get(2)?,
                field: r.get(3)?,
                op: r.get(4)?,
                threshold: r.get(5)?,
                hold_ms: r.get::<_, i64>(6)?.max(0) as u64,
            })
        })?
        .collect::<Result<_, _>>()?;
    let mut stmt =
        conn.prepare("SELECT key, fingerprint, phase, since, last_sent FROM alert_state")?;
    let states = stmt
        .query_map([], |r| {
            Ok(StateRow {
                key: r.get(0)?,
                fingerprint: r.get(1)?,
                phase: r.get(2)?,
                since: r.get(3)?,
                last_sent: r.get(4)?,
            })
        })?
        .collect::<Result<_, _>>()?;
    Ok(Stored { user, states })
}

/// An instant as wall-clock milliseconds, given both clocks' "now".
fn to_wall(at: Instant, now: Instant, now_ms: i64) -> i64 {
    now_ms - now.saturating_duration_since(at).as_millis() as i64
}

/// Wall-clock milliseconds back as an instant (clamped to the clock's range).
fn from_wall(ms: i64, now: Instant, now_ms: i64) -> Instant {
    let ago = Duration::from_millis((now_ms - ms).max(0) as u64);
    now.checked_sub(ago).unwrap_or(now)
}

/// The row for an alert's phase.
pub fn state_row(key: &str, fingerprint: String, phase: Phase) -> StateRow {
    let (now, now_ms) = (Instant::now(), Utc::now().timestamp_millis());
    let wall = |i| Some(to_wall(i, now, now_ms));
    let (name, since, last_sent) = match phase {
        Phase::Armed => ("armed", None, None),
        Phase::Pending { since } => ("pending", wall(since), None),
        Phase::Firing { since, last_sent } => ("firing", wall(since), wall(last_sent)),
    };
    StateRow {
        key: key.to_owned(),
        fingerprint,
        phase: name.to_owned(),
        since,
        last_sent,
    }
}

/// The phase a row stands for; `None` for a row this version does not understand.
pub fn phase_of(row: &StateRow) -> Option<Phase> {
    let (now, now_ms) = (Instant::now(), Utc::now().timestamp_millis());
    let at = |ms: Option<i64>| ms.map(|ms| from_wall(ms, now, now_ms));
    match row.phase.as_str() {
        "armed" => Some(Phase::Armed),
        "pending" => Some(Phase::Pending {
            since: at(row.since)?,
        }),
        "firing" => Some(Phase::Firing {
            since: at(row.since)?,
            last_sent: at(row.last_sent)?,
        }),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_round_trip_through_sqlite() {
        let conn = Connection::open_in_memory().expect("db");
        conn.execute_batch(SCHEMA).expect("schema");
        let user = UserAlertRow {
            n: 3,
            owner: "bob@example.org".into(),
            device: "freezer".into(),
            field: Some("temperature".into()),
            op: ">".into(),
            threshold: Some(-12.5),
            hold_ms: 600_000,
        };
        apply(&conn, AlertOp::SaveUser(user.clone())).expect("save");
        let state = StateRow {
            key: "user:3".into(),
            fingerprint: "f".into(),
            phase: "firing".into(),
            since: Some(1_000),
            last_sent: Some(2_000),
        };
        apply(&conn, AlertOp::SaveState(state.clone())).expect("save");
        let stored = load(&conn).expect("load");
        assert_eq!((stored.user, stored.states), (vec![user], vec![state]));
        // Removing a user's alert removes its state too.
        apply(&conn, AlertOp::RemoveUser(3)).expect("remove");
        let stored = load(&conn).expect("load");
        assert!(stored.user.is_empty() && stored.states.is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn phases_survive_the_trip_through_wall_clock_time() {
        let since = Instant::now();
        tokio::time::advance(Duration::from_secs(600)).await;
        let phase = Phase::Firing {
            since,
            last_sent: Instant::now(),
        };
        let row = state_row("config:a", "f".into(), phase);
        assert_eq!(row.phase, "firing");
        let back = phase_of(&row).expect("a phase");
        let Phase::Firing {
            since: s,
            last_sent,
        } = back
        else {
            panic!("{back:?}")
        };
        // Both clocks are read twice: allow a little slack, never a different minute.
        let held = Instant::now().saturating_duration_since(s);
        assert!(
            held >= Duration::from_secs(599) && held <= Duration::from_secs(601),
            "{held:?}"
        );
        assert!(Instant::now().saturating_duration_since(last_sent) <= Duration::from_secs(1));
        assert_eq!(
            phase_of(&state_row("k", "f".into(), Phase::Armed)),
            Some(Phase::Armed)
        );
        let odd = StateRow {
            phase: "exploded".into(),
            ..row
        };
        assert_eq!(phase_of(&odd), None);
    }
}
