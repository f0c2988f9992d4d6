//! `check` against a folder of configurations, one mistake (or one tricky case) each:
//! `tests/check/*.toml`. Each file says in its leading comment lines what `check` must answer:
//!
//! ```toml
//! # Two meters left at the factory address.
//! # exit: 0
//! # stderr: both read the same device
//! # not: error:
//! ```
//!
//! `exit` is the exit status; every `stderr` (or `stdout`) line is a fragment that stream must
//! contain; every `not` line a fragment that neither may contain. `{dir}` in a configuration is
//! the case's scratch folder. Adding a case is adding a file; every case runs, and the test
//! lists every case that failed.

use std::path::Path;

use crate::support::gateway_toml::{xmpp, Section};
use crate::support::{Gateway, GatewayToml};

/// What a case expects, from its leading comments.
#[derive(Debug, Default)]
struct Expected {
    exit: Option<i32>,
    stderr: Vec<String>,
    stdout: Vec<String>,
    absent: Vec<String>,
}

fn expected(text: &str) -> Result<Expected, String> {
    let mut e = Expected::default();
    for line in text.lines().map_while(|l| l.strip_prefix('#')) {
        let Some((key, value)) = line.split_once(':') else {
            continue;
        };
        let value = value.trim().to_owned();
        match key.trim() {
            "exit" => {
                e.exit = Some(value.parse().map_err(|_| format!("exit {value:?}"))?);
            }
            "stderr" => e.stderr.push(value),
            "stdout" => e.stdout.push(value),
            "not" => e.absent.push(value),
            _ => {}
        }
    }
    if e.exit.is_none() {
        return Err("no `# exit:` line".into());
    }
    Ok(e)
}

/// What is wrong with `check`'s answer to the case at `path` (nothing: empty).
async fn run_case(path: &Path) -> Vec<String> {
    let text = std::fs::read_to_string(path).expect("read case");
    let want = match expected(&text) {
        Ok(w) => w,
        Err(e) => return vec![format!("malformed case: {e}")],
    };
    let out = Gateway::cli(Some(&text), &["check"]).await;
    let mut problems = Vec::new();
    if out.status.code() != want.exit {
        problems.push(format!(
            "exit {:?}, expected {:?}",
            out.status.code(),
            want.exit
        ));
    }
    for (stream, fragments, got) in [
        ("stderr", &want.stderr, &out.stderr),
        ("stdout", &want.stdout, &out.stdout),
    ] {
        for f in fragments.iter().filter(|f| !got.contains(f.as_str())) {
            problems.push(format!("{stream} lacks {f:?}"));
        }
    }
    for f in want
        .absent
        .iter()
        .filter(|f| out.stderr.contains(f.as_str()) || out.stdout.contains(f.as_str()))
    {
        problems.push(format!("output has {f:?}"));
    }
    if !problems.is_empty() {
        problems.push(format!("stderr:\n{}\nstdout:\n{}", out.stderr, out.stdout));
    }
    problems
}

#[tokio::test]
async fn check_answers_every_case_as_written() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/check");
    let mut cases: Vec<_> = std::fs::read_dir(&dir)
        .expect("tests/check")
        .map(|e| e.expect("dir entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .collect();
    cases.sort();
    assert!(
        cases.len() >= 10,
        "the cases are missing: {}",
        dir.display()
    );
    let mut failed = Vec::new();
    for case in &cases {
        let problems = run_case(case).await;
        if !problems.is_empty() {
            let name = case.file_name().unwrap_or_default().to_string_lossy();
            failed.push(format!("{name}:\n  {}", problems.join("\n  ")));
        }
    }
    assert!(
        failed.is_empty(),
        "{} of {} cases failed:\n{}",
        failed.len(),
        cases.len(),
        failed.join("\n")
    );
}

/// The fenced blocks of a Markdown text that follow `heading`, up to the next heading of its
/// level or above, as (info string, body with the list indentation removed).
fn blocks_after(text: &str, heading: &str) -> Vec<(String, String)> {
    let Some(start) = text.find(heading) else {
        return Vec::new();
    };
    let level = heading.chars().take_while(|c| *c == '#').count();
    let section = &text[start + heading.len()..];
    let end = section
        .match_indices("\n#")
        .find(|(i, _)| section[i + 1..].chars().take_while(|c| *c == '#').count() <= level)
        .map_or(section.len(), |(i, _)| i);
    let mut blocks = Vec::new();
    let mut open: Option<(String, usize, String)> = None;
    for line in section[..end].lines() {
        let indent = line.len() - line.trim_start().len();
        let trimmed = line.trim_start();
        match &mut open {
            None => {
                if let Some(info) = trimmed.strip_prefix("```") {
                    open = Some((info.trim().to_owned(), indent, String::new()));
                }
            }
            Some((info, fence_indent, body)) => {
                if trimmed.starts_with("```") {
                    blocks.push((std::mem::take(info), std::mem::take(body)));
                    open = None;
                } else {
                    body.push_str(line.get(*fence_indent..).unwrap_or(trimmed));
                    body.push('\n');
                }
            }
        }
    }
    blocks
}

#[tokio::test]
async fn the_energy_meter_example_of_the_devices_guide_checks_as_it_says() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/devices.md");
    let text = std::fs::read_to_string(&path).expect("docs/devices.md");
    let blocks: Vec<String> = blocks_after(&text, "### From a datasheet: a DIN-rail energy meter")
        .into_iter()
        .filter(|(info, _)| info != "sh")
        .map(|(_, body)| body)
        .collect();
    let [.., config, plan] = &blocks[..] else {
        panic!("expected the configuration and the plan: {blocks:#?}");
    };
    // The guide's configuration goes in as raw text: the test is that the very text the guide
    // shows checks as it says.
    let toml = GatewayToml::upstream(xmpp(
        Section::new()
            .set("domain", "sensors.localhost")
            .set("secret_file", "component.secret"),
    ))
    .raw(config)
    .build();
    let out = Gateway::cli(Some(&toml), &["check"]).await;
    assert!(out.success(), "{}", out.stderr);
    // Only the two warnings of a machine without the meter and the secret.
    let warnings: Vec<&str> = out.stderr.lines().collect();
    assert!(
        warnings.iter().all(|w| w.contains("does not exist")),
        "{}",
        out.stderr
    );
    for line in plan.lines() {
        assert!(
            out.stdout.lines().any(|l| l.trim_end() == line.trim_end()),
            "the guide shows {line:?}; check prints:\n{}",
            out.stdout
        );
    }
}

#[tokio::test]
async fn the_configuration_steps_of_the_pi_guide_pass_check() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let guide = std::fs::read_to_string(root.join("deploy/raspberry-pi.md")).expect("guide");
    let packaged =
        std::fs::read_to_string(root.join("deploy/gateway.toml")).expect("deploy/gateway.toml");
    let added: Vec<String> = blocks_after(&guide, "## First install, step by step")
        .into_iter()
        .filter(|(info, _)| info == "toml")
        .map(|(_, body)| body)
        .collect();
    assert!(!added.is_empty(), "the guide adds a device in a toml block");
    // The packaged file as the guide's step 6 edits it, plus every block the guide adds.
    let config = format!(
        "{}\n{}",
        packaged.replace("sensors.example.org", "sensors.home.example.org"),
        added.join("\n")
    );
    let out = Gateway::cli(Some(&config), &["check"]).await;
    assert!(out.success(), "{}", out.stderr);
    assert!(
        out.stdout.contains("pi@sensors.home.example.org")
            && out.stdout.contains("cpu_temperature"),
        "{}",
        out.stdout
    );
}
