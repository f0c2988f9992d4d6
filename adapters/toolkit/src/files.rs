//! Files a configuration names: secrets (`password_file`, with an inline `password` tolerated
//! under a warning) and CA bundles, looked up and read the same way for every section and
//! every adapter.
//!
//! A missing or unreadable file is an error when the gateway is about to run, a warning under
//! `check` (which may run on another machine or as another user). When `check` runs as root,
//! [`Files::service`] tells how the packaged service would meet the file, for one more warning.

use std::path::{Path, PathBuf};

use crate::diagnostic::Report;
use crate::entry::Spanned;
use crate::secret::{self, SecretError};
use crate::Secret;

/// What the configuration is loaded for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LoadMode {
    /// To run the gateway: every file it names must be there.
    Run,
    /// For `check`, maybe on another machine or as another user: a missing (or unreadable)
    /// secret or CA file is a warning, not an error.
    Check,
}

/// How another user (the packaged service's) would meet a file `check` could read.
pub trait ServiceAccess {
    /// What stops that user from reading `path`, named in the configuration as `value` under
    /// `key`, with the fix; `None` when it can read it.
    fn problem(&self, key: &str, value: &str, path: &Path) -> Option<String>;
}

/// Where and how the files of one load are looked up.
#[derive(Clone, Copy)]
pub struct Files<'a> {
    pub mode: LoadMode,
    /// The configuration file's folder: relative paths start there.
    pub base_dir: &'a Path,
    /// `$CREDENTIALS_DIRECTORY` (systemd `LoadCredential=`): relative `*_file` values are
    /// looked up there first.
    pub credentials_dir: Option<&'a Path>,
    /// Under `check` as root: the packaged service's view of files, for warnings.
    pub service: Option<&'a dyn ServiceAccess>,
}

/// Non-empty (after trimming) text without control characters.
pub fn check_text(rep: &mut Report<'_>, s: &Spanned<String>, key: &str) -> bool {
    if s.value.trim().is_empty() {
        rep.error(&s.span, format!("`{key}` must not be empty"));
        false
    } else if s.value.chars().any(char::is_control) {
        rep.error(
            &s.span,
            format!("`{key}` must not contain control characters (tabs, newlines...)"),
        );
        false
    } else {
        true
    }
}

/// A secret given as `*_file` or inline.
pub struct Pair<'r> {
    pub file: Option<&'r Spanned<String>>,
    pub file_key: &'static str,
    pub inline: Option<&'r Spanned<String>>,
    pub inline_key: &'static str,
}

impl Files<'_> {
    /// Reads the secret of a `*_file` / inline pair. `None` when neither is given (the caller
    /// says whether that is an error), on errors (reported), and under `check` when the file is
    /// absent (a warning).
    pub fn secret(&self, rep: &mut Report<'_>, pair: Pair<'_>) -> Option<Secret> {
        let Pair {
            file,
            file_key,
            inline,
            inline_key,
        } = pair;
        if let (Some(_), Some(inline)) = (file, inline) {
            rep.error(
                &inline.key,
                format!("give either `{file_key}` or `{inline_key}`, not both"),
            );
            return None;
        }
        if let Some(inline) = inline {
            // Never quote the value: it is a secret.
            if inline.value.is_empty() {
                rep.error(&inline.span, format!("`{inline_key}` is empty"));
                return None;
            }
            rep.warn(
                &inline.key,
                format!("inline `{inline_key}`: store secrets in a file: use `{file_key}`"),
            );
            return Some(Secret::new(inline.value.as_str()));
        }
        let file = file?;
        if !check_text(rep, file, file_key) {
            return None;
        }
        let found = secret::resolve_file(&file.value, self.base_dir, self.credentials_dir);
        match secret::read_secret(&found) {
            Ok(secret) => {
                self.service_can_read(rep, file, file_key, &found.path);
                Some(secret)
            }
            Err(e) => {
                self.file_problem(rep, file, file_key, &e);
                None
            }
        }
    }

    /// A CA bundle (`ca_file`): the path the gateway will open, checked for being readable.
    pub fn ca_file(&self, rep: &mut Report<'_>, f: &Spanned<String>) -> Option<PathBuf> {
        if !check_text(rep, f, "ca_file") {
            return None;
        }
        let found = secret::resolve_file(&f.value, self.base_dir, self.credentials_dir);
        match secret::check_readable(&found) {
            Ok(()) => self.service_can_read(rep, f, "ca_file", &found.path),
            Err(e) => self.file_problem(rep, f, "ca_file", &e),
        }
        Some(found.path)
    }

    /// A missing (or, for `check`, unreadable) file is a warning under `check`, an error
    /// otherwise.
    fn file_problem(
        &self,
        rep: &mut Report<'_>,
        file: &Spanned<String>,
        key: &str,
        e: &SecretError,
    ) {
        if self.mode == LoadMode::Check && e.is_absence() {
            rep.warn(&file.span, format!("`{key}`: {e} (`run` needs it)"));
        } else {
            rep.error(&file.span, format!("`{key}`: {e}"));
        }
    }

    /// Under `check` as root: a warning when the packaged service could not read a file that
    /// root could.
    fn service_can_read(
        &self,
        rep: &mut Report<'_>,
        file: &Spanned<String>,
        key: &str,
        path: &Path,
    ) {
        let Some(view) = self.service.filter(|_| self.mode == LoadMode::Check) else {
            return;
        };
        if let Some(problem) = view.problem(key, &file.value, path) {
            rep.warn(&file.span, format!("`{key}`: {problem}"));
        }
    }
}
