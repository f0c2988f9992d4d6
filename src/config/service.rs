//! What the packaged systemd service will be able to read, for `check` run as root.
//!
//! The service runs as the system user `xmpp-iot-gateway` and reads secrets either from
//! `$CREDENTIALS_DIRECTORY` (a `LoadCredential=ID:PATH` line of its unit, under the name `ID`)
//! or straight from disk with that user's rights. An operator who runs `sudo xmpp-iot-gateway
//! check` reads every file as root and would see no problem with a root-only `password_file`
//! that the service then cannot open. So, when `check` runs as root and the service user exists,
//! every file the configuration names is also judged as the service will meet it: handed over by
//! a `LoadCredential=` line of the installed unit (and its drop-ins), or readable by the user
//! through its mode bits (the file, and search permission on every directory above it). A file
//! that is neither gets a warning with the exact `LoadCredential=` line to add.
//!
//! The user and groups come from `/etc/passwd` and `/etc/group`, where systemd-sysusers puts
//! a system user: no NSS lookup, and so no unsafe FFI, for a check that only advises.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// The system user the packaged unit runs as (`User=`).
pub const SERVICE_USER: &str = "xmpp-iot-gateway";
/// The packaged unit's name.
pub const SERVICE_UNIT: &str = "xmpp-iot-gateway.service";

/// How the service meets files: its user, and the credentials its unit hands over.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ServiceView {
    pub uid: u32,
    /// The primary group and every group listing the user (the unit's `SupplementaryGroups=`
    /// adds `dialout`, which guards the UART devices, not secrets).
    pub gids: Vec<u32>,
    /// The credential ids of the unit's `LoadCredential=` lines, in effect after its drop-ins.
    pub credentials: Vec<String>,
}

impl ServiceView {
    /// The view for this machine when this process runs as root outside the service (no
    /// `$CREDENTIALS_DIRECTORY`) and the service user exists; else `None`.
    pub(crate) fn for_root_check() -> Option<ServiceView> {
        let me = std::fs::metadata("/proc/self").ok()?;
        if me.uid() != 0 || std::env::var_os("CREDENTIALS_DIRECTORY").is_some() {
            return None;
        }
        let passwd = std::fs::read_to_string("/etc/passwd").ok()?;
        let group = std::fs::read_to_string("/etc/group").unwrap_or_default();
        let (uid, gid) = user_ids(&passwd, SERVICE_USER)?;
        let mut gids = vec![gid];
        gids.extend(member_groups(&group, SERVICE_USER));
        Some(ServiceView {
            uid,
            gids,
            credentials: unit_credentials(&unit_files(Path::new("/"))),
        })
    }

    /// What stops the service from reading `path`, named in the configuration as `value`
    /// (under `key`), with the line that fixes it; `None` when it can read it.
    pub(crate) fn problem(&self, key: &str, value: &str, path: &Path) -> Option<String> {
        if Path::new(value).is_relative() && self.credentials.iter().any(|c| c == value) {
            return None;
        }
        let why = self.unreadable(path)?;
        let name = path
            .file_name()
            .map_or_else(|| value.to_owned(), |n| n.to_string_lossy().into_owned());
        Some(format!(
            "the service user `{SERVICE_USER}` cannot read `{}` ({why}): hand it to the service \
             with `sudo systemctl edit {SERVICE_UNIT}`, adding `[Service]` and \
             `LoadCredential={name}:{}`, and write `{key} = \"{name}\"` (a bare name is looked up \
             in $CREDENTIALS_DIRECTORY first)",
            path.display(),
            path.display()
        ))
    }

