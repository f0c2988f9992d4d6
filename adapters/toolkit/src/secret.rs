//! Files named by `*_file` keys: where they are looked up, and reading secrets from them.
//!
//! A relative `*_file` is looked up first in `$CREDENTIALS_DIRECTORY` (what systemd's
//! `LoadCredential=` provides) when that directory holds it, else next to the configuration
//! file. Secrets lose their trailing newline(s); an empty secret is refused. No message built
//! here ever contains a secret's value, only the file's path.

use std::io;
use std::path::{Path, PathBuf};

use crate::Secret;

/// Why a secret file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    /// The file does not exist (a warning only under `check`).
    #[error("{}", missing_message(.path, .also_tried.as_deref()))]
    Missing {
        path: PathBuf,
        also_tried: Option<PathBuf>,
    },
    /// The file exists but this user may not read it (a warning only under `check`, which an
    /// operator often runs as another user than the service).
    #[error("cannot read `{}`: permission denied{}", .path.display(), credential_hint(.path))]
    PermissionDenied { path: PathBuf },
    #[error("cannot read `{}`: {source}", .path.display())]
    Unreadable { path: PathBuf, source: io::Error },
    #[error("`{}` is not UTF-8 text", .path.display())]
    NotText { path: PathBuf },
    #[error("`{}` is empty", .path.display())]
    Empty { path: PathBuf },
}

impl SecretError {
    /// Whether `check` may report this as a warning: the file is absent or not readable by the
    /// user running `check`, which may well differ on the target machine.
    pub fn is_absence(&self) -> bool {
        matches!(
            self,
            SecretError::Missing { .. } | SecretError::PermissionDenied { .. }
        )
    }
}

/// What a root-only file needs under the packaged unit, which runs as its own user.
fn credential_hint(path: &Path) -> String {
    let Some(name) = path.file_name().map(|n| n.to_string_lossy()) else {
        return String::new();
    };
    format!(
        "; under systemd, hand it to the service with `LoadCredential={name}:{}` in a drop-in \
         (`systemctl edit xmpp-iot-gateway`) and name it `{name}` in the configuration \
         (`check` run as root prints the line for every such file)",
        path.display()
    )
}

fn missing_message(path: &Path, also_tried: Option<&Path>) -> String {
    match also_tried {
        Some(other) => format!(
            "`{}` does not exist (nor does `{}` in $CREDENTIALS_DIRECTORY)",
            path.display(),
            other.display()
        ),
        None => format!("`{}` does not exist", path.display()),
    }
}

/// Where a `*_file` value points.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileRef {
    /// The path the gateway will open.
    pub path: PathBuf,
    /// The path tried first in `$CREDENTIALS_DIRECTORY` when it held no such file.
    pub also_tried: Option<PathBuf>,
}

/// Resolves a `*_file` value: absolute stays; relative is taken from `credentials_dir` when the
/// file exists there, else from `base_dir` (the configuration file's folder).
pub fn resolve_file(value: &str, base_dir: &Path, credentials_dir: Option<&Path>) -> FileRef {
    let value = Path::new(value);
    if value.is_absolute() {
        return FileRef {
            path: value.to_owned(),
            also_tried: None,
        };
    }
    let mut also_tried = None;
    if let Some(dir) = credentials_dir {
        let candidate = dir.join(value);
        if candidate.exists() {
            return FileRef {
                path: candidate,
                also_tried: None,
            };
        }
        also_tried = Some(candidate);
    }
    FileRef {
        path: base_dir.join(value),
        also_tried,
    }
}

/// Reads a secret: the file's text without its trailing newline(s); empty is an error.
pub fn read_secret(file: &FileRef) -> Result<Secret, SecretError> {
    let path = &file.path;
    let bytes = std::fs::read(path).map_err(|e| io_error(file, e))?;
    let text = String::from_utf8(bytes).map_err(|_| SecretError::NotText { path: path.clone() })?;
    let secret = text.trim_end_matches(['\n', '\r']);
    if secret.is_empty() {
        return Err(SecretError::Empty { path: path.clone() });
    }
    Ok(Secret::new(secret))
}

/// Checks that a non-secret file (a CA bundle) exists and can be opened.
pub fn check_readable(file: &FileRef) -> Result<(), SecretError> {
    let path = &file.path;
    let meta = std::fs::metadata(path).map_err(|e| io_error(file, e))?;
    if meta.is_dir() {
        return Err(SecretError::Unreadable {
            path: path.clone(),
            source: io::Error::other("it is a directory"),
        });
    }
    std::fs::File::open(path)
        .map(drop)
        .map_err(|e| io_error(file, e))
}

