//! Two gateways on a two-node ejabberd cluster, configured as `deploy/scale-out.md` says: every
//! node's component listener lists every gateway domain (`global_routes: false`, from
//! `deploy/ejabberd-component.yml`), and each gateway lists both nodes in `server`, its own
//! node first. Users on either node reach either gateway; when a node stops, its gateway moves
//! to the other node and its devices' presence comes back.

use std::time::Duration;

use crate::support::client::is_from;
use crate::support::gateway_toml::{device, field, sim_adapter, xmpp, Section};
use crate::support::{
    random_secret, Ejabberd, EjabberdOpts, Gateway, GatewayToml, TestClient, TIMEOUT,
};
use xmpp_parsers::jid::Jid;
use xmpp_parsers::minidom::Element;
use xmpp_parsers::presence::Type as PresenceType;
use xmpp_parsers::stanza::Stanza;

/// The gateway of `domain` on both nodes, its own first; everyone on the server may read the
/// one thermometer.
fn config(domain: &str, secret: &str, servers: [&Ejabberd; 2]) -> String {
    let servers = servers.map(|s| s.component_addr().to_string());
    GatewayToml::upstream(xmpp(
        Section::new()
            .set("mode", "component")
            .set("domain", domain)
            .list("server", &[&servers[0], &servers[1]])
            .set("secret", secret),
    ))
    .access("read", &["@localhost"])
    .publish_every_reading()
    .adapter(sim_adapter())
    .device(
        device("thermo", "sim").field(
            field("temperature")
                .set("unit", "°C")
                .set("generator", "constant")
                .set("value", 21.5),
        ),
    )
    .build()
}

/// Subscribes `user` to `device` and waits for its presence.
async fn subscribe(user: &mut TestClient, device: &Jid) {
    user.subscribe(device).await;
    user.recv_presence_from(device, PresenceType::Subscribed, TIMEOUT)
        .await
        .unwrap_or_else(|| panic!("{} subscribed to {device}", user.bare_jid()));
    user.recv_presence_from(device, PresenceType::None, TIMEOUT)
        .await
        .unwrap_or_else(|| panic!("{} sees {device}", user.bare_jid()));
}

#[tokio::test]
async fn gateways_on_two_nodes_serve_every_user_and_move_when_a_node_stops() {
    // Both nodes host both gateway domains, with the same secrets.
    let opts = EjabberdOpts::new().random_component().random_component();
    let cookie = random_secret();
    let one = Ejabberd::start_with_cookie(opts.clone(), &cookie).await;
    let mut two = Ejabberd::start_with_cookie(opts, &cookie).await;
    two.join(&one).await;
    let nodes = one.cluster_nodes().await;
    assert!(
        nodes.contains(one.node()) && nodes.contains(two.node()),
        "{nodes}"
    );
    one.register("alice", "pw").await;
    one.register("bob", "pw").await;

    let domains: Vec<String> = one
        .component_domains()
        .iter()
        .map(|d| d.to_string())
        .collect();
    let (a, b) = (&domains[0], &domains[1]);
    let mut gw_a = Gateway::spawn(&config(a, one.component_secret(a), [&one, &two]));
    let mut gw_b = Gateway::spawn(&config(b, one.component_secret(b), [&two, &one]));
    assert!(gw_a.wait_upstream(TIMEOUT).await, "gateway A is up");
    assert!(gw_b.wait_upstream(TIMEOUT).await, "gateway B is up");
    assert!(gw_b
        .log_text()
        .contains(&format!("server={}", two.component_addr())));

    // alice on node one, bob on node two: each reaches both gateways.
    let mut alice = TestClient::connect_to(one.c2s_addr(), "alice@localhost", "pw").await;
    let mut bob = TestClient::connect_to(two.c2s_addr(), "bob@localhost", "pw").await;
    let thermo_a = Jid::new(&format!("thermo@{a}")).expect("jid");
    let thermo_b = Jid::new(&format!("thermo@{b}")).expect("jid");
    for user in [&mut alice, &mut bob] {
        for device in [&thermo_a, &thermo_b] {
            user.iq_get(device, Element::builder("ping", "urn:xmpp:ping").build())
                .await
                .unwrap_or_else(|e| panic!("{} pings {device}: {e:?}", user.bare_jid()));
            subscribe(user, device).await;
        }
    }

    // Node two stops: gateway B moves to node one and tells alice its device is back.
    drop(bob);
    alice.drain();
    two.stop().await;
    let back = alice
        .recv_until(Duration::from_secs(30), |st| {
            matches!(st, Stanza::Presence(p) if p.type_ == PresenceType::None)
                && is_from(st, &thermo_b)
        })
        .await;
    assert!(
        back.is_some(),
        "thermo@{b} did not come back on node one:\n{}",
        gw_b.log_text()
    );
    assert!(gw_b.log_text().contains(&format!(
        "component connection restored server={}",
        one.component_addr()
    )));
    alice
        .iq_get(&thermo_b, Element::builder("ping", "urn:xmpp:ping").build())
        .await
        .expect("gateway B answers through node one");
    assert!(gw_a.is_running() && gw_b.is_running());
    let _ = gw_a.terminate().await;
    let _ = gw_b.terminate().await;
}