    /// Why the user may not read `path` by its mode bits, if it may not.
    fn unreadable(&self, path: &Path) -> Option<String> {
        let meta = std::fs::metadata(path).ok()?;
        if !self.may(&meta, 0o4) {
            return Some(format!(
                "mode {:04o}, owner uid {}",
                meta.mode() & 0o7777,
                meta.uid()
            ));
        }
        let mut dir = path.parent();
        while let Some(d) = dir.filter(|d| !d.as_os_str().is_empty()) {
            let meta = std::fs::metadata(d).ok()?;
            if !self.may(&meta, 0o1) {
                return Some(format!(
                    "it may not enter `{}`, mode {:04o}",
                    d.display(),
                    meta.mode() & 0o7777
                ));
            }
            dir = d.parent();
        }
        None
    }

    /// Whether the user has permission `bit` (4 read, 1 search) on a file with `meta`.
    fn may(&self, meta: &std::fs::Metadata, bit: u32) -> bool {
        let mode = meta.mode();
        if meta.uid() == self.uid {
            mode & (bit << 6) != 0
        } else if self.gids.contains(&meta.gid()) {
            mode & (bit << 3) != 0
        } else {
            mode & bit != 0
        }
    }
}

/// `(uid, gid)` of `user` in `/etc/passwd` text.
fn user_ids(passwd: &str, user: &str) -> Option<(u32, u32)> {
    passwd.lines().find_map(|line| {
        let f: Vec<&str> = line.split(':').collect();
        (f.len() >= 4 && f[0] == user).then(|| Some((f[2].parse().ok()?, f[3].parse().ok()?)))?
    })
}

/// The gids of the `/etc/group` entries that list `user` as a member.
fn member_groups(group: &str, user: &str) -> Vec<u32> {
    group
        .lines()
        .filter_map(|line| {
            let f: Vec<&str> = line.split(':').collect();
            (f.len() >= 4 && f[3].split(',').any(|m| m == user)).then(|| f[2].parse().ok())?
        })
        .collect()
}

/// The unit file in effect and its drop-ins, in the order systemd applies them, under `root`:
/// a unit in `/etc` replaces the packaged one; drop-ins apply sorted by file name.
fn unit_files(root: &Path) -> Vec<PathBuf> {
    let dirs = [
        "etc/systemd/system",
        "run/systemd/system",
        "usr/lib/systemd/system",
        "lib/systemd/system",
    ];
    let mut files: Vec<PathBuf> = dirs
        .iter()
        .map(|d| root.join(d).join(SERVICE_UNIT))
        .find(|p| p.is_file())
        .into_iter()
        .collect();
    let mut dropins: Vec<PathBuf> = dirs
        .iter()
        .filter_map(|d| std::fs::read_dir(root.join(d).join(format!("{SERVICE_UNIT}.d"))).ok())
        .flatten()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "conf"))
        .collect();
    dropins.sort_by_key(|p| p.file_name().map(|n| n.to_owned()));
    files.extend(dropins);
    files
}

/// The credential ids the `LoadCredential=` lines of `files` leave in effect (an empty
/// assignment clears the earlier ones, as systemd does).
fn unit_credentials(files: &[PathBuf]) -> Vec<String> {
    let mut ids = Vec::new();
    for text in files.iter().filter_map(|f| std::fs::read_to_string(f).ok()) {
        for line in text.lines().map(str::trim) {
            let Some(value) = line.strip_prefix("LoadCredential=") else {
                continue;
            };
            if value.is_empty() {
                ids.clear();
            } else {
                ids.push(value.split(':').next().unwrap_or(value).to_owned());
            }
        }
    }
    ids
}