fn io_error(file: &FileRef, error: io::Error) -> SecretError {
    let path = file.path.clone();
    match error.kind() {
        io::ErrorKind::NotFound => SecretError::Missing {
            path,
            also_tried: file.also_tried.clone(),
        },
        io::ErrorKind::PermissionDenied => SecretError::PermissionDenied { path },
        io::ErrorKind::IsADirectory => SecretError::Unreadable {
            path,
            source: io::Error::other("it is a directory"),
        },
        _ => SecretError::Unreadable {
            path,
            source: error,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, name: &str, contents: &[u8]) -> PathBuf {
        let path = dir.join(name);
        std::fs::write(&path, contents).unwrap();
        path
    }

    #[test]
    fn strips_trailing_newlines_only() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "a", b"  s3cret \n\n");
        write(dir.path(), "b", b"line1\nline2\r\n");
        let a = read_secret(&resolve_file("a", dir.path(), None)).unwrap();
        assert_eq!(a.expose(), "  s3cret ");
        let b = read_secret(&resolve_file("b", dir.path(), None)).unwrap();
        assert_eq!(b.expose(), "line1\nline2");
    }

    #[test]
    fn refuses_empty_and_binary_secrets_without_showing_them() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "empty", b"\n");
        write(dir.path(), "bin", &[0xff, 0xfe, b'x']);
        let e = read_secret(&resolve_file("empty", dir.path(), None)).unwrap_err();
        assert!(matches!(e, SecretError::Empty { .. }));
        assert!(e.to_string().ends_with("is empty"), "{e}");
        let e = read_secret(&resolve_file("bin", dir.path(), None)).unwrap_err();
        assert!(matches!(e, SecretError::NotText { .. }));
        assert!(!e.is_absence());
    }

    #[test]
    fn permission_denied_says_how_the_service_gets_the_file() {
        let e = SecretError::PermissionDenied {
            path: PathBuf::from("/etc/xmpp-iot-gateway/mqtt.pass"),
        };
        assert!(e.is_absence());
        assert!(
            e.to_string().contains(
                "permission denied; under systemd, hand it to the service with \
                 `LoadCredential=mqtt.pass:/etc/xmpp-iot-gateway/mqtt.pass`"
            ),
            "{e}"
        );
    }

    #[test]
    fn missing_file_is_an_absence() {
        let dir = tempfile::tempdir().unwrap();
        let e = read_secret(&resolve_file("nope", dir.path(), None)).unwrap_err();
        assert!(e.is_absence());
        assert_eq!(
            e.to_string(),
            format!("`{}` does not exist", dir.path().join("nope").display())
        );
    }

    #[test]
    fn credentials_directory_comes_first_for_relative_paths() {
        let config_dir = tempfile::tempdir().unwrap();
        let creds = tempfile::tempdir().unwrap();
        write(config_dir.path(), "component.secret", b"from-config-dir\n");
        write(creds.path(), "component.secret", b"from-credentials\n");
        write(config_dir.path(), "only-here", b"local\n");

        let f = resolve_file("component.secret", config_dir.path(), Some(creds.path()));
        assert_eq!(f.path, creds.path().join("component.secret"));
        assert_eq!(read_secret(&f).unwrap().expose(), "from-credentials");

        // Not in the credentials directory: falls back to the config file's folder.
        let f = resolve_file("only-here", config_dir.path(), Some(creds.path()));
        assert_eq!(f.path, config_dir.path().join("only-here"));
        assert_eq!(read_secret(&f).unwrap().expose(), "local");

        // Absolute paths ignore both.
        let abs = config_dir.path().join("component.secret");
        let f = resolve_file(
            abs.to_str().unwrap(),
            Path::new("/elsewhere"),
            Some(creds.path()),
        );
        assert_eq!(f.path, abs);

        // Missing everywhere: the message names both places.
        let f = resolve_file("absent", config_dir.path(), Some(creds.path()));
        let e = read_secret(&f).unwrap_err().to_string();
        assert!(e.contains("$CREDENTIALS_DIRECTORY"), "{e}");
    }

    #[test]
    fn readable_check_for_ca_files() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "ca.pem", b"-----BEGIN CERTIFICATE-----\n");
        assert!(check_readable(&resolve_file("ca.pem", dir.path(), None)).is_ok());
        let e = check_readable(&resolve_file("nope.pem", dir.path(), None)).unwrap_err();
        assert!(e.is_absence());
        let e = check_readable(&resolve_file(".", dir.path(), None)).unwrap_err();
        assert!(!e.is_absence());
    }
}
