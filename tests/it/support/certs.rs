//! A private CA and a server certificate for it, made with the openssl CLI, shared by the
//! Prosody and ejabberd rigs.
//!
//! Layout under the server's directory: `ca/ca.pem` (what the gateway's `ca_file` points at),
//! `certs/localhost.crt` and `certs/localhost.key` (the server's). The leaf has `CA:FALSE`
//! (webpki rejects a CA certificate used as end entity, which is what `prosodyctl cert
//! generate` makes) and names every domain given plus 127.0.0.1.

use std::fs;
use std::path::Path;
use std::time::Duration;

use super::{random_secret, run_command};

/// Writes `ca/` and `certs/` under `root` for a server that answers as `names`.
pub async fn make(root: &Path, names: &[&str]) {
    let ca_dir = root.join("ca");
    let cert_dir = root.join("certs");
    fs::create_dir(&ca_dir).expect("create ca dir");
    fs::create_dir(&cert_dir).expect("create certs dir");

    let mut sans: Vec<String> = names.iter().map(|n| format!("DNS:{n}")).collect();
    sans.push("IP:127.0.0.1".to_owned());
    let ext = ca_dir.join("leaf.ext");
    fs::write(
        &ext,
        format!(
            "basicConstraints=critical,CA:FALSE\n\
             keyUsage=critical,digitalSignature,keyEncipherment\n\
             extendedKeyUsage=serverAuth\n\
             subjectAltName={}\n",
            sans.join(",")
        ),
    )
    .expect("write leaf extensions");

    let p = |name: &str, dir: &Path| dir.join(name).to_string_lossy().into_owned();
    let (ca_key, ca_pem) = (p("ca.key", &ca_dir), p("ca.pem", &ca_dir));
    let csr = p("leaf.csr", &ca_dir);
    let (key, crt) = (p("localhost.key", &cert_dir), p("localhost.crt", &cert_dir));
    let serial = format!("0x{}", random_secret());
    let ext = ext.to_string_lossy().into_owned();
    let steps: [Vec<&str>; 3] = [
        vec![
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-keyout",
            &ca_key,
            "-out",
            &ca_pem,
            "-days",
            "30",
            "-subj",
            "/CN=xmpp-iot-gateway test CA",
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-addext",
            "keyUsage=critical,keyCertSign,cRLSign",
        ],
        vec![
            "req",
            "-new",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-keyout",
            &key,
            "-out",
            &csr,
            "-subj",
            "/CN=localhost",
        ],
        vec![
            "x509",
            "-req",
            "-in",
            &csr,
            "-CA",
            &ca_pem,
            "-CAkey",
            &ca_key,
            "-set_serial",
            &serial,
            "-days",
            "30",
            "-extfile",
            &ext,
            "-out",
            &crt,
        ],
    ];
    for args in steps {
        let mut cmd = std::process::Command::new("openssl");
        cmd.args(&args);
        let out = run_command(&mut cmd, root, Duration::from_secs(30)).await;
        assert!(
            out.success(),
            "openssl {} failed:\n{}",
            args.join(" "),
            out.stderr
        );
    }
}
