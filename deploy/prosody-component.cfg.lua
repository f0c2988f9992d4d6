-- Prosody 0.12: host xmpp-iot-gateway as an XEP-0114 component.
--
-- Install (Debian / Raspberry Pi OS):
--   cp prosody-component.cfg.lua /etc/prosody/conf.avail/xmpp-iot-gateway.cfg.lua
--   ln -s ../conf.avail/xmpp-iot-gateway.cfg.lua /etc/prosody/conf.d/
--   # edit the domain and secret below, then:
--   prosodyctl check config && systemctl restart prosody   # restart, so that the component port opens
--
-- The secret: generate it once and give the same value to both sides.
--   openssl rand -hex 24 > /etc/xmpp-iot-gateway/component.secret
--   chmod 600 /etc/xmpp-iot-gateway/component.secret   # readable by the gateway's user only
--   gateway.toml:  [xmpp] mode = "component", domain = "sensors.example.org",
--                  server = "127.0.0.1:5347", secret_file = "component.secret"
-- Prosody's config cannot read a file, so the secret is also written below: keep this file
-- readable by root and the prosody group only (chmod 640, chgrp prosody).
--
-- Ports: Prosody listens for components on 127.0.0.1 and ::1, port 5347, by default. The
-- component protocol is plaintext (no TLS): keep it on loopback when the gateway runs on the
-- same host; otherwise tunnel it (WireGuard, SSH) or use client mode instead. To change the port
-- or the interfaces, set these in the GLOBAL section of prosody.cfg.lua (before the first
-- VirtualHost line; Prosody reads them only from there, so they would be ignored in this file,
-- which Debian includes after the VirtualHosts):
--   component_ports = { 5347 }
--   component_interfaces = { "127.0.0.1" }
--
-- DNS: users on other servers reach sensors.example.org over s2s, so it needs the same
-- SRV/A records and a certificate covering it as the main domain (prosodyctl cert import, or a
-- certificate with sensors.example.org in its SANs). Users of this server's own VirtualHost need
-- nothing more.

Component "sensors.example.org"          -- the gateway's [xmpp] domain; devices are <id>@sensors.example.org
    component_secret = "CHANGE-ME-to-the-content-of-component.secret"
    name = "IoT gateway"                 -- Prosody answers disco#info with this while the gateway is offline

    -- When the gateway reconnects after a network cut Prosody may still hold the old socket;
    -- "kick_old" lets the new connection replace it instead of refusing it with `conflict`.
    component_conflict_resolve = "kick_old"

    -- validate_from_addresses = true    -- (default) stanzas from outside the domain close the stream

-- Optional: a room the devices join when gateway.toml has `[publish] room = "plant@rooms.example.org"`.
-- Component-hosted JIDs are not "local" to the MUC's parent domain, so do not restrict room
-- creation to local users, or create the room yourself first. New rooms start locked until the
-- creator submits a configuration (or set muc_room_locking = false).
-- Component "rooms.example.org" "muc"
--     restrict_room_creation = false
--     muc_room_default_persistent = true

-- Optional: publish readings to pubsub when gateway.toml has `[publish] pubsub = "pubsub.example.org"`.
-- Prosody 0.12 lets only service admins create nodes and publish: make the gateway's domain one.
-- Component "pubsub.example.org" "pubsub"
--     admins = { "sensors.example.org" }

-- Client mode (later): each device or the gateway logs in as an ordinary account on a
-- VirtualHost instead of using a component. Debian's prosody.cfg.lua loads mod_limits with
-- c2s rate = "10kb/s", which throttles a busy gateway account to ~80 stanzas/s; exempt it
-- (global section or its VirtualHost):
--   unlimited_jids = { "gateway@example.org" }