impl gateway_toolkit::ServiceAccess for ServiceView {
    fn problem(&self, key: &str, value: &str, path: &Path) -> Option<String> {
        ServiceView::problem(self, key, value, path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn users_and_groups_come_from_the_system_files() {
        let passwd = "root:x:0:0:root:/root:/bin/bash\n\
                      xmpp-iot-gateway:x:997:995::/var/lib/xmpp-iot-gateway:/usr/sbin/nologin\n";
        assert_eq!(user_ids(passwd, SERVICE_USER), Some((997, 995)));
        assert_eq!(user_ids(passwd, "nobody"), None);
        let group = "dialout:x:20:pi,xmpp-iot-gateway\nsecrets:x:1001:alice\n";
        assert_eq!(member_groups(group, SERVICE_USER), [20]);
    }

    #[test]
    fn the_units_credentials_follow_its_drop_ins() {
        let root = tempfile::tempdir().expect("tempdir");
        let lib = root.path().join("usr/lib/systemd/system");
        let etc = root
            .path()
            .join(format!("etc/systemd/system/{SERVICE_UNIT}.d"));
        std::fs::create_dir_all(&lib).expect("mkdir");
        std::fs::create_dir_all(&etc).expect("mkdir");
        std::fs::write(
            lib.join(SERVICE_UNIT),
            "[Service]\nLoadCredential=component.secret:/etc/xmpp-iot-gateway/component.secret\n",
        )
        .expect("write");
        let files = unit_files(root.path());
        assert_eq!(unit_credentials(&files), ["component.secret"]);
        std::fs::write(
            etc.join("client.conf"),
            "[Service]\nLoadCredential=\nLoadCredential=gateway.pass:/etc/xmpp-iot-gateway/gateway.pass\n",
        )
        .expect("write");
        std::fs::write(
            etc.join("mqtt.conf"),
            "[Service]\nLoadCredential=mqtt.pass:/etc/xmpp-iot-gateway/mqtt.pass\n",
        )
        .expect("write");
        let files = unit_files(root.path());
        assert_eq!(unit_credentials(&files), ["gateway.pass", "mqtt.pass"]);
    }

    #[test]
    fn a_root_only_file_needs_its_credential_line() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755))
            .expect("chmod");
        let file = dir.path().join("mqtt.pass");
        std::fs::write(&file, "pw\n").expect("write");
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).expect("chmod");
        // Another user than the file's owner, in none of its groups.
        let view = ServiceView {
            uid: 4242,
            gids: vec![4242],
            credentials: vec!["component.secret".into()],
        };
        let problem = view
            .problem("password_file", &file.display().to_string(), &file)
            .expect("unreadable for the service");
        assert!(problem.contains("mode 0600"), "{problem}");
        assert!(
            problem.contains(&format!("`LoadCredential=mqtt.pass:{}`", file.display()))
                && problem.contains("`password_file = \"mqtt.pass\"`"),
            "{problem}"
        );
        // `check` says so, at the key.
        let config = dir.path().join("gateway.toml");
        let source =
            "[xmpp]\ndomain = \"sensors.example.org\"\nsecret_file = \"component.secret\"\n\
                      [[adapter]]\nid = \"broker\"\ntype = \"mqtt\"\nurl = \"mqtt://127.0.0.1\"\nusername = \"gw\"\n\
                      password_file = \"mqtt.pass\"\n";
        // Root-only too, but the unit hands it over under the name the configuration uses.
        let component = dir.path().join("component.secret");
        std::fs::write(&component, "s\n").expect("write");
        std::fs::set_permissions(&component, std::fs::Permissions::from_mode(0o600))
            .expect("chmod");
        let env = crate::config::Env {
            service: Some(ServiceView {
                credentials: vec!["component.secret".into()],
                ..view.clone()
            }),
            ..Default::default()
        };
        let loaded =
            crate::config::load_with(&config, source, crate::config::LoadMode::Check, &env)
                .expect("valid");
        let warnings: Vec<String> = loaded
            .warnings
            .iter()
            .map(|w| w.to_string())
            .filter(|w| w.contains("service user"))
            .collect();
        assert!(
            warnings.len() == 1 && warnings[0].contains("9:17: `password_file`: the service user"),
            "{warnings:#?}"
        );
        // Handed over under the name the configuration uses: fine.
        let view = ServiceView {
            credentials: vec!["mqtt.pass".into()],
            ..view
        };
        assert_eq!(view.problem("password_file", "mqtt.pass", &file), None);
        // Readable by everyone: fine without a credential.
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).expect("chmod");
        assert_eq!(view.problem("ca_file", "/x/ca.pem", &file), None);
    }
}
